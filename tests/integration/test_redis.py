"""Redis: the pooled client against the real server."""

from __future__ import annotations

import pytest

from shared.clients.redis import check_redis, connect_redis
from shared.config import ConnectionSettings
from shared.errors import ServiceUnavailableError


async def test_binary_values_round_trip_and_expire(connections, unique):
    redis = connect_redis(connections)
    try:
        payload = bytes(range(256)) * 100
        await redis.set(f"{unique}:model", payload, ex=60)
        assert await redis.get(f"{unique}:model") == payload
        assert 0 < await redis.ttl(f"{unique}:model") <= 60
        await redis.rpush(f"{unique}:list", "a", "b")
        assert await redis.lrange(f"{unique}:list", 0, -1) == [b"a", b"b"]
    finally:
        await redis.delete(f"{unique}:model", f"{unique}:list")
        await redis.aclose()


async def test_concurrent_commands_share_a_bounded_pool(connections, unique):
    import asyncio

    redis = connect_redis(connections, max_connections=2)
    try:
        await asyncio.gather(*(redis.incr(f"{unique}:n") for _ in range(200)))
        assert int(await redis.get(f"{unique}:n")) == 200
    finally:
        await redis.delete(f"{unique}:n")
        await redis.aclose()


async def test_dead_redis_is_named_in_the_error():
    settings = ConnectionSettings(redis_url="redis://127.0.0.1:1/0")
    redis = connect_redis(settings)
    try:
        with pytest.raises(ServiceUnavailableError, match=r"Redis at redis://127\.0\.0\.1:1/0"):
            await check_redis(redis, settings.redis_url)
    finally:
        await redis.aclose()
