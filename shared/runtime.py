"""Running a service's per-use-case tasks until SIGTERM/SIGINT, shared by every service."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from typing import Any, Protocol

from shared.clients.redis import connect_redis
from shared.config import UseCase
from shared.heartbeat import Heartbeat
from shared.retry import retry_until_stopped

log = logging.getLogger(__name__)

TaskFactory = Callable[[asyncio.Event], Awaitable[Any]]


#: Allocations (of container objects) between two young-generation collections. CPython's 700
#: makes a batch of a few thousand records (a dict, lists and tuples each) run dozens of
#: collections, each promoting survivors that later full collections walk again, with the
#: whole model: measured in docs/benchmarks.md ("Garbage collector"). Our garbage is freed by
#: reference counting; the collector only finds rare cycles, so running it less often costs
#: a little memory, not correctness.
GC_YOUNG_THRESHOLD = 50_000


def tune_garbage_collector() -> None:
    """For a service process, once its modules and use cases are loaded: what exists then
    lives as long as the process (frozen: never scanned again), and young collections run
    every GC_YOUNG_THRESHOLD allocations instead of 700."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)


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


async def run_until_stopped(
    tasks: Sequence[TaskFactory], stop: asyncio.Event | None = None
) -> list[Any]:
    """Run the tasks side by side until they finish or a signal stops them (stop_on_signals).
    A failing task makes the others drain and stop (not cancelled mid-batch), then its error
    is raised. Inside, calls to the backing services are retried until the stop
    (shared/retry.py): an outage of any length is ridden out."""
    stop = stop or asyncio.Event()
    running: list[asyncio.Task[Any]] = []

    def cancel_all() -> None:
        for task in running:
            task.cancel()

    with stop_on_signals(stop, cancel_all), retry_until_stopped(stop):
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


class Worker(Protocol):
    """One use case's part of a service: runs until `stop`, exposes its counters."""

    @property
    def counters(self) -> Any: ...

    async def run(self) -> Any: ...


WorkerFactory = Callable[[UseCase, asyncio.Event], Worker]


async def serve(service: str, usecases: Sequence[UseCase], factory: WorkerFactory) -> list[Any]:
    """A service process: one worker per use case, a heartbeat in Redis for all of them (with
    their counters and model versions), signals handled, the first error reported in the
    heartbeat before it is raised."""
    stop = asyncio.Event()
    workers = [factory(usecase, stop) for usecase in usecases]

    def snapshot() -> dict[str, Any]:
        return {
            "counters": {
                usecase.name: _as_dict(worker.counters)
                for usecase, worker in zip(usecases, workers, strict=True)
            },
            "model_versions": {
                usecase.name: getattr(worker, "model_version", None)
                for usecase, worker in zip(usecases, workers, strict=True)
            },
        }

    async with heartbeating(service, usecases, snapshot):
        return await run_until_stopped([_task(worker) for worker in workers], stop)


def _task(worker: Worker) -> TaskFactory:
    """Run `worker` (it watches the stop event it was built with)."""
    return lambda _: worker.run()


@contextlib.asynccontextmanager
async def heartbeating(
    service: str, usecases: Sequence[UseCase], snapshot: Callable[[], dict[str, Any]] | None = None
) -> AsyncIterator[Heartbeat]:
    """This process's heartbeat while inside; an error escaping the block is recorded in it.
    A Redis that does not answer does not stop the service: the heartbeat retries at each
    beat, and the workers report the outage."""
    redis = connect_redis(usecases[0].connections, max_connections=2)
    heartbeat = Heartbeat(redis, service, [usecase.name for usecase in usecases], snapshot)
    await heartbeat.start()
    try:
        yield heartbeat
    except BaseException as error:
        heartbeat.record_error(error)
        raise
    finally:
        await heartbeat.stop()
        await redis.aclose()


def _as_dict(counters: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(counters) and not isinstance(counters, type):
        return dataclasses.asdict(counters)
    return dict(counters)
