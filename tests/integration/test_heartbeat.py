"""Heartbeats of a real service process, and run-time changes stored with their audit."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from urllib.parse import urlsplit

from shared.clients.redis import connect_redis
from shared.config import ConnectionSettings, load_usecase
from shared.config.live import LiveConfig, change_config
from shared.heartbeat import STOP_WRITE_TIMEOUT_S, Heartbeat, read_heartbeats
from shared.wire.keys import UseCaseKeys
from tests.integration.pipeline_helpers import (
    REPO,
    kdd_slice,
    make_kdd_usecase,
    service,
    service_env,
)
from tests.integration.tcp_proxy import TcpProxy


async def test_a_running_trainer_beats_and_stops_beating(tmp_path, data_dir, connections, unique):
    folder = make_kdd_usecase(tmp_path, unique, kdd_slice(data_dir, 10, tmp_path / "kdd.csv"))
    redis = connect_redis(connections)
    try:
        with service("train", folder, service_env(unique), tmp_path / "log") as trainer:
            beat = await wait_for_beat(redis, unique, "running", 30)
            assert beat["service"] == "trainer" and beat["usecases"] == [unique]
            assert beat["instance"].endswith(f"-{trainer.pid}")
            assert "trainings" in beat["counters"][unique]
            # the container healthcheck: a running trainer beats on this host
            healthy = check("train")
            assert healthy.returncode == 0, healthy.stdout
            # it names the newest running trainer of this host (another one may run here)
            assert healthy.stdout.startswith("trainer ") and ": running" in healthy.stdout
        # SIGTERM: the last word is "stopping", then the key expires
        stopped = await wait_for_beat(redis, unique, "stopping", 10)
        assert stopped["last_error"] is None
        unhealthy = check("train")
        assert unhealthy.returncode == 1 and "no running heartbeat" in unhealthy.stdout
    finally:
        await redis.aclose()


def check(command: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", command, "--check"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
    )


def test_the_healthcheck_fails_naming_redis_when_it_does_not_answer() -> None:
    dead = check("evaluate", STREAMER_REDIS_URL="redis://127.0.0.1:9/0")
    assert dead.returncode == 1 and "evaluator: Redis does not answer" in dead.stdout


async def wait_for_beat(redis, usecase: str, status: str, wait_s: float) -> dict:
    async with asyncio.timeout(wait_s):
        while True:
            for beat in await read_heartbeats(redis):
                if usecase in beat.usecases and beat.status == status:
                    return beat.model_dump()
            await asyncio.sleep(0.2)


async def test_changes_are_validated_stored_audited_and_seen_by_services(
    tmp_path, data_dir, connections, unique
):
    folder = make_kdd_usecase(tmp_path, unique, kdd_slice(data_dir, 10, tmp_path / "kdd.csv"))
    usecase = load_usecase(folder, connections)
    redis = connect_redis(connections)
    try:
        live = LiveConfig(usecase)
        assert not await live.refresh(redis, force=True)
        updated = await change_config(redis, usecase, {"training.interval": "42"}, who="alice")
        assert updated.algs.training_interval == 42
        assert await live.refresh(redis, force=True)
        assert live.current.algs.training_interval == 42
        entries = await redis.xrange(UseCaseKeys(unique).config_audit)
        audit = {k.decode(): v.decode() for k, v in entries[-1][1].items()}
        assert (audit["who"], audit["key"], audit["old"], audit["new"]) == (
            "alice",
            "training.interval",
            "1000",
            "42",
        )
        assert json.loads(audit["at"]) > 0
    finally:
        await redis.delete(UseCaseKeys(unique).config_overrides, UseCaseKeys(unique).config_audit)
        await redis.aclose()


async def test_stopping_does_not_wait_for_a_redis_that_does_not_answer() -> None:
    """The last "stopping" beat is best effort: a Redis that accepts connections but never
    answers (the client would retry for ~30 s) must not hold a service past its grace period."""
    held = []

    def accept_and_stay_silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(accept_and_stay_silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    redis = connect_redis(ConnectionSettings(redis_url=f"redis://127.0.0.1:{port}/0"))
    try:
        beat = Heartbeat(redis, "trainer", ["silent"])
        started = time.monotonic()
        await beat.stop()
        assert time.monotonic() - started < STOP_WRITE_TIMEOUT_S + 1
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(redis.aclose(), 2)


async def test_stopping_a_heartbeat_always_ends_on_the_real_redis(connections) -> None:
    """redis-py 8.0 loses a cancellation that lands inside a command now and then: with the
    beating task awaited plainly, 23 of 300 such stops hung for good (the CI run that stalled
    for 80 minutes stopped three 1 s heartbeats in a test's cleanup). Each must end, and its
    beating task with it."""
    redis = connect_redis(connections, max_connections=2)  # as `heartbeating` makes it
    keys = []
    try:
        for i in range(150):
            beat = Heartbeat(redis, "probe", ["stop-test"], interval_s=0.0005)
            beat.key = f"{beat.key}-{i}"
            keys.append(beat.key)
            await beat.start()
            await asyncio.sleep(0.002 * (i % 7))  # land the stop at varied points of a beat
            await asyncio.wait_for(beat.stop(), STOP_WRITE_TIMEOUT_S + 1)
            assert beat._task is not None
            done, _ = await asyncio.wait({beat._task}, timeout=1)
            assert done, f"stop {i}: the beating task runs on"
    finally:
        await redis.delete(*keys)
        await redis.aclose()


async def test_a_heartbeat_started_while_redis_is_away_beats_once_it_is_back(connections) -> None:
    """A service starts while Redis does not answer; its heartbeat keeps trying and appears as
    soon as Redis is reachable again (before: a service whose first beat failed never beat)."""
    address = urlsplit(connections.redis_url)
    proxy = TcpProxy(address.hostname or "127.0.0.1", address.port or 6379)
    await proxy.start()
    await proxy.stop()  # the port is known, nothing listens on it: Redis is away
    redis = connect_redis(
        ConnectionSettings(redis_url=f"redis://127.0.0.1:{proxy.port}{address.path or '/0'}")
    )
    direct = connect_redis(connections)
    beat = Heartbeat(redis, "trainer", ["comeback"], interval_s=0.2)
    try:
        await beat.start()  # does not raise: the service goes on
        assert await direct.get(beat.key) is None
        await proxy.start()
        async with asyncio.timeout(20):
            while await direct.get(beat.key) is None:  # noqa: ASYNC110 (written by the beat)
                await asyncio.sleep(0.1)
    finally:
        await beat.stop()
        await proxy.stop()
        await direct.delete(beat.key)
        await direct.aclose()
        await redis.aclose()
