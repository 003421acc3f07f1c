"""What the dashboard page shows, as JSON, built from the answers of sources.py.

One source failing or slow never blocks the others: its part comes back empty and
`sources.<name>` says why. The JSON shapes are documented on `Dashboard.snapshot` and
`Dashboard.usecases`.
"""

from __future__ import annotations

import asyncio
import logging
import math
import re
import time
from collections import deque
from collections.abc import Awaitable
from typing import Any, TypeVar

from elastic_transport import ApiError, TransportError
from redis.exceptions import RedisError

from services.api.dashboard.sources import Document, Requested, Sources
from shared.config.settings import ConnectionSettings
from shared.health import InstanceHealth, UseCaseService, usecase_services
from shared.sinks.elastic import DEFAULT_PREFIX
from shared.wire.influx import MetricPoint, ModelScore, ReliabilityRow
from shared.wire.store import ModelMeta, Published

log = logging.getLogger(__name__)

VIEWS = ("batch", "cumulative", "window")
DEFAULT_WINDOW_S = 600
MAX_WINDOW_S = 24 * 3600
#: Points per series in a full snapshot at most: the bucket is window / MAX_POINTS (>= 1 s).
MAX_POINTS = 300
SOURCE_TIMEOUT_S = 5.0
#: A delta re-reads this much before the newest bucket: writes arrive late (sink buffers).
LOOKBACK_MS = 10_000
MAX_EVENTS = 500
#: Federated rounds shown (a server use case).
MAX_ROUNDS = 20
#: The trainer publishes a `stream` version about every second: as events they would drown
#: the others, so only versions of another mode (retrain, classical, offline...) are events.
QUIET_MODES = ("stream",)
MODEL_FIELDS = (
    "version",
    "created_at",
    "algorithm",
    "champion",
    "challengers",
    "previous_champion",
    "mode",
    "reason",
    "records_learned",
    "positions",
    "lag_records",
    "lag_ms",
    "round",
)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")

Points = list[list[float]]
T = TypeVar("T")


