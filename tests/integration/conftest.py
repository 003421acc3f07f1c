"""Integration tests run against the real services that `make services` starts.

A service that does not answer fails the whole run with its name and address: a skipped
integration suite would look green while testing nothing.
"""

from __future__ import annotations

import uuid

import pytest

from shared.clients.elastic import check_elasticsearch, connect_elasticsearch
from shared.clients.influx import AioinfluxStore
from shared.clients.kafka import ensure_topics
from shared.clients.redis import check_redis, connect_redis
from shared.config import ConnectionSettings
from shared.errors import ServiceUnavailableError

pytestmark = pytest.mark.integration


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


@pytest.fixture
def unique() -> str:
    """A fresh name for topics, databases, keys and indices, so tests never see old data."""
    return f"t{uuid.uuid4().hex[:12]}"
