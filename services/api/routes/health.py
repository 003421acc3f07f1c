"""GET /health: 200 only when every required service is up for every use case, else 503 with
what is missing. Open and minimal: orchestrators probe it often and hold no token."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from services.api.dependencies import Context
from shared.health import Health, read_health, unreadable

router = APIRouter(tags=["health"])
REDIS_WAIT_S = 3.0  # a probe must answer quickly, even when Redis does not

Names = Annotated[
    list[str] | None,
    Query(description="repeat or separate with commas; default: the API's setting"),
]


def _split(values: list[str] | None) -> list[str]:
    return [name.strip() for value in values or [] for name in value.split(",") if name.strip()]


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"model": Health, "description": "a required service is down"}},
)
async def health(
    context: Context,
    response: Response,
    required_services: Names = None,
    usecase: Names = None,
) -> Health:
    """Per use case and required service, what the heartbeats say; and every live instance."""
    required = _split(required_services) or list(context.required_services)
    usecases = _split(usecase) or await context.known_usecases()
    assert context.redis is not None
    try:
        async with asyncio.timeout(REDIS_WAIT_S):
            result = await read_health(context.redis, usecases, required)
    except (RedisConnectionError, RedisTimeoutError, OSError, TimeoutError) as error:
        result = unreadable(usecases, required, str(error) or "timeout")
    if result.status != "ok":
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return result
