"""Prometheus metrics at /metrics: the sidecar's own requests, and the pipeline's counters as the
services report them in their heartbeats (read from Redis on each scrape, so a stopped service
disappears from the next scrape instead of reporting stale numbers).

Each app has its own registry: several apps in one process (tests) never collide.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, make_asgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from starlette.types import Receive, Scope, Send

from shared.health import Health

log = logging.getLogger("api")

ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[Any]], Callable[[Any], Awaitable[None]]],
    Awaitable[None],
]
HealthSource = Callable[[], Awaitable[Health]]
SCRAPE_TIMEOUT_S = 5.0


class PipelineCollector(Collector):
    """Gauges from the last health read (shared.health); `collect` must be synchronous, so
    the scrape app refreshes `health` (awaiting Redis) just before the registry is rendered."""

    def __init__(self) -> None:
        self.health: Health | None = None
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
        up = GaugeMetricFamily(
            "streamer_service_up",
            "1 when a required service is up for a use case (as /health sees it)",
            labels=["service", "usecase"],
        )
        health = self.health
        for found in health.instances if health else []:
            service, instance = found.service, found.instance
            for usecase, values in found.counters.items():
                for name, value in _flatten(values):
                    counters.add_metric([service, instance, usecase, name], value)
            for usecase, version in found.model_versions.items():
                if version is not None:
                    versions.add_metric([service, instance, usecase], float(version))
            age.add_metric([service, instance], found.age_s)
        checks = sorted(health.checks if health else [], key=lambda c: (c.service, c.usecase))
        for check in checks:
            up.add_metric([check.service, check.usecase], 1.0 if check.up else 0.0)
        redis = GaugeMetricFamily(
            "streamer_api_redis_up", "1 when the last scrape could read the heartbeats"
        )
        redis.add_metric([], 1.0 if self.redis_up else 0.0)
        yield from (counters, versions, age, up, redis)


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

    def __init__(self, metrics: ApiMetrics, source: HealthSource) -> None:
        self.metrics = metrics
        self.source = source
        self.render = make_asgi_app(metrics.registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.refresh()
        await self.render(scope, receive, send)

    async def refresh(self) -> None:
        collector = self.metrics.pipeline
        try:
            async with asyncio.timeout(SCRAPE_TIMEOUT_S):
                collector.health = await self.source()
        except (RedisError, OSError, TimeoutError) as error:
            log.warning("heartbeats not read for /metrics", extra={"error": str(error)})
            collector.health, collector.redis_up = None, False
            return
        collector.redis_up = True
