"""What the pipeline produced: metric values (InfluxDB, written by the evaluator), alerts and
detections (Elasticsearch), model versions (Redis). Missing storage (no database or index yet)
is an empty answer, not an error: a use case that has not run yet simply has nothing."""

from __future__ import annotations

import json
import logging
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from aiohttp import ClientError
from elastic_transport import ApiError
from elasticsearch import AsyncElasticsearch, NotFoundError
from fastapi import APIRouter, Query
from pydantic import BaseModel, ValidationError

from services.api.dependencies import Context, ElasticClient, InfluxClient, KnownEntry, RedisClient
from services.api.models import (
    AlertDocument,
    Alerts,
    DetectionDocument,
    Metrics,
    MetricSeries,
    MetricValue,
    ModelInfo,
    Models,
)
from shared.clients.influx import AioinfluxStore, InfluxDBError
from shared.errors import ServiceUnavailableError
from shared.metrics.evaluation import VIEWS
from shared.modelstore import ModelStore

log = logging.getLogger("api")
router = APIRouter(prefix="/usecases", tags=["observations"])
NOT_FOUND = {404: {"description": "no such use case"}}
MAX_SINCE_S = 30 * 86400

T = TypeVar("T", bound=BaseModel)
View = StrEnum("View", [(view, view) for view in VIEWS])  # the evaluator's metric views


@router.get("/{name}/metrics", response_model=Metrics, responses=NOT_FOUND)
async def metrics(
    entry: KnownEntry,
    influx: InfluxClient,
    since: Annotated[
        int | None, Query(ge=1, le=MAX_SINCE_S, description="also the series of the last N s")
    ] = None,
    view: Annotated[View | None, Query(description="only this view")] = None,
    points: Annotated[int, Query(ge=1, le=10000, description="newest points per series")] = 1000,
) -> Metrics:
    """The latest value of each metric per view, and optionally their recent series."""
    measurement = _identifier(f"{entry.name}_metrics")
    where = f" WHERE \"view\" = '{view.value}'" if view else ""
    rows = await _query(
        influx, f'SELECT last("value") FROM {measurement}{where} GROUP BY "view","metric"'
    )
    latest = [
        MetricValue(
            view=str(row.get("view", "")),
            metric=str(row.get("metric", "")),
            value=row.get("last"),
            time_ms=int(row["time"]) // 1_000_000,
        )
        for row in rows
    ]
    series = None
    if since is not None:
        clause = f"time > now() - {since}s" + (f" AND \"view\" = '{view.value}'" if view else "")
        rows = await _query(
            influx,
            f'SELECT "value" FROM {measurement} WHERE {clause} GROUP BY "view","metric" '
            f"ORDER BY time DESC LIMIT {points}",
        )
        grouped: dict[tuple[str, str], list[tuple[int, float | None]]] = {}
        for row in rows:
            key = (str(row.get("view", "")), str(row.get("metric", "")))
            grouped.setdefault(key, []).append((int(row["time"]) // 1_000_000, row.get("value")))
        series = [
            MetricSeries(view=view_name, metric=metric, points=sorted(values))
            for (view_name, metric), values in sorted(grouped.items())
        ]
    return Metrics(usecase=entry.name, latest=latest, series=series)


@router.get("/{name}/alerts", response_model=Alerts, responses=NOT_FOUND)
async def alerts(
    entry: KnownEntry,
    elastic: ElasticClient,
    context: Context,
    limit: Annotated[int, Query(ge=1, le=1000, description="per kind of document")] = 50,
) -> Alerts:
    """Alert state changes and detections, newest first."""
    prefix = context.es_prefix
    return Alerts(
        usecase=entry.name,
        alerts=await _search(elastic, f"{prefix}alerts", entry.name, limit, AlertDocument),
        detections=await _search(
            elastic, f"{prefix}detections", entry.name, limit, DetectionDocument
        ),
    )


@router.get("/{name}/models", response_model=Models, responses=NOT_FOUND)
async def models(
    entry: KnownEntry,
    redis: RedisClient,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Models:
    """Published model versions with their metadata, newest first (the `models` stream; the
    model bytes are not read, so no model secret is needed)."""
    store = ModelStore(redis, entry.name, b"")
    versions = []
    for _, fields in await redis.xrevrange(store.key("models"), count=limit):
        meta = {key.decode(errors="replace"): _json(value) for key, value in fields.items()}
        try:
            versions.append(ModelInfo.model_validate(meta))
        except ValidationError:
            log.warning("malformed model entry skipped", extra={"usecase": entry.name})
    try:
        latest = await store.latest_version()
    except ValueError:
        latest = None
    return Models(usecase=entry.name, latest=latest, versions=versions)


def _identifier(name: str) -> str:
    """An InfluxQL identifier, quoted (use-case names are restricted; this is belt and braces)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def _query(influx: AioinfluxStore, influxql: str) -> list[dict[str, Any]]:
    try:
        return await influx.query(influxql)
    except InfluxDBError as error:
        if "database not found" in str(error):
            return []
        raise ServiceUnavailableError("InfluxDB", influx.url, error) from error
    except (OSError, ClientError, TimeoutError) as error:
        raise ServiceUnavailableError("InfluxDB", influx.url, error) from error


async def _search(
    elastic: AsyncElasticsearch, index: str, usecase: str, limit: int, model: type[T]
) -> list[T]:
    try:
        answer = await elastic.search(
            index=index,
            query={"term": {"usecase": usecase}},
            sort=[{"@timestamp": {"order": "desc", "unmapped_type": "date"}}],
            size=limit,
            ignore_unavailable=True,
            track_total_hits=False,
        )
    except NotFoundError:
        return []
    except ApiError as error:
        if error.meta.status >= 500:
            raise ServiceUnavailableError("Elasticsearch", index, error) from error
        raise
    documents = []
    for hit in answer["hits"]["hits"]:
        try:
            documents.append(model.model_validate(hit.get("_source") or {}))
        except ValidationError:
            log.warning("malformed document skipped", extra={"index": index, "id": hit.get("_id")})
    return documents


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
