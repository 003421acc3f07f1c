"""Redis connections: a bounded, blocking pool with retries and health checks.

`BlockingConnectionPool` waits for a free connection instead of raising "Too many connections"
(redis-py #2517); periodic health checks replace sockets closed by the server while idle.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.config.settings import ConnectionSettings
from shared.errors import ServiceUnavailableError


def connect_redis(settings: ConnectionSettings, max_connections: int = 16) -> Redis:
    """A client on `STREAMER_REDIS_URL`; call `await check_redis(client, ...)` to fail early."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        password=password,
        max_connections=max_connections,
        timeout=10,
        socket_timeout=5,
        socket_connect_timeout=5,
        health_check_interval=30,
        retry=Retry(ExponentialWithJitterBackoff(base=0.1, cap=5), retries=5),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
    )
    # from_pool: the client owns its pool, so aclose() closes its connections too (a client
    # built with connection_pool= leaves them open until garbage collection)
    return Redis.from_pool(pool)


async def check_redis(client: Redis, url: str) -> None:
    """Raise ServiceUnavailableError naming Redis and its address when it does not answer."""
    try:
        await client.ping()
    except (RedisConnectionError, RedisTimeoutError, OSError) as error:
        raise ServiceUnavailableError("Redis", url, error) from error
