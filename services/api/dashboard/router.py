"""The web dashboard: one page (static/index.html, dashboard.js, dashboard.css and a vendored
uPlot) and the JSON and server-sent-events endpoints it reads, which go to the sources directly:

- InfluxDB `<usecase>_metrics` (tags view, metric; field value), written by the evaluator;
- Elasticsearch `<prefix>batches` (throughput, latency) and `<prefix>alerts`, written by the
  evaluator when visualization=true; either may be absent;
- Redis: heartbeats (service health, counters, served model versions), the trainer's
  `streamer:<usecase>:models` stream and `model:latest`, and `train:requests` (retrain markers).

Mount with `app.include_router(dashboard_router(settings), prefix="/dashboard")`. Routes, relative
to the prefix: `/` (the page), `/static/...`, `/api/usecases`, `/api/snapshot`, `/api/stream`.
The JSON shapes are documented on `Sources.snapshot`. One source failing or slow never blocks the
others: its part comes back empty and `sources.<name>` says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

from elastic_transport import ApiError, TransportError
from elasticsearch import AsyncElasticsearch
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.clients.elastic import connect_elasticsearch
from shared.clients.influx import AioinfluxStore
from shared.clients.redis import connect_redis
from shared.config.settings import ConnectionSettings
from shared.health import instances_of, usecase_services
from shared.heartbeat import read_heartbeats
from shared.sinks.elastic import DEFAULT_PREFIX

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
VIEWS = ("batch", "cumulative", "window")
PUSH_INTERVAL_S = 2.0
STREAM_LIFETIME_S = 60.0
RECONNECT_MS = 500
DEFAULT_WINDOW_S = 600
MAX_WINDOW_S = 24 * 3600
#: Points per series in a full snapshot at most: the bucket is window / MAX_POINTS (>= 1 s).
MAX_POINTS = 300
SOURCE_TIMEOUT_S = 5.0
#: A delta re-reads this much before the newest bucket: writes arrive late (sink buffers).
LOOKBACK_MS = 10_000
MAX_EVENTS = 500
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_MODEL_FIELDS = ("version", "created_at", "algorithm", "mode", "reason", "records_learned")

Points = list[list[float]]
T = TypeVar("T")


def _check_name(usecase: str) -> str:
    if not _NAME.match(usecase):
        raise HTTPException(400, f"not a use-case name: {usecase!r}")
    return usecase


def _text(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)


def _json_value(raw: Any) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return _text(raw)


def _stream_ms(entry_id: Any) -> int:
    """The time part of a Redis stream entry id (`<ms>-<seq>`)."""
    return int(_text(entry_id).split("-", 1)[0])


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


class Sources:
    """Clients on the data sources, created on first use inside the server's event loop."""

    def __init__(self, settings: ConnectionSettings, es_prefix: str = DEFAULT_PREFIX):
        self.settings = settings
        self.es_prefix = es_prefix
        self._redis: Redis | None = None
        self._influx: AioinfluxStore | None = None
        self._elastic: AsyncElasticsearch | None = None
        # (time ms, evaluator outputs) per use case: throughput when Elasticsearch has none
        self._outputs: dict[str, deque[tuple[int, float]]] = {}

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = connect_redis(self.settings, max_connections=8)
        return self._redis

    @property
    def influx(self) -> AioinfluxStore:
        if self._influx is None:
            self._influx = AioinfluxStore(self.settings)
        return self._influx

    @property
    def elastic(self) -> AsyncElasticsearch:
        if self._elastic is None:
            self._elastic = connect_elasticsearch(self.settings)
        return self._elastic

    async def close(self) -> None:
        for client in (self._redis, self._influx, self._elastic):
            if client is None:
                continue
            with contextlib.suppress(Exception):
                await (client.aclose() if isinstance(client, Redis) else client.close())
        self._redis = self._influx = self._elastic = None

    # ---- use cases -----------------------------------------------------------------------

    async def usecases(self) -> dict[str, Any]:
        """`{"usecases": [{"name", "live", "configured", "metrics"}], "sources": {...}}`:
        folders of the use-cases directory, use cases of live heartbeats, and InfluxDB
        measurements `<usecase>_metrics`."""
        status: dict[str, dict[str, Any]] = {}
        heartbeats = await _guard(status, "redis", read_heartbeats(self.redis), [])
        rows = await _guard(status, "influxdb", self.influx.query("SHOW MEASUREMENTS"), [])
        configured = await asyncio.to_thread(_configured, Path(self.settings.usecases_dir))
        live = {name for beat in heartbeats for name in beat.usecases}
        with_metrics = {
            row["name"].removesuffix("_metrics")
            for row in rows
            if str(row.get("name", "")).endswith("_metrics")
        }
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
                if _NAME.match(name)
            ],
            "sources": status,
        }

    # ---- snapshot ------------------------------------------------------------------------

    async def snapshot(
        self, usecase: str, window_s: int = DEFAULT_WINDOW_S, after_ms: int | None = None
    ) -> dict[str, Any]:
        """What the page shows, as JSON. Times are epoch milliseconds; series are lists of
        `[time, value]` in time order, one point per bucket (`bucket_ms`, the bucket's start).

        Without `after_ms`: the whole window (`full: true`). With it (the `cursor` of the
        previous answer): only buckets from `after_ms` on (`full: false`); the client replaces
        points of the same time and appends the others. `events` (deduplicated by the client),
        `services`, `model` and `sources` are always complete.
        """
        now_ms = int(time.time() * 1000)
        bucket_ms = max(1000, (window_s * 1000 // MAX_POINTS) // 1000 * 1000)
        full = after_ms is None
        window_start = now_ms - window_s * 1000
        start_ms = window_start if after_ms is None else max(window_start, after_ms)
        start_ms -= start_ms % bucket_ms
        status: dict[str, dict[str, Any]] = {}
        span = (start_ms, bucket_ms, window_start)
        metrics, batches, alerts, redis_part = await asyncio.gather(
            _guard(status, "influxdb", self._metrics(usecase, start_ms, bucket_ms), {}),
            _guard(status, "elasticsearch", self._batches(usecase, *span), None),
            # events are few: always the whole window, so a late-indexed alert is not missed
            _guard(status, "elasticsearch", self._alerts(usecase, window_start), []),
            _guard(status, "redis", self._redis_part(usecase, window_start, now_ms), None),
        )
        redis_part = redis_part or {"services": [], "model": None, "events": [], "outputs": None}
        if batches and batches["present"]:
            throughput = {"source": "elasticsearch", "points": batches["throughput"]}
            latency = {"p50": batches["p50"], "p95": batches["p95"]}
        else:
            points = self._outputs_rate(usecase, redis_part["outputs"], start_ms)
            throughput = {"source": "heartbeat" if points else None, "points": points}
            latency = {"p50": [], "p95": []}
        events = sorted(alerts + redis_part["events"], key=lambda event: event["time"])
        return {
            "usecase": usecase,
            "time": now_ms,
            "window_s": window_s,
            "bucket_ms": bucket_ms,
            "full": full,
            # the next `after`: LOOKBACK_MS back, so points written late are still seen
            "cursor": now_ms - max(bucket_ms, LOOKBACK_MS),
            "metrics": metrics,
            "throughput": throughput,
            "latency": latency,
            "events": events[-MAX_EVENTS:],
            "model": redis_part["model"],
            "services": redis_part["services"],
            "sources": status,
        }

    async def _metrics(self, usecase: str, start_ms: int, bucket_ms: int) -> dict[str, Any]:
        measurement = f"{usecase}_metrics".replace("\\", "\\\\").replace('"', '\\"')
        rows = await self.influx.query(
            f'SELECT last("value") AS "value" FROM "{measurement}" '
            f'WHERE time >= {start_ms}ms GROUP BY time({bucket_ms}ms), "view", "metric" '
            "fill(none)"
        )
        metrics: dict[str, dict[str, Points]] = {}
        for row in rows:
            value = _finite(row.get("value"))
            if value is None or row.get("view") not in VIEWS:
                continue
            series = metrics.setdefault(row["view"], {}).setdefault(str(row["metric"]), [])
            series.append([int(row["time"]) // 1_000_000, value])
        for views in metrics.values():
            for series in views.values():
                series.sort()
        return metrics

    async def _batches(
        self, usecase: str, start_ms: int, bucket_ms: int, window_start: int
    ) -> dict[str, Any]:
        """Per bucket: records/s (the records scored in the bucket over the time since each
        one's previous evaluation, the evaluator's own estimate for the first one), latency p50
        (mean of the evaluations' p50) and p95 (their max). `present`: the window has batches,
        even if none is new (then the heartbeats' counters must not stand in for them)."""
        index = f"{self.es_prefix}batches"
        response = await self.elastic.search(
            index=index,
            # from LOOKBACK_MS earlier: the evaluation before the first bucket gives its interval
            query=_usecase_since(usecase, max(window_start, start_ms - LOOKBACK_MS)),
            sort=[{"@timestamp": "asc"}],
            size=10_000,
            source=["@timestamp", "records", "records_per_s", "latency_ms_p50", "latency_ms_p95"],
            ignore_unavailable=True,
        )
        buckets: dict[int, dict[str, list[float]]] = {}
        previous: int | None = None
        for hit in response["hits"]["hits"]:
            document = hit["_source"]
            at = _timestamp_ms(document.get("@timestamp"))
            if at is None:
                continue
            records = _finite(document.get("records")) or 0.0
            estimate = _finite(document.get("records_per_s"))
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
                value = _finite(document.get(field))
                if value is not None:
                    bucket[key].append(value)
        present = bool(buckets)
        if not present and start_ms > window_start:
            counted = await self.elastic.count(
                index=index, query=_usecase_since(usecase, window_start), ignore_unavailable=True
            )
            present = counted["count"] > 0
        result: dict[str, Any] = {"throughput": [], "p50": [], "p95": [], "present": present}
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

    async def _alerts(self, usecase: str, start_ms: int) -> list[dict[str, Any]]:
        response = await self.elastic.search(
            index=f"{self.es_prefix}alerts",
            query=_usecase_since(usecase, start_ms),
            sort=[{"@timestamp": "asc"}],
            size=MAX_EVENTS,
            ignore_unavailable=True,
        )
        events = []
        for hit in response["hits"]["hits"]:
            document = hit["_source"]
            at = _timestamp_ms(document.get("@timestamp"))
            if at is None:
                continue
            state = document.get("state", "started")
            events.append(
                {
                    "time": at,
                    "kind": "alert_stopped" if state == "stopped" else "alert_started",
                    "text": f"alert {state}: {', '.join(document.get('metrics') or [])}",
                }
            )
        return events

    async def _redis_part(self, usecase: str, start_ms: int, now_ms: int) -> dict[str, Any]:
        redis, prefix = self.redis, f"streamer:{usecase}:"
        heartbeats = await read_heartbeats(redis)
        requests = await redis.xrange(f"{prefix}train:requests", min=start_ms, count=MAX_EVENTS)
        published = await redis.xrange(f"{prefix}models", min=start_ms, count=MAX_EVENTS)
        events: list[dict[str, Any]] = []
        for entry_id, fields in requests:
            entry = {_text(k): _text(v) for k, v in fields.items()}
            by = f" (by {entry['by']})" if entry.get("by") else ""
            events.append(
                {
                    "time": _stream_ms(entry_id),
                    "kind": "retrain",
                    "text": f"retrain requested: {entry.get('reason', '')}{by}",
                }
            )
        for entry_id, fields in published:
            version = _json_value(fields.get(b"version", b"null"))
            events.append({"time": _stream_ms(entry_id), "kind": "model", "text": f"v{version}"})
        instances = instances_of(heartbeats, now_ms / 1000)
        services = [row.model_dump() for row in usecase_services(instances, usecase)]
        evaluators = [s for s in services if s["service"] == "evaluator" and s["up"]]
        outputs = None  # (time of the newest beat, records scored by every evaluator)
        if evaluators:
            outputs = (
                int(max(s["updated_at"] for s in evaluators) * 1000),
                sum(_finite(s["counters"].get("outputs")) or 0.0 for s in evaluators),
            )
        return {
            "services": services,
            "model": await self._model(usecase, services),
            "events": events,
            "outputs": outputs,
        }

    async def _model(self, usecase: str, services: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The newest published version and its metadata, and the version each service uses."""
        redis, prefix = self.redis, f"streamer:{usecase}:"
        meta: dict[str, Any] = {}
        latest = await redis.get(f"{prefix}model:latest")
        if latest is not None:
            raw = await redis.hgetall(f"{prefix}model:{_text(latest)}:meta")
            meta = {_text(k): _json_value(v) for k, v in raw.items()}
            meta.setdefault("version", int(_text(latest)))
        else:
            entries = await redis.xrevrange(f"{prefix}models", count=1)
            if entries:
                meta = {_text(k): _json_value(v) for k, v in entries[0][1].items()}
        serving = {
            service["service"]: service["model_version"]
            for service in services
            if service["up"] and service.get("model_version") is not None
        }
        if not meta and not serving:
            return None
        model = {field: meta.get(field) for field in _MODEL_FIELDS}
        if model["version"] is None and serving:
            model["version"] = max(serving.values())
        model["serving"] = serving
        return model

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


def _configured(folder: Path) -> set[str]:
    """Folders of the use-cases directory that hold props files."""
    if not folder.is_dir():
        return set()
    return {path.name for path in folder.iterdir() if path.is_dir() and any(path.glob("*.props"))}


def _usecase_since(usecase: str, start_ms: int) -> dict[str, Any]:
    return {
        "bool": {
            "filter": [
                {"term": {"usecase": usecase}},
                {"range": {"@timestamp": {"gte": start_ms, "format": "epoch_millis"}}},
            ]
        }
    }


def _timestamp_ms(value: Any) -> int | None:
    if isinstance(value, int | float):
        return int(value)
    return None


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


def _page(base: str) -> str:
    text = (STATIC / "index.html").read_text(encoding="utf-8")
    return text.replace("{{BASE}}", html.escape(base, quote=True))


def dashboard_router(
    settings: ConnectionSettings,
    es_prefix: str = DEFAULT_PREFIX,
    stream_lifetime_s: float = STREAM_LIFETIME_S,
) -> APIRouter:
    """The dashboard's routes; include them with `prefix="/dashboard"`. The router's lifespan
    closes its clients (FastAPI merges an included router's lifespan into the app's).

    An event stream ends after `stream_lifetime_s`: uvicorn waits for open responses when it
    shuts down, and a stream that never ends would hold it. The browser reconnects at once
    with `Last-Event-ID` (the cursor) and the stream goes on with deltas."""
    sources = Sources(settings, es_prefix)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await sources.close()

    router = APIRouter(lifespan=lifespan, tags=["dashboard"])
    router.sources = sources  # type: ignore[attr-defined]  # for tests and the app's shutdown

    @router.get("", include_in_schema=False)
    @router.get("/", response_class=HTMLResponse, summary="The dashboard page")
    async def page(request: Request) -> HTMLResponse:
        path = request.url.path
        return HTMLResponse(
            _page(path if path.endswith("/") else path + "/"),
            headers={"Cache-Control": "no-cache"},
        )

    @router.get("/static/{name:path}", include_in_schema=False)
    async def static(name: str) -> FileResponse:
        target = (STATIC / name).resolve()
        if not target.is_file() or not target.is_relative_to(STATIC) or target.name == "index.html":
            raise HTTPException(404, "no such file")
        return FileResponse(target, headers={"Cache-Control": "no-cache"})

    @router.get("/api/usecases", summary="Use cases the dashboard can show")
    async def usecases() -> JSONResponse:
        return JSONResponse(await sources.usecases())

    @router.get("/api/snapshot", summary="Metrics, throughput, latency, alerts, model, health")
    async def snapshot(
        usecase: str,
        window: int = Query(DEFAULT_WINDOW_S, ge=10, le=MAX_WINDOW_S, description="seconds"),
        after: int | None = Query(None, ge=0, description="`cursor` of the previous answer"),
    ) -> JSONResponse:
        return JSONResponse(await sources.snapshot(_check_name(usecase), window, after))

    @router.get("/api/stream", summary="Server-sent events: a snapshot every 2 s")
    async def stream(
        request: Request,
        usecase: str,
        window: int = Query(DEFAULT_WINDOW_S, ge=10, le=MAX_WINDOW_S, description="seconds"),
    ) -> StreamingResponse:
        name = _check_name(usecase)

        last_id = request.headers.get("last-event-id", "")
        resumed = int(last_id) if last_id.isdigit() else None

        async def events() -> AsyncIterator[str]:
            yield f"retry: {RECONNECT_MS}\n\n"
            cursor, ends = resumed, time.monotonic() + stream_lifetime_s
            while time.monotonic() < ends and not await request.is_disconnected():
                data = await sources.snapshot(name, window, cursor)
                cursor = data["cursor"]
                body = json.dumps(data, separators=(",", ":"))
                yield f"id: {cursor}\nevent: snapshot\ndata: {body}\n\n"
                await asyncio.sleep(min(PUSH_INTERVAL_S, max(0.0, ends - time.monotonic())))

        return StreamingResponse(
            events(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    return router
