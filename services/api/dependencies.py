"""What the endpoints share: the clients opened by the lifespan and the use-case lookups, given
to them as FastAPI dependencies."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Annotated

from elasticsearch import AsyncElasticsearch
from fastapi import Depends, HTTPException, Path, Request, status
from redis.asyncio import Redis

from services.api.catalog import NAME_PATTERN, Catalog, Entry
from services.api.issues import issue_model
from shared.clients.influx import AioinfluxStore
from shared.config.settings import ConnectionSettings
from shared.config.usecase import UseCase
from shared.health import REQUIRED_SERVICES
from shared.sinks import DEFAULT_PREFIX


@dataclass
class ApiContext:
    """One app's configuration and clients (`app.state.api`); clients exist while it serves."""

    settings: ConnectionSettings
    catalog: Catalog
    token: str | None
    required_services: tuple[str, ...] = REQUIRED_SERVICES
    health_usecases: tuple[str, ...] | None = None  # None: every valid use case
    es_prefix: str = DEFAULT_PREFIX
    redis: Redis | None = None
    influx: AioinfluxStore | None = None
    elastic: AsyncElasticsearch | None = None
    # one configuration change at a time, so each audit entry's `old` is the value it replaced
    # (created by the lifespan, inside the event loop that serves)
    config_lock: asyncio.Lock | None = None

    async def known_usecases(self) -> list[str]:
        """The use cases whose services /health requires."""
        if self.health_usecases is not None:
            return list(self.health_usecases)
        return [entry.name for entry in await self.catalog.entries() if entry.valid]


def get_context(request: Request) -> ApiContext:
    return request.app.state.api


Context = Annotated[ApiContext, Depends(get_context)]


def get_redis(context: Context) -> Redis:
    assert context.redis is not None, "the app's lifespan did not run"
    return context.redis


def get_influx(context: Context) -> AioinfluxStore:
    assert context.influx is not None, "the app's lifespan did not run"
    return context.influx


def get_elastic(context: Context) -> AsyncElasticsearch:
    assert context.elastic is not None, "the app's lifespan did not run"
    return context.elastic


RedisClient = Annotated[Redis, Depends(get_redis)]
InfluxClient = Annotated[AioinfluxStore, Depends(get_influx)]
ElasticClient = Annotated[AsyncElasticsearch, Depends(get_elastic)]
UseCaseName = Annotated[
    str, Path(pattern=NAME_PATTERN, description="a folder of the use-cases directory")
]


async def get_entry(name: UseCaseName, context: Context) -> Entry:
    entry = await context.catalog.get(name)
    if entry is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=f"no use case named {name!r}")
    return entry


async def get_usecase(entry: Annotated[Entry, Depends(get_entry)]) -> UseCase:
    """The validated use case; 409 with its issues when its props files are invalid."""
    if entry.usecase is None:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            detail={
                "message": f"the props files of {entry.name!r} are invalid",
                "issues": [issue_model(issue, entry.folder).model_dump() for issue in entry.issues],
            },
        )
    return entry.usecase


KnownEntry = Annotated[Entry, Depends(get_entry)]
ValidUseCase = Annotated[UseCase, Depends(get_usecase)]
