"""Backing services that do not answer are the API's 503s, never 500s: the request was fine,
the pipeline's storage is not (a 500 stays reserved for our own bugs). And a 405 names every
method of the path in `Allow`, not only those of the first route that matched it."""

from __future__ import annotations

import logging
from typing import Any

from elastic_transport import ConnectionError as ElasticConnectionError
from elastic_transport import ConnectionTimeout as ElasticTimeout
from fastapi import FastAPI, Request, status
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from shared.errors import ServiceUnavailableError

log = logging.getLogger("api")

#: FastAPI's `responses=`: the error statuses a route documents in the OpenAPI schema.
Responses = dict[int | str, dict[str, Any]]


def _unavailable(service: str):
    async def handler(request: Request, error: Exception) -> JSONResponse:
        detail = (
            str(error)
            if isinstance(error, ServiceUnavailableError)
            else f"{service} is not reachable: {error}"
        )
        log.warning(
            "backing service unavailable", extra={"path": request.url.path, "error": detail}
        )
        return JSONResponse({"detail": detail}, status_code=status.HTTP_503_SERVICE_UNAVAILABLE)

    return handler


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


async def _method_not_allowed(request: Request, error: Exception) -> JSONResponse:
    """Which methods would fully match this path, asked through the routes' public `matches`
    (how FastAPI nests included routers differs between versions)."""
    assert isinstance(error, StarletteHTTPException)  # what a handler of a status code gets
    routes = request.app.router.routes
    allowed = [
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL for route in routes
        )
    ]
    return JSONResponse(
        {"detail": error.detail},
        status_code=status.HTTP_405_METHOD_NOT_ALLOWED,
        headers={"Allow": ", ".join(allowed)},
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(status.HTTP_405_METHOD_NOT_ALLOWED, _method_not_allowed)
    app.add_exception_handler(ServiceUnavailableError, _unavailable(""))
    app.add_exception_handler(RedisConnectionError, _unavailable("Redis"))
    app.add_exception_handler(RedisTimeoutError, _unavailable("Redis"))
    app.add_exception_handler(ElasticConnectionError, _unavailable("Elasticsearch"))
    app.add_exception_handler(ElasticTimeout, _unavailable("Elasticsearch"))
