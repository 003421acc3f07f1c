"""Integration tests run against the real services that `make services` starts.

A service that does not answer fails the whole run with its name and address: a skipped
integration suite would look green while testing nothing.
"""

from __future__ import annotations

import os
import uuid

import pytest

from shared.clients.elastic import check_elasticsearch, connect_elasticsearch
from shared.clients.influx import AioinfluxStore
from shared.clients.kafka import ensure_topics
from shared.clients.redis import check_redis, connect_redis
from shared.config import ConnectionSettings
from shared.errors import ServiceUnavailableError
from shared.heartbeat import this_host
from shared.wire.keys import heartbeat_pattern


@pytest.fixture(scope="session")
def connections() -> ConnectionSettings:
    return ConnectionSettings()


@pytest.fixture(scope="session")
def kafka_bootstrap(connections: ConnectionSettings) -> str:
    return connections.kafka_bootstrap_or("127.0.0.1:19092")


@pytest.fixture(scope="session", autouse=True)
async def services_are_up(connections: ConnectionSettings, kafka_bootstrap: str) -> None:
    """Check the four services once; stop the run with a clear message if one is down."""
    redis = connect_redis(connections)
    influx = AioinfluxStore(connections)
    elastic = connect_elasticsearch(connections)
    try:
        await check_redis(redis, connections.redis_url)
        await influx.check()
        await check_elasticsearch(elastic, connections.es_url)
        await ensure_topics(kafka_bootstrap, ["streamer-test-health"])
    except ServiceUnavailableError as error:
        pytest.exit(f"{error}\nStart the services with `make services`.", returncode=3)
    finally:
        await redis.aclose()
        await influx.close()
        await elastic.close()


@pytest.fixture(autouse=True)
async def forget_dead_processes_heartbeats(connections: ConnectionSettings):
    """After each test, the heartbeats of this host's processes that are gone (a test killed
    them with SIGKILL: they could not say goodbye) are deleted instead of living out their TTL:
    a later test's healthcheck of this host must see its own service, not a dead one's."""
    yield
    redis = connect_redis(connections)
    try:
        prefix = f"{heartbeat_pattern()[:-1]}"
        host = this_host()
        dead = []
        async for key in redis.scan_iter(match=heartbeat_pattern(), count=500):
            instance = key.decode().removeprefix(prefix).split(":", 1)[-1]
            owner, _, pid = instance.rpartition("-")
            if owner == host and pid.isdigit() and not _alive(int(pid)):
                dead.append(key)
        if dead:
            await redis.delete(*dead)
    finally:
        await redis.aclose()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture
def unique() -> str:
    """A fresh name for topics, databases, keys and indices, so tests never see old data."""
    return f"t{uuid.uuid4().hex[:12]}"
