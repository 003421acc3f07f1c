"""The web dashboard's routes: one page (static/index.html, dashboard.js, dashboard.css and a
vendored uPlot) and the JSON and server-sent-events endpoints it reads. The data comes from
snapshot.py (what the page shows), which reads through sources.py (Redis, InfluxDB,
Elasticsearch); this module only routes.

Mount with `app.include_router(dashboard_router(settings), prefix="/dashboard")`. Routes, relative
to the prefix: `/` (the page), `/static/...`, `/api/usecases`, `/api/snapshot`, `/api/stream`.
The JSON shapes are documented on `Dashboard.snapshot` and `Dashboard.usecases`.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse

from services.api.dashboard.snapshot import DEFAULT_WINDOW_S, MAX_WINDOW_S, NAME, Dashboard
from shared.config.settings import ConnectionSettings
from shared.sinks.elastic import DEFAULT_PREFIX

STATIC = Path(__file__).resolve().parent / "static"
PUSH_INTERVAL_S = 2.0
STREAM_LIFETIME_S = 60.0
RECONNECT_MS = 500


def _check_name(usecase: str) -> str:
    if not NAME.match(usecase):
        raise HTTPException(400, f"not a use-case name: {usecase!r}")
    return usecase


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
    dashboard = Dashboard(settings, es_prefix)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            await dashboard.close()

    router = APIRouter(lifespan=lifespan, tags=["dashboard"])
    router.dashboard = dashboard  # type: ignore[attr-defined]  # for tests and the app's shutdown

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
        return JSONResponse(await dashboard.usecases())

    @router.get("/api/snapshot", summary="Metrics, throughput, latency, alerts, model, health")
    async def snapshot(
        usecase: str,
        window: int = Query(DEFAULT_WINDOW_S, ge=10, le=MAX_WINDOW_S, description="seconds"),
        after: int | None = Query(None, ge=0, description="`cursor` of the previous answer"),
    ) -> JSONResponse:
        return JSONResponse(await dashboard.snapshot(_check_name(usecase), window, after))

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
                data = await dashboard.snapshot(name, window, cursor)
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
