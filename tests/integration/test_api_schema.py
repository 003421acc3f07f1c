"""Property-based tests over the API's own OpenAPI schema (schemathesis + hypothesis): whatever
request the schema allows (or nearly allows), the API never answers 5xx, and its answers match
the schema. Every operation, the changing ones with the token; each generated request is also
sent to a real use case, since random names mostly meet 404s."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.python import asgi

from services.api.app import create_app
from tests.integration.test_api import TOKEN, cleanup, make_usecase

NAME = f"t{uuid.uuid4().hex[:12]}"
# the UTF-8 bytes of the token, as text the way HTTP carries header bytes (latin-1)
HEADERS = {"Authorization": f"Bearer {TOKEN}".encode().decode("latin-1")}


class AppUnderTest:
    """The schema must exist when tests are collected, the app only once its use-case folder
    does: schemathesis calls this stand-in, which forwards to the app the fixture built."""

    app: FastAPI | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert self.app is not None, "the api_app fixture did not run"
        await self.app(scope, receive, send)


TARGET = AppUnderTest()
schema = schemathesis.openapi.from_dict(create_app(heartbeat=False).openapi())
schema.app = TARGET  # as schemathesis.openapi.from_asgi does (it needs the app at import)


@pytest.fixture(scope="module")
def api_app(tmp_path_factory, connections) -> Iterator[FastAPI]:
    usecases_dir = tmp_path_factory.mktemp("usecases")
    make_usecase(usecases_dir, NAME)
    api_settings = connections.model_copy(update={"influx_db": NAME, "usecases_dir": usecases_dir})
    TARGET.app = create_app(
        api_settings, usecases_dir, TOKEN, health_usecases=[NAME], es_prefix=f"{NAME}-"
    )
    yield TARGET.app  # schemathesis serves it from its own event-loop thread, lifespan included
    asgi.shutdown_lifespans()
    TARGET.app = None
    asyncio.run(cleanup(api_settings, NAME))


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    database=None,  # no .hypothesis folder in the work tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
def test_no_request_gets_a_server_error(case, api_app):
    calls = [case]
    if "name" in (case.path_parameters or {}):
        real = {**case.path_parameters, "name": NAME}
        calls.append(
            case.operation.Case(
                path_parameters=real,
                query=case.query,
                headers=case.headers,
                body=case.body,
                media_type=case.media_type,
            )
        )
    for call in calls:
        response = call.call(headers=HEADERS)
        excluded = []
        if call.operation.path == "/health" and response.status_code == 503:
            assert response.json()["status"] == "unavailable"  # services down: by design
            excluded.append(not_a_server_error)
        else:
            assert response.status_code < 500, (response.status_code, response.text)
        call.validate_response(
            response, excluded_checks=excluded, transport_kwargs={"headers": HEADERS}
        )