class Dashboard:
    """The page's data. Keeps, per use case, the evaluators' output counts seen in their
    heartbeats: the throughput when Elasticsearch has no batches."""

    def __init__(self, settings: ConnectionSettings, es_prefix: str = DEFAULT_PREFIX):
        self.sources = Sources(settings, es_prefix)
        self._outputs: dict[str, deque[tuple[int, float]]] = {}

    async def close(self) -> None:
        await self.sources.close()

    async def usecases(self) -> dict[str, Any]:
        """`{"usecases": [{"name", "live", "configured", "metrics"}], "sources": {...}}`:
        folders of the use-cases directory, use cases of live heartbeats, and use cases with
        metrics in InfluxDB."""
        status: dict[str, dict[str, Any]] = {}
        instances = await _guard(status, "redis", self.sources.instances(), [])
        with_metrics = await _guard(status, "influxdb", self.sources.usecases_with_metrics(), set())
        configured = await self.sources.configured()
        live = {name for found in instances for name in found.usecases}
        names = sorted(configured | live | with_metrics)
        return {
            "usecases": [
                {
                    "name": name,
                    "live": name in live,
                    "configured": name in configured,
                    "metrics": name in with_metrics,
                }
                for name in names
                if NAME.match(name)
            ],
            "sources": status,
        }

    async def snapshot(
        self, usecase: str, window_s: int = DEFAULT_WINDOW_S, after_ms: int | None = None
    ) -> dict[str, Any]:
        """What the page shows, as JSON. Times are epoch milliseconds; series are lists of
        `[time, value]` in time order, one point per bucket (`bucket_ms`, the bucket's start).

        Without `after_ms`: the whole window (`full: true`). With it (the `cursor` of the
        previous answer): only buckets from `after_ms` on (`full: false`); the client replaces
        points of the same time and appends the others. `events` (deduplicated by the client),
        `services`, `model` and `sources` are always complete.

        `model`: the newest version's MODEL_FIELDS (`positions`: `<topic>/<partition>` -> the
        next offset it has not learnt; `lag_records`: records it had not learnt when
        published), `serving` (service -> the newest version its running instances use) and
        `launchers` (launcher instance -> its version). `services`: one row per instance
        (shared.health.UseCaseService). `leaderboard` (null without challengers): see
        `leaderboard_panel`; its `series` are deltas like the metrics'. `rounds` (empty but
        for a federated server): its newest rounds, oldest first (shared.wire.federated.RoundRow).
        `reliability` (null without a calibration metric): see `reliability_panel`.
        """
        now_ms = int(time.time() * 1000)
        bucket_ms = max(1000, (window_s * 1000 // MAX_POINTS) // 1000 * 1000)
        window_start = now_ms - window_s * 1000
        start_ms = window_start if after_ms is None else max(window_start, after_ms)
        start_ms -= start_ms % bucket_ms
        status: dict[str, dict[str, Any]] = {}
        sources = self.sources
        # two gathers in one, all seven reads at once: typeshed types a gather of at most six
        (
            (metrics, board, batches, alerts, redis_part, rounds),
            reliability,
        ) = await asyncio.gather(
            asyncio.gather(
                _guard(
                    status, "influxdb", sources.metric_buckets(usecase, start_ms, bucket_ms), []
                ),
                _guard(status, "influxdb", self._leaderboard(usecase, start_ms, bucket_ms), None),
                _guard(
                    status,
                    "elasticsearch",
                    self._batches(usecase, start_ms, bucket_ms, window_start),
                    None,
                ),
                # events are few: always the whole window, so a late-indexed alert is not missed
                _guard(
                    status, "elasticsearch", sources.alerts(usecase, window_start, MAX_EVENTS), []
                ),
                _guard(status, "redis", self._redis_part(usecase, window_start), None),
                _guard(status, "redis", sources.federated_rounds(usecase, MAX_ROUNDS), []),
            ),
            _guard(status, "influxdb", sources.reliability(usecase), []),
        )
        services, model, events, outputs = redis_part or ([], None, [], None)
        if batches and batches["present"]:
            throughput = {"source": "elasticsearch", "points": batches["throughput"]}
            latency = {"p50": batches["p50"], "p95": batches["p95"]}
        else:
            points = self._outputs_rate(usecase, outputs, start_ms)
            throughput = {"source": "heartbeat" if points else None, "points": points}
            latency = {"p50": [], "p95": []}
        events = sorted(alert_events(alerts) + events, key=lambda event: event["time"])
        return {
            "usecase": usecase,
            "time": now_ms,
            "window_s": window_s,
            "bucket_ms": bucket_ms,
            "full": after_ms is None,
            # the next `after`: LOOKBACK_MS back, so points written late are still seen
            "cursor": now_ms - max(bucket_ms, LOOKBACK_MS),
            "metrics": metric_series(metrics),
            "throughput": throughput,
            "latency": latency,
            "events": events[-MAX_EVENTS:],
            "model": model,
            "leaderboard": leaderboard_panel(board, model),
            "rounds": [row.model_dump() for row in rounds],
            "reliability": reliability_panel(reliability),
            "services": [row.model_dump() for row in services],
            "sources": status,
        }

    async def _leaderboard(
        self, usecase: str, start_ms: int, bucket_ms: int
    ) -> tuple[list[ModelScore], str, list[ModelScore]] | None:
        """With challengers: each model's newest values, the metric the chart follows, and
        that metric's window-view buckets per model."""
        latest = await self.sources.leaderboard(usecase)
        metric = chart_metric(latest)
        if metric is None:
            return None
        series = await self.sources.leaderboard_buckets(
            usecase, start_ms, bucket_ms, "window", metric
        )
        return latest, metric, series

    async def _batches(
        self, usecase: str, start_ms: int, bucket_ms: int, window_start: int
    ) -> dict[str, Any]:
        # from LOOKBACK_MS earlier: the evaluation before the first bucket gives its interval
        since = max(window_start, start_ms - LOOKBACK_MS)
        documents = await self.sources.batches(usecase, since)
        result = batch_buckets(documents, start_ms, bucket_ms)
        if not result["present"] and start_ms > window_start:
            # the window has batches, even if none is new: heartbeats must not stand in
            result["present"] = await self.sources.has_batches(usecase, window_start)
        return result

    async def _redis_part(
        self, usecase: str, since_ms: int
    ) -> tuple[list[UseCaseService], dict[str, Any] | None, list[dict[str, Any]], Any]:
        sources = self.sources
        instances, requests, published, newest = await asyncio.gather(
            sources.instances(),
            sources.retrain_requests(usecase, since_ms, MAX_EVENTS),
            sources.published(usecase, since_ms, skip_modes=QUIET_MODES),
            sources.newest_model(usecase),
        )
        services = usecase_services(instances, usecase)
        events = retrain_events(requests) + model_events(published)
        model = model_panel(newest, instances, usecase)
        return services, model, events, evaluator_outputs(services)

    def _outputs_rate(
        self, usecase: str, outputs: tuple[int, float] | None, start_ms: int
    ) -> Points:
        """Records/s between successive evaluator heartbeats (seen while the page is open)."""
        samples = self._outputs.setdefault(usecase, deque(maxlen=MAX_POINTS * 4))
        if outputs is not None and (not samples or outputs[0] > samples[-1][0]):
            if samples and outputs[1] < samples[-1][1]:  # the evaluator restarted
                samples.clear()
            samples.append(outputs)
        pairs = zip(list(samples), list(samples)[1:], strict=False)
        return [
            [t1, round((n1 - n0) / ((t1 - t0) / 1000), 3)]
            for (t0, n0), (t1, n1) in pairs
            if t1 >= start_ms
        ]


# ---- aggregation: pure functions of what the sources answered ------------------------------


def metric_series(points: list[MetricPoint]) -> dict[str, dict[str, Points]]:
    """view -> metric -> `[time, value]` in time order; non-finite values and unknown views
    are left out."""
    metrics: dict[str, dict[str, Points]] = {}
    for point in points:
        value = _finite(point.value)
        if value is None or point.view not in VIEWS:
            continue
        metrics.setdefault(point.view, {}).setdefault(point.metric, []).append(
            [point.time_ms, value]
        )
    for views in metrics.values():
        for series in views.values():
            series.sort()
    return metrics


def batch_buckets(documents: list[Document], start_ms: int, bucket_ms: int) -> dict[str, Any]:
    """Per bucket: records/s (the records scored in the bucket over the time since each
    one's previous evaluation, the evaluator's own estimate for the first one), latency p50
    (mean of the evaluations' p50) and p95 (their max). `present`: a bucket has batches."""
    buckets: dict[int, dict[str, list[float]]] = {}
    previous: int | None = None
    for document in documents:
        at, fields = document.at_ms, document.fields
        records = _finite(fields.get("records")) or 0.0
        estimate = _finite(fields.get("records_per_s"))
        if previous is not None and at > previous:
            seconds: float | None = (at - previous) / 1000
        else:
            seconds = records / estimate if estimate else None
        previous = at
        if at < start_ms:
            continue
        bucket = buckets.setdefault(
            at - at % bucket_ms, {"records": [], "seconds": [], "p50": [], "p95": []}
        )
        if seconds:
            bucket["records"].append(records)
            bucket["seconds"].append(seconds)
        for key, field in (("p50", "latency_ms_p50"), ("p95", "latency_ms_p95")):
            value = _finite(fields.get(field))
            if value is not None:
                bucket[key].append(value)
    result: dict[str, Any] = {"throughput": [], "p50": [], "p95": [], "present": bool(buckets)}
    for start in sorted(buckets):
        bucket = buckets[start]
        if bucket["seconds"]:
            rate = sum(bucket["records"]) / sum(bucket["seconds"])
            result["throughput"].append([start, round(rate, 3)])
        if bucket["p50"]:
            result["p50"].append([start, sum(bucket["p50"]) / len(bucket["p50"])])
        if bucket["p95"]:
            result["p95"].append([start, max(bucket["p95"])])
    return result


def alert_events(alerts: list[Document]) -> list[dict[str, Any]]:
    events = []
    for alert in alerts:
        state = alert.fields.get("state", "started")
        events.append(
            {
                "time": alert.at_ms,
                "kind": "alert_stopped" if state == "stopped" else "alert_started",
                "text": f"alert {state}: {', '.join(alert.fields.get('metrics') or [])}",
            }
        )
    return events


def retrain_events(requests: list[Requested]) -> list[dict[str, Any]]:
    return [
        {
            "time": found.at_ms,
            "kind": "retrain",
            "text": f"retrain requested: {found.request.reason}"
            + (f" (by {found.request.by})" if found.request.by else ""),
        }
        for found in requests
    ]


def model_events(published: list[Published]) -> list[dict[str, Any]]:
    """The versions worth a marker: not the trainer's every-second `stream` versions. `label`
    is the chart's short text (`v3`), `text` the list's (`v3 (retrain, alert: accuracy)`)."""
    events = []
    for found in published:
        meta = found.meta
        if meta.mode in QUIET_MODES:
            continue
        label = f"v{meta.version}"
        why = ", ".join(str(part) for part in (meta.mode, meta.reason) if part)
        text = f"{label} ({why})" if why else label
        events.append({"time": found.at_ms, "kind": "model", "text": text, "label": label})
    return events


def model_panel(
    newest: ModelMeta | None, instances: list[InstanceHealth], usecase: str
) -> dict[str, Any] | None:
    """The newest version and the versions in use (docstring of `Dashboard.snapshot`)."""
    running = [found for found in instances if found.up and usecase in found.usecases]
    serving: dict[str, int] = {}
    launchers: dict[str, int] = {}
    for found in running:
        version = found.model_versions.get(usecase)
        if version is None:
            continue
        serving[found.service] = max(version, serving.get(found.service, version))
        if found.service == "launcher":
            launchers[found.instance] = version
    if newest is None and not serving:
        return None
    described = newest.model_dump() if newest else {}
    model = {field: described.get(field) for field in MODEL_FIELDS}
    if model["version"] is None and serving:
        model["version"] = max(serving.values())
    model["serving"] = serving
    model["launchers"] = dict(sorted(launchers.items()))
    return model


def chart_metric(latest: list[ModelScore]) -> str | None:
    """The leaderboard chart's metric: `accuracy` when the use case has it, else the first
    metric by name; None without a leaderboard."""
    names = sorted({score.metric for score in latest})
    if not names:
        return None
    return "accuracy" if "accuracy" in names else names[0]


def leaderboard_panel(
    board: tuple[list[ModelScore], str, list[ModelScore]] | None, model: dict[str, Any] | None
) -> dict[str, Any] | None:
    """`{"metric", "champion", "rows": [{"model", "role", "values": {view: {metric: value}}}],
    "series": {model: [[time, value], ...]}}` (the window view of `metric`, per bucket), the
    champion first; roles from the newest version (`model`), else from the evaluator. None
    without challengers."""
    if board is None:
        return None
    latest, metric, buckets = board
    champion = (model or {}).get("champion") or next(
        (score.model for score in latest if score.role == "champion"), None
    )
    values: dict[str, dict[str, dict[str, float | None]]] = {}
    for score in latest:
        value = _finite(score.value)
        values.setdefault(score.model, {}).setdefault(score.view, {})[score.metric] = value
    order = sorted(values, key=lambda name: (name != champion, name))
    series: dict[str, Points] = {}
    for score in buckets:
        value = _finite(score.value)
        if value is not None:
            series.setdefault(score.model, []).append([score.time_ms, value])
    for points in series.values():
        points.sort()
    return {
        "metric": metric,
        "champion": champion,
        "rows": [
            {
                "model": name,
                "role": "champion" if name == champion else "challenger",
                "values": values[name],
            }
            for name in order
        ],
        "series": series,
    }


def reliability_panel(rows: list[ReliabilityRow]) -> dict[str, Any] | None:
    """`{"metric", "views": {view: {"evaluation", "time", "bins": [{"bin", "lower", "upper",
    "count", "confidence", "frequency"}]}}}`: the newest reliability table of one calibration
    metric (`calibration_error` when the use case has it, else the first by name) per view,
    bins lowest first. None without a calibration metric."""
    names = sorted({row.metric for row in rows})
    if not names:
        return None
    metric = "calibration_error" if "calibration_error" in names else names[0]
    views: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda found: (found.view, found.bin)):
        if row.metric != metric or row.view not in VIEWS:
            continue
        table = views.setdefault(
            row.view, {"evaluation": row.evaluation, "time": row.time_ms, "bins": []}
        )
        table["bins"].append(
            {
                "bin": row.bin,
                "lower": row.lower,
                "upper": row.upper,
                "count": row.count,
                "confidence": row.confidence,
                "frequency": row.frequency,
            }
        )
    return {"metric": metric, "views": views}


def evaluator_outputs(services: list[UseCaseService]) -> tuple[int, float] | None:
    """(time of the newest beat, records scored by every running evaluator)."""
    evaluators = [row for row in services if row.service == "evaluator" and row.up]
    if not evaluators:
        return None
    newest = max(row.updated_at or 0.0 for row in evaluators)
    scored = sum(_finite(row.counters.get("outputs")) or 0.0 for row in evaluators)
    return int(newest * 1000), scored


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


async def _guard(status: dict[str, dict[str, Any]], name: str, work: Awaitable[T], default: T) -> T:
    """`work`'s result, or `default` when the source fails or takes too long; `status[name]`
    says which (a source answering in several parts keeps its first error)."""
    try:
        result = await asyncio.wait_for(work, SOURCE_TIMEOUT_S)
    except TimeoutError:
        error = f"no answer within {SOURCE_TIMEOUT_S:g} s"
    except (RedisError, OSError, ApiError, TransportError, ValueError, KeyError) as failure:
        error = f"{type(failure).__name__}: {failure}"[:300]
    except Exception as failure:  # aioinflux raises its own errors, and clients vary
        error = f"{type(failure).__name__}: {failure}"[:300]
    else:
        status.setdefault(name, {"ok": True})
        return result
    log.debug("dashboard source failed", extra={"source": name, "error": error})
    if status.get(name, {}).get("ok", True):
        status[name] = {"ok": False, "error": error}
    return default
