"""`streamer api`: the app on uvicorn inside our own event loop, stopped gracefully on SIGTERM.

uvicorn's own signal handling re-raises the signal once it has shut down, which would end the
process with "killed by SIGTERM" instead of exit status 0; so the signals are ours
(shared.runtime.stop_on_signals, like every service) and uvicorn is told to exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import uvicorn

from services.api.app import create_app
from services.api.security import check_bind
from shared.config.settings import ConnectionSettings
from shared.errors import StreamerError
from shared.health import REQUIRED_SERVICES
from shared.runtime import stop_on_signals

log = logging.getLogger("api")
GRACEFUL_S = 10


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # serve() handles SIGTERM/SIGINT


async def serve(
    host: str,
    port: int,
    *,
    token: str | None,
    settings: ConnectionSettings | None = None,
    usecases_dir: Path | None = None,
    required_services: Sequence[str] = REQUIRED_SERVICES,
    health_usecases: Sequence[str] | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT; refuse (InsecureBindError, exit status 2) to listen beyond
    loopback without a token."""
    check_bind(host, token)
    app = create_app(
        settings,
        usecases_dir,
        token,
        required_services=required_services,
        health_usecases=health_usecases,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_config=None,  # keep shared.logs' handlers
        access_log=False,  # /metrics counts requests; probes would flood the log
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_S,
    )
    server = _Server(config)
    stop = asyncio.Event()

    def force() -> None:
        server.force_exit = True

    with stop_on_signals(stop, on_second=force):
        serving = asyncio.create_task(server.serve(), name="uvicorn")
        stopping = asyncio.create_task(stop.wait(), name="api-stop")
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        stopping.cancel()
        try:
            await serving
        except SystemExit as error:  # uvicorn exits this way when it cannot bind
            raise StreamerError(f"the API could not listen on {host}:{port}") from error
    if not server.started and not stop.is_set():
        raise StreamerError(f"the API did not start on {host}:{port} (see the log above)")
    log.info("api exited", extra={"host": host, "port": port})
