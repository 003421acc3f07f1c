"""Prometheus metrics at /metrics: the sidecar's own requests, and the pipeline's counters as the
services report them in their heartbeats (read from Redis on each scrape, so a stopped service
disappears from the next scrape instead of reporting stale numbers).

Each app has its own registry: several apps in one process (tests) never collide.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError

from services.api.health import check_health

log = logging.getLogger("api")

ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]
HeartbeatSource = Callable[[], Awaitable[tuple[list[dict[str, Any]], list[str], Sequence[str]]]]
SCRAPE_TIMEOUT_S = 5.0


class PipelineCollector(Collector):
    """Gauges from the last heartbeats read; `collect` must be synchronous, so the scrape app
    refreshes `heartbeats` (awaiting Redis) just before the registry is rendered."""

    def __init__(self) -> None:
        self.heartbeats: list[dict[str, Any]] = []
        self.required: dict[tuple[str, str], bool] = {}
        self.redis_up = True

    def collect(self) -> Iterator[Metric]:
        labels = ["service", "instance", "usecase", "counter"]
        counters = GaugeMetricFamily(
            "streamer_pipeline_counter",
            "a counter a service reports in its heartbeat",
            labels=labels,
        )
        versions = GaugeMetricFamily(
            "streamer_model_version",
            "the model version a service reports for a use case",
            labels=["service", "instance", "usecase"],
        )
        age = GaugeMetricFamily(
            "streamer_heartbeat_age_seconds",
            "seconds since a live service last wrote its heartbeat",
            labels=["service", "instance"],
        )
        now = time.time()
        for beat in self.heartbeats:
            service, instance = beat["service"], str(beat.get("instance", "?"))
            for usecase, values in _mapping(beat.get("counters")).items():
                for name, value in _flatten(_mapping(values)):
                    counters.add_metric([service, instance, str(usecase), name], value)
            for usecase, version in _mapping(beat.get("model_versions")).items():
                if _is_number(version):
                    versions.add_metric([service, instance, str(usecase)], float(version))
            if _is_number(beat.get("updated_at")):
                age.add_metric([service, instance], max(0.0, now - float(beat["updated_at"])))
        up = GaugeMetricFamily(
            "streamer_service_up",
            "1 when a required service is up for a use case (as /health sees it)",
            labels=["service", "usecase"],
        )
        for (service, usecase), is_up in sorted(self.required.items()):
            up.add_metric([service, usecase], 1.0 if is_up else 0.0)
        redis = GaugeMetricFamily(
            "streamer_api_redis_up", "1 when the last scrape could read the heartbeats"
        )
        redis.add_metric([], 1.0 if self.redis_up else 0.0)
        yield from (counters, versions, age, up, redis)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _flatten(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, float]]:
    """Numeric counters; nested mappings become dotted names (`lag.partition0`)."""
    for name, value in values.items():
        key = f"{prefix}{name}"
        if isinstance(value, bool) or _is_number(value):
            yield key, float(value)
        elif isinstance(value, Mapping):
            yield from _flatten(value, f"{key}.")


class ApiMetrics:
    """The registry of one app: request counters, latency and the pipeline collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "streamer_api_requests",
            "HTTP requests the API answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "streamer_api_request_duration_seconds",
            "time to answer an HTTP request",
            ["method", "route"],
            registry=self.registry,
        )
        self.pipeline = PipelineCollector()
        self.registry.register(self.pipeline)


class RequestMetrics:
    """ASGI middleware counting requests by route template (bounded label values), method and
    status; a path that matched no route counts as `unmatched`."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_with_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_with_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope.get("method", "?")
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(time.perf_counter() - started)


class ScrapeApp:
    """The /metrics endpoint: refresh the pipeline gauges from Redis, then let prometheus_client
    render the registry. A Redis outage is reported as `streamer_api_redis_up 0`, not a 5xx."""

    def __init__(self, metrics: ApiMetrics, source: HeartbeatSource) -> None:
        self.metrics = metrics
        self.source = source
        self.render = make_asgi_app(metrics.registry)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            await self.refresh()
        await self.render(scope, receive, send)

    async def refresh(self) -> None:
        collector = self.metrics.pipeline
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT_S):
                heartbeats, usecases, required = await self.source()
        except (RedisError, OSError, TimeoutError) as error:
            log.warning("heartbeats not read for /metrics", extra={"error": str(error)})
            collector.heartbeats, collector.required, collector.redis_up = [], {}, False
            return
        health = check_health(heartbeats, usecases, required, time.time())
        collector.heartbeats = heartbeats
        collector.required = {(check.service, check.usecase): check.up for check in health.checks}
        collector.redis_up = True
