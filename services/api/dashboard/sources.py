"""What the dashboard reads, one method per question, from the source that has the answer:

- Redis: the live instances (shared.health), the `models` stream and `model:latest`
  (shared.wire.store), retrain requests (`train:requests`);
- InfluxDB: the evaluator's `<usecase>_metrics` (shared.wire.influx.MetricsMeasurement), its
  reliability tables `<usecase>_reliability` (ReliabilityMeasurement) and, with challengers,
  `<usecase>_leaderboard` (LeaderboardMeasurement);
- Elasticsearch: `<prefix>batches` (throughput, latency) and `<prefix>alerts`, written by the
  evaluator when visualization=true (either may be absent);
- the use-cases folder.

Clients are created on first use, inside the server's event loop. Nothing here aggregates:
snapshot.py turns the answers into what the page shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from elasticsearch import AsyncElasticsearch
from pydantic import ValidationError
from redis.asyncio import Redis

from shared.clients.elastic import connect_elasticsearch
from shared.clients.influx import AioinfluxStore
from shared.clients.redis import connect_redis
from shared.config.settings import ConnectionSettings
from shared.health import InstanceHealth, instances_of
from shared.heartbeat import read_heartbeats
from shared.sinks.elastic import DEFAULT_PREFIX
from shared.wire.federated import RoundRow, read_rounds
from shared.wire.influx import (
    LeaderboardMeasurement,
    MetricPoint,
    MetricsMeasurement,
    ModelScore,
    ReliabilityMeasurement,
    ReliabilityRow,
    usecases_with_metrics,
)
from shared.wire.keys import UseCaseKeys
from shared.wire.store import (
    Fields,
    ModelMeta,
    Published,
    RetrainRequest,
    latest_version,
    read_meta,
    read_published,
)

#: At most this many documents per Elasticsearch search (batches in a window, alerts).
MAX_DOCUMENTS = 10_000


@dataclass(frozen=True)
class Requested:
    """A retrain request: when it was made, and what it says."""

    at_ms: int
    request: RetrainRequest


@dataclass(frozen=True)
class Document:
    """An Elasticsearch document with its time (epoch ms)."""

    at_ms: int
    fields: dict[str, Any]


class Sources:
    """Clients on the data sources and the dashboard's reads from them."""

    def __init__(self, settings: ConnectionSettings, es_prefix: str = DEFAULT_PREFIX):
        self.settings = settings
        self.es_prefix = es_prefix
        self._redis: Redis | None = None
        self._influx: AioinfluxStore | None = None
        self._elastic: AsyncElasticsearch | None = None

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

    # ---- Redis -----------------------------------------------------------------------------

    async def instances(self) -> list[InstanceHealth]:
        """Every live service instance."""
        return instances_of(await read_heartbeats(self.redis), time.time())

    async def retrain_requests(self, usecase: str, since_ms: int, count: int) -> list[Requested]:
        """The first `count` retrain requests since `since_ms`, oldest first."""
        key = UseCaseKeys(usecase).train_requests
        entries: list[tuple[bytes, Fields]] = await self.redis.xrange(  # type: ignore[assignment]
            key, min=since_ms, count=count
        )
        found = []
        for entry_id, fields in entries:
            with contextlib.suppress(ValidationError):
                found.append(Requested(_stream_ms(entry_id), RetrainRequest.decode(fields)))
        return found

    async def published(
        self, usecase: str, since_ms: int, skip_modes: Collection[str] = ()
    ) -> list[Published]:
        """The versions published since `since_ms`, oldest first, but those of `skip_modes`
        (the trainer keeps about the last 1,000 in the stream)."""
        return await read_published(self.redis, usecase, since_ms=since_ms, skip_modes=skip_modes)

    async def newest_model(self, usecase: str) -> ModelMeta | None:
        """The newest version's metadata: `model:latest`'s, else the stream's newest entry."""
        latest = await latest_version(self.redis, usecase)
        if latest is not None:
            meta = await read_meta(self.redis, usecase, latest)
            return meta or ModelMeta(version=latest)
        newest = await read_published(self.redis, usecase, newest=1)
        return newest[0].meta if newest else None

    async def federated_rounds(self, usecase: str, newest: int) -> list[RoundRow]:
        """A federated server's newest rounds (none for other use cases)."""
        return await read_rounds(self.redis, usecase, newest)

    # ---- InfluxDB --------------------------------------------------------------------------

    async def metric_buckets(
        self, usecase: str, start_ms: int, bucket_ms: int
    ) -> list[MetricPoint]:
        """The last value of each (view, metric) per bucket since `start_ms`."""
        return await MetricsMeasurement(usecase).buckets(self.influx, start_ms, bucket_ms)

    async def leaderboard(self, usecase: str) -> list[ModelScore]:
        """The newest value of each model's metrics per view (with challengers)."""
        return await LeaderboardMeasurement(usecase).latest(self.influx)

    async def leaderboard_buckets(
        self, usecase: str, start_ms: int, bucket_ms: int, view: str, metric: str
    ) -> list[ModelScore]:
        """Each model's last value of `metric` in `view` per bucket since `start_ms`."""
        return await LeaderboardMeasurement(usecase).buckets(
            self.influx, start_ms, bucket_ms, view, metric
        )

    async def reliability(self, usecase: str) -> list[ReliabilityRow]:
        """The newest reliability table of each calibration metric per view."""
        return await ReliabilityMeasurement(usecase).latest(self.influx)

    async def usecases_with_metrics(self) -> set[str]:
        return await usecases_with_metrics(self.influx)

    # ---- Elasticsearch ---------------------------------------------------------------------

    async def batches(self, usecase: str, since_ms: int) -> list[Document]:
        """The evaluator's batch documents since `since_ms`, oldest first."""
        response = await self.elastic.search(
            index=f"{self.es_prefix}batches",
            query=_usecase_since(usecase, since_ms),
            sort=[{"@timestamp": "asc"}],
            size=MAX_DOCUMENTS,
            source_includes=[
                "@timestamp",
                "records",
                "records_per_s",
                "latency_ms_p50",
                "latency_ms_p95",
            ],
            ignore_unavailable=True,
        )
        return _documents(response)

    async def has_batches(self, usecase: str, since_ms: int) -> bool:
        counted = await self.elastic.count(
            index=f"{self.es_prefix}batches",
            query=_usecase_since(usecase, since_ms),
            ignore_unavailable=True,
        )
        return counted["count"] > 0

    async def alerts(self, usecase: str, since_ms: int, count: int) -> list[Document]:
        """The first `count` alert state changes since `since_ms`, oldest first."""
        response = await self.elastic.search(
            index=f"{self.es_prefix}alerts",
            query=_usecase_since(usecase, since_ms),
            sort=[{"@timestamp": "asc"}],
            size=count,
            ignore_unavailable=True,
        )
        return _documents(response)

    # ---- files -----------------------------------------------------------------------------

    async def configured(self) -> set[str]:
        """Folders of the use-cases directory that hold props files."""
        return await asyncio.to_thread(_configured, Path(self.settings.usecases_dir))


def _configured(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {path.name for path in folder.iterdir() if path.is_dir() and any(path.glob("*.props"))}


def _stream_ms(entry_id: Any) -> int:
    """The time part of a Redis stream entry id (`<ms>-<seq>`)."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return int(text.split("-", 1)[0])


def _usecase_since(usecase: str, start_ms: int) -> dict[str, Any]:
    return {
        "bool": {
            "filter": [
                {"term": {"usecase": usecase}},
                {"range": {"@timestamp": {"gte": start_ms, "format": "epoch_millis"}}},
            ]
        }
    }


def _documents(response: Any) -> list[Document]:
    """Hits with a numeric `@timestamp` (epoch ms); others are left out."""
    found = []
    for hit in response["hits"]["hits"]:
        document = hit["_source"]
        at = document.get("@timestamp")
        if isinstance(at, int | float) and not isinstance(at, bool):
            found.append(Document(int(at), document))
    return found
