"""Heartbeats: every service says in Redis, every few seconds, that it is alive and what it
does. The key expires when the service stops refreshing it: a missing key means "down".
Key and JSON format: docs/wire-format.md."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

PREFIX = "streamer:heartbeat:"
INTERVAL_S = 3.0
TTL_S = 15
STOP_WRITE_TIMEOUT_S = 2.0

Snapshot = Callable[[], dict[str, Any]]


def heartbeat_key(service: str, instance: str) -> str:
    return f"{PREFIX}{service}:{instance}"


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
        self.status = "running"
        self.last_error: str | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopped = False

    def record_error(self, error: BaseException | str) -> None:
        self.last_error = str(error)[:500]

    def payload(self) -> dict[str, Any]:
        snapshot = self.snapshot()
        return {
            "service": self.service,
            "instance": self.instance,
            "usecases": self.usecases,
            "status": self.status,
            "started_at": self.started_at,
            "updated_at": time.time(),
            "counters": snapshot.get("counters", {}),
            "model_versions": snapshot.get("model_versions", {}),
            "last_error": self.last_error,
        }

    async def beat(self) -> None:
        await self.redis.set(self.key, json.dumps(self.payload(), default=str), ex=self.ttl_s)

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
        self.status = "stopping"
        # best effort and bounded: the key expires anyway, and a Redis that does not answer
        # (the client retries with backoff) must not hold the process past its grace period
        with contextlib.suppress(RedisError, OSError, TimeoutError):
            async with asyncio.timeout(STOP_WRITE_TIMEOUT_S):
                await self.redis.set(self.key, json.dumps(self.payload(), default=str), ex=5)

    async def _run(self, first_now: bool) -> None:
        if first_now:
            await self._beat_or_log()
        while not self._stopped:
            await asyncio.sleep(self.interval_s)
            if self._stopped:
                return
            await self._beat_or_log()

    async def _beat_or_log(self) -> None:
        try:
            await self.beat()
        except (RedisError, OSError) as error:  # Redis away: try again next beat
            log.warning(
                "heartbeat not written, retrying",
                extra={"service": self.service, "error": str(error)},
            )


async def read_heartbeats(redis: Redis, pattern: str = f"{PREFIX}*") -> list[dict[str, Any]]:
    """Every live heartbeat whose key matches `pattern` (expired ones are gone by
    construction)."""
    keys = [key async for key in redis.scan_iter(match=pattern, count=500)]
    if not keys:
        return []
    values = await redis.mget(keys)
    return [json.loads(value) for value in values if value is not None]


async def check_this_host(redis: Redis, service: str) -> tuple[bool, str]:
    """A healthcheck (`streamer launch --check`, ...): is a `service` of this host beating?

    Healthy when one of its heartbeats on this host is alive (its key has not expired) and says
    "running"; a recorded error (say, a backing service away and retried) is shown but keeps it
    healthy: the process works and reports. Returns (healthy, a line saying why)."""
    beats = await read_heartbeats(redis, f"{heartbeat_key(service, this_host())}-*")
    running = [beat for beat in beats if beat.get("status") == "running"]
    if not running:
        states = ", ".join(f"{b.get('instance')}: {b.get('status')}" for b in beats)
        return False, f"{service} on {this_host()}: no running heartbeat ({states or 'none'})"
    beat = max(running, key=lambda b: b.get("updated_at", 0))
    age = time.time() - float(beat.get("updated_at", 0))
    line = f"{service} {beat['instance']}: running, beat {age:.1f} s ago"
    if beat.get("last_error"):
        line += f"; last error: {beat['last_error']}"
    return True, line
