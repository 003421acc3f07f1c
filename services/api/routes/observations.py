"""What the pipeline produced: metric values and reliability tables (InfluxDB, written by the
evaluator), alerts and detections (Elasticsearch), model versions (Redis). Missing storage (no
database or index yet) is an empty answer, not an error: a use case that has not run yet simply
has nothing."""

from __future__ import annotations

import logging
from typing import Annotated, Any, TypeVar

from aiohttp import ClientError
from elastic_transport import ApiError
from elasticsearch import AsyncElasticsearch, NotFoundError
from fastapi import APIRouter, Query
from pydantic import BaseModel, ValidationError

from services.api.dependencies import Context, ElasticClient, InfluxClient, KnownEntry, RedisClient
from services.api.errors import Responses
from services.api.models import (
    AlertDocument,
    Alerts,
    DetectionDocument,
    Metrics,
    MetricSeries,
    MetricValue,
    Models,
    Reliability,
    ReliabilityBin,
    ReliabilityTable,
    Rounds,
)
from shared.clients.influx import AioinfluxStore, InfluxDBError
from shared.errors import ServiceUnavailableError
from shared.metrics.evaluation import View
from shared.wire.federated import read_rounds
from shared.wire.influx import MetricsMeasurement, ReliabilityMeasurement, ReliabilityRow
from shared.wire.store import latest_version, read_published

log = logging.getLogger("api")
router = APIRouter(prefix="/usecases", tags=["observations"])
NOT_FOUND: Responses = {404: {"description": "no such use case"}}
MAX_SINCE_S = 30 * 86400

T = TypeVar("T", bound=BaseModel)


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
    measurement, store = MetricsMeasurement(entry.name), InfluxReader(influx)
    only = view.value if view else None
    latest = [
        MetricValue(view=point.view, metric=point.metric, value=point.value, time_ms=point.time_ms)
        for point in await measurement.latest(store, only)
    ]
    series = None
    if since is not None:
        grouped: dict[tuple[str, str], list[tuple[int, float | None]]] = {}
        for point in await measurement.recent(store, since, only, points):
            grouped.setdefault((point.view, point.metric), []).append((point.time_ms, point.value))
        series = [
            MetricSeries(view=view_name, metric=metric, points=sorted(values))
            for (view_name, metric), values in sorted(grouped.items())
        ]
    return Metrics(usecase=entry.name, latest=latest, series=series)


@router.get("/{name}/reliability", response_model=Reliability, responses=NOT_FOUND)
async def reliability(
    entry: KnownEntry,
    influx: InfluxClient,
    view: Annotated[View | None, Query(description="only this view")] = None,
) -> Reliability:
    """The reliability (calibration) table of each calibration metric per view, as the
    newest evaluation wrote it: per bin of probability, how many records, their mean
    probability and how often the outcome happened."""
    rows = await ReliabilityMeasurement(entry.name).latest(
        InfluxReader(influx), view.value if view else None
    )
    return Reliability(usecase=entry.name, tables=reliability_tables(rows))


def reliability_tables(rows: list[ReliabilityRow]) -> list[ReliabilityTable]:
    """Rows (sorted by view, metric, bin, all of one evaluation per table) into tables."""
    tables: dict[tuple[str, str], ReliabilityTable] = {}
    for row in rows:
        table = tables.get((row.view, row.metric))
        if table is None:
            table = tables[(row.view, row.metric)] = ReliabilityTable(
                view=row.view,
                metric=row.metric,
                evaluation=row.evaluation,
                time_ms=row.time_ms,
                bins=[],
            )
        table.bins.append(
            ReliabilityBin(
                bin=row.bin,
                lower=row.lower,
                upper=row.upper,
                count=row.count,
                confidence=row.confidence,
                frequency=row.frequency,
            )
        )
    return list(tables.values())


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
    published = await read_published(redis, entry.name, newest=limit)
    try:
        latest = await latest_version(redis, entry.name)
    except ValueError:
        latest = None
    versions = [found.meta for found in reversed(published)]
    return Models(usecase=entry.name, latest=latest, versions=versions)


@router.get("/{name}/rounds", response_model=Rounds, responses=NOT_FOUND)
async def rounds(
    entry: KnownEntry,
    redis: RedisClient,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> Rounds:
    """A federated server's newest rounds (`streamer federate server`), oldest first: each
    client's training records and loss on its own records, the failures, the server's held-out
    loss. Empty for a use case that is not a federated server."""
    return Rounds(usecase=entry.name, rounds=await read_rounds(redis, entry.name, limit))


class InfluxReader:
    """The API's InfluxDB queries: a database that does not exist yet is an empty answer (no
    use case has run), a server that does not answer is a 503 naming it."""

    def __init__(self, influx: AioinfluxStore):
        self.influx = influx

    async def query(self, influxql: str) -> list[dict[str, Any]]:
        try:
            return await self.influx.query(influxql)
        except InfluxDBError as error:
            if "database not found" in str(error):
                return []
            raise ServiceUnavailableError("InfluxDB", self.influx.url, error) from error
        except (OSError, ClientError, TimeoutError) as error:
            raise ServiceUnavailableError("InfluxDB", self.influx.url, error) from error


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
