"""Running a service's per-use-case tasks until SIGTERM/SIGINT, shared by every service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

log = logging.getLogger(__name__)

TaskFactory = Callable[[asyncio.Event], Awaitable[Any]]


@contextlib.contextmanager
def stop_on_signals(
    stop: asyncio.Event, on_second: Callable[[], None] | None = None
) -> Iterator[asyncio.Event]:
    """While inside: the first SIGTERM/SIGINT sets `stop` (drain, flush, commit, exit 0);
    a second one calls `on_second` (e.g. cancel what still runs)."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if stop.is_set():
            log.warning(f"second {name}", extra={"signal": name})
            if on_second is not None:
                on_second()
            return
        log.info(f"{name}: stopping after the work in flight", extra={"signal": name})
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield stop
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def run_until_stopped(tasks: Sequence[TaskFactory]) -> list[Any]:
    """Run the tasks side by side until they finish or a signal stops them (stop_on_signals).
    A failing task makes the others drain and stop (not cancelled mid-batch), then its error
    is raised."""
    stop = asyncio.Event()
    running: list[asyncio.Task[Any]] = []

    def cancel_all() -> None:
        for task in running:
            task.cancel()

    with stop_on_signals(stop, cancel_all):
        running.extend(asyncio.create_task(_stop_all_on_error(make(stop), stop)) for make in tasks)
        results = await asyncio.gather(*running, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results


async def _stop_all_on_error(work: Awaitable[Any], stop: asyncio.Event) -> Any:
    try:
        return await work
    except BaseException:
        stop.set()  # siblings drain and commit instead of being cancelled mid-batch
        raise
