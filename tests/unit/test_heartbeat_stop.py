"""Stopping a heartbeat ends in bounded time even when a cancellation is lost, as redis-py
sometimes loses one that lands inside a command (redis-py #2028, #2551). The beat here is a
coroutine that swallows its cancellation, standing in for that library behaviour; the Redis
side of heartbeats is tested against the real Redis in tests/integration/test_heartbeat.py."""

from __future__ import annotations

import asyncio
import contextlib
import time

from shared.heartbeat import STOP_WRITE_TIMEOUT_S, Heartbeat
from shared.wire.heartbeat import HeartbeatPayload


class SwallowingRedis:
    """Its `set` loses the first cancellation that reaches it, like the redis-py bug."""

    def __init__(self) -> None:
        self.writes = 0
        self.inside = asyncio.Event()

    async def set(self, key: str, value: str, ex: int) -> None:
        self.writes += 1
        self.inside.set()
        with contextlib.suppress(asyncio.CancelledError):  # the lost cancellation
            await asyncio.sleep(0.5)


async def test_a_lost_cancellation_does_not_keep_the_heartbeat_alive() -> None:
    redis = SwallowingRedis()
    beat = Heartbeat(redis, "trainer", ["x"], interval_s=0.05)  # type: ignore[arg-type]
    await beat.start()
    redis.inside.clear()
    await asyncio.wait_for(redis.inside.wait(), 5)  # the beating task is inside `set`
    started = time.monotonic()
    await beat.stop()
    assert time.monotonic() - started < STOP_WRITE_TIMEOUT_S * 2 + 1
    assert beat._task is not None
    await asyncio.wait_for(asyncio.shield(beat._task), 2)  # it ends on its own, soon
    writes = redis.writes
    await asyncio.sleep(0.3)
    assert redis.writes == writes  # and beats no more


class RecordingRedis:
    def __init__(self) -> None:
        self.values: list[str] = []

    async def set(self, key: str, value: str, ex: int) -> None:
        self.values.append(value)


async def test_a_snapshot_that_breaks_the_payload_contract_is_logged_not_fatal(caplog) -> None:
    redis = RecordingRedis()
    counters = {"x": "not a mapping of counters"}
    beat = Heartbeat(redis, "trainer", ["x"], lambda: {"counters": counters})  # type: ignore[arg-type]
    await beat.start()  # the first beat fails validation: logged, the service goes on
    assert redis.values == [] and "not a HeartbeatPayload" in caplog.text
    counters["x"] = {"trainings": 1}  # type: ignore[assignment]
    await beat.beat()
    assert HeartbeatPayload.decode(redis.values[-1]).counters == {"x": {"trainings": 1}}
    await beat.stop()
