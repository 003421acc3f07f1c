"""Running a service's per-use-case tasks until SIGTERM/SIGINT, shared by every service."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

log = logging.getLogger(__name__)

TaskFactory = Callable[[asyncio.Event], Awaitable[Any]]


async def run_until_stopped(tasks: Sequence[TaskFactory]) -> list[Any]:
    """Run the tasks side by side; the first SIGTERM/SIGINT sets their stop event so they drain
    and commit, a second one cancels them. A failing task makes the others drain and stop (not
    cancelled mid-batch), then its error is raised."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    running: list[asyncio.Task[Any]] = []

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal: cancelling", extra={"signal": signum})
            for task in running:
                task.cancel()
            return
        log.info("stopping", extra={"signal": signum})
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        running.extend(asyncio.create_task(_stop_all_on_error(make(stop), stop)) for make in tasks)
        results = await asyncio.gather(*running, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
        return results
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def _stop_all_on_error(work: Awaitable[Any], stop: asyncio.Event) -> Any:
    try:
        return await work
    except BaseException:
        stop.set()  # siblings drain and commit instead of being cancelled mid-batch
        raise
