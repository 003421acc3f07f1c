"""Heartbeats: every service says in Redis, every few seconds, that it is alive and what it
does. The key expires when the service stops refreshing it: a missing key means "down".
The key and the payload are contracts of shared/wire (keys.heartbeat_key, HeartbeatPayload);
shared/health.py turns what is read back into the pipeline's health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import RedisError

from shared.retry import OUTAGES, REDIS, Outages, Watch
from shared.wire.heartbeat import INTERVAL_S, RUNNING, STOPPING, TTL_S, HeartbeatPayload
from shared.wire.keys import heartbeat_key, heartbeat_pattern

log = logging.getLogger(__name__)

STOP_WRITE_TIMEOUT_S = 2.0
#: Seconds the last ("stopping") heartbeat lives.
STOPPING_TTL_S = 5

Snapshot = Callable[[], dict[str, Any]]


def this_host() -> str:
    """The host part of this machine's instances (a container's own hostname in Compose)."""
    return socket.gethostname()


def this_instance() -> str:
    """This process's instance name: `<hostname>-<pid>`."""
    return f"{this_host()}-{os.getpid()}"


class Heartbeat:
    """Refreshes this process's heartbeat key until stopped; `snapshot()` gives counters and
    model versions per use case (cheap, called on the event loop)."""

    def __init__(
        self,
        redis: Redis,
        service: str,
        usecases: list[str],
        snapshot: Snapshot | None = None,
        interval_s: float = INTERVAL_S,
        ttl_s: int = TTL_S,
        outages: Outages = OUTAGES,
    ):
        self.redis = redis
        self.service = service
        self.usecases = usecases
        self.snapshot = snapshot or dict
        self.interval_s = interval_s
        self.ttl_s = ttl_s
        self.instance = this_instance()
        self.key = heartbeat_key(service, self.instance)
        self.started_at = time.time()
        self.status = RUNNING
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self.outages = outages
        self._writing = Watch(REDIS, "writing the heartbeat", outages)

    def record_error(self, error: BaseException | str) -> None:
        self.last_error = str(error)[:500]

    def payload(self) -> HeartbeatPayload:
        snapshot = self.snapshot()
        return HeartbeatPayload(
            service=self.service,
            instance=self.instance,
            usecases=self.usecases,
            status=self.status,
            started_at=self.started_at,
            updated_at=time.time(),
            counters=snapshot.get("counters", {}),
            model_versions=snapshot.get("model_versions", {}),
            last_error=self.last_error,
            outages=self.outages.report(),
        )

    async def beat(self) -> None:
        await self.redis.set(self.key, self.payload().encode(), ex=self.ttl_s)

    async def start(self, *, wait: bool = True) -> None:
        """Beat now, then every interval_s until stop(). A Redis that does not answer does not
        stop the service: it is logged and tried again at the next beat. wait=False returns at
        once (the first beat is made in the background: the API serves meanwhile)."""
        if wait:
            await self._beat_or_log()
        self._task = asyncio.create_task(
            self._run(first_now=not wait), name=f"heartbeat-{self.service}"
        )

    async def stop(self) -> None:
        """Say "stopping" one last time, then let the key expire.

        redis-py sometimes swallows a cancellation that lands inside a command (redis-py
        #2028, #2551): the beating task then runs on and awaiting it never ends; a make down
        caught a trainer alive 30 s after its work had stopped. So the loop also ends on a
        flag, and the wait for it is bounded."""
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=STOP_WRITE_TIMEOUT_S)
            if not self._task.done():
                log.warning("heartbeat task still running after its cancellation")
        self.status = STOPPING
        # best effort and bounded: the key expires anyway, and a Redis that does not answer
        # (the client retries with backoff) must not hold the process past its grace period
        with contextlib.suppress(RedisError, OSError, TimeoutError, ValidationError):
            async with asyncio.timeout(STOP_WRITE_TIMEOUT_S):
                await self.redis.set(self.key, self.payload().encode(), ex=STOPPING_TTL_S)

    async def _run(self, first_now: bool) -> None:
        if first_now:
            await self._beat_or_log()
        while not self._stopped:
            await asyncio.sleep(self.interval_s)
            if self._stopped:
                return
            await self._beat_or_log()

    async def _beat_or_log(self) -> None:
        """One beat; Redis away is an outage (logged once, shared/retry.py), tried again at
        the next beat."""
        try:
            await self._writing.attempt(self.beat)
        except RedisError as error:  # not an outage (say, a refused command): said each time
            log.warning(
                "heartbeat not written", extra={"service": self.service, "error": str(error)}
            )
        except ValidationError as error:  # a snapshot that breaks the contract: a bug, said
            log.error(
                "heartbeat not written: its payload is not a HeartbeatPayload",
                extra={"service": self.service, "error": str(error)},
            )


async def read_heartbeats(redis: Redis, pattern: str | None = None) -> list[HeartbeatPayload]:
    """Every live heartbeat whose key matches `pattern` (default: all; see
    shared.wire.keys.heartbeat_pattern). Expired ones are gone by construction; a malformed
    value (anyone can write Redis) is skipped."""
    keys = [key async for key in redis.scan_iter(match=pattern or heartbeat_pattern(), count=500)]
    values = await redis.mget(keys) if keys else []
    return [beat for value in values if (beat := HeartbeatPayload.decode(value)) is not None]
