"""The FastAPI sidecar: how people and orchestrators see and steer the running pipelines.

`create_app` builds the app; its lifespan opens the Redis, InfluxDB and Elasticsearch clients
(and closes them, awaited) and keeps the API's own heartbeat. Endpoints: docs/api.md, and the
OpenAPI documentation at /docs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from fastapi import FastAPI

from services.api.catalog import Catalog
from services.api.dashboard.router import dashboard_router
from services.api.dependencies import ApiContext
from services.api.errors import install_error_handlers
from services.api.prometheus import ApiMetrics, RequestMetrics, ScrapeApp
from services.api.routes import champions, health, observations, usecases
from shared.clients.elastic import connect_elasticsearch
from shared.clients.influx import AioinfluxStore
from shared.clients.redis import connect_redis
from shared.config.settings import ConnectionSettings
from shared.health import REQUIRED_SERVICES, Health, read_health
from shared.heartbeat import Heartbeat
from shared.sinks import DEFAULT_PREFIX

log = logging.getLogger("api")

DESCRIPTION = """\
Health, configuration, metrics, alerts and models of the STREAMER pipelines.

Reading is open; every changing endpoint (PATCH, POST) and the configuration audit log need
`Authorization: Bearer <token>` (the token of `STREAMER_API_TOKEN`). Without a configured token
nothing can be changed, and the API refuses to serve beyond loopback.
"""


def create_app(
    settings: ConnectionSettings | None = None,
    usecases_dir: Path | None = None,
    token: str | None = None,
    *,
    required_services: Sequence[str] = REQUIRED_SERVICES,
    health_usecases: Sequence[str] | None = None,
    heartbeat: bool = True,
    es_prefix: str = DEFAULT_PREFIX,
) -> FastAPI:
    """The API on the given connections; `health_usecases` None means every valid use case of
    `usecases_dir` (default: settings.usecases_dir); `heartbeat` writes the API's own;
    `es_prefix` is the evaluator's Elasticsearch index prefix."""
    settings = settings or ConnectionSettings()
    context = ApiContext(
        settings=settings,
        catalog=Catalog(usecases_dir or settings.usecases_dir, settings),
        token=token or None,
        required_services=tuple(required_services),
        health_usecases=None if health_usecases is None else tuple(health_usecases),
        es_prefix=es_prefix,
    )
    app = FastAPI(
        title="STREAMER API",
        version=_version(),
        description=DESCRIPTION,
        lifespan=_lifespan_with(heartbeat),
    )
    app.state.api = context
    metrics = app.state.metrics = ApiMetrics()
    for module in (health, usecases, observations, champions):
        app.include_router(module.router)
    # include_router, not mount: FastAPI then runs the dashboard's lifespan (its clients).
    # Its JSON routes are the page's own, not the public API: kept out of the OpenAPI schema.
    app.include_router(
        dashboard_router(settings, es_prefix=es_prefix),
        prefix="/dashboard",
        include_in_schema=False,
    )
    scrape = ScrapeApp(metrics, lambda: _health(context))
    # no redirect to /metrics/; Starlette runs an ASGI app given to add_route as is, but the
    # method's annotation names only request -> response functions
    app.add_route("/metrics", scrape, include_in_schema=False)  # type: ignore[arg-type]
    app.mount("/metrics", scrape)
    app.add_middleware(RequestMetrics, metrics=metrics)
    install_error_handlers(app)
    return app


def _lifespan_with(heartbeat: bool):
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context: ApiContext = app.state.api
        async with contextlib.AsyncExitStack() as stack:
            context.config_lock = asyncio.Lock()
            context.redis = connect_redis(context.settings)
            stack.push_async_callback(context.redis.aclose)
            context.influx = AioinfluxStore(context.settings)
            stack.push_async_callback(context.influx.close)
            context.elastic = connect_elasticsearch(context.settings)
            stack.push_async_callback(context.elastic.close)
            if heartbeat:
                beat = Heartbeat(context.redis, "api", await context.known_usecases())
                await beat.start(wait=False)  # /health says what is wrong meanwhile
                stack.push_async_callback(beat.stop)
            log.info("api ready", extra={"usecases_dir": str(context.catalog.usecases_dir)})
            yield
        log.info("api stopped")

    return lifespan


async def _health(context: ApiContext) -> Health:
    assert context.redis is not None
    usecases = await context.known_usecases()
    return await read_health(context.redis, usecases, context.required_services)


def _version() -> str:
    try:
        return version("streamer")
    except PackageNotFoundError:
        return "0"
