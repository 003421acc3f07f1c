"""compose/elasticsearch/setup.sh against a stand-in Elasticsearch that records what it is sent
(the integration-test Elasticsearch here has no security module, so the real security API
cannot answer): it waits for the cluster, signs in as elastic, sets kibana_system's password,
gives the `streamer` user a role limited to the streamer-* indices, escapes passwords in JSON,
and fails loudly. Security itself is Elasticsearch's; this is the script's logic."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.integration.setup_scripts import run_script, serving

SCRIPT = Path(__file__).resolve().parents[2] / "compose" / "elasticsearch" / "setup.sh"
PASSWORDS = {
    "ELASTIC_PASSWORD": 'el"as\\tic',
    "KIBANA_SYSTEM_PASSWORD": "kibana-pw",
    "STREAMER_ES_PASSWORD": 'stre"amer \\pw:1',  # JSON-escaped by the script
}


@dataclass
class StandIn:
    """Health answers 503 `starting` times, then 200; security calls answer `status_of`."""

    starting: int = 1
    url: str = ""
    health_calls: int = 0
    status_of: dict[str, int] = field(default_factory=dict)
    calls: list[dict[str, Any]] = field(default_factory=list)

    async def health(self, request: web.Request) -> web.Response:
        self.health_calls += 1
        if self.health_calls <= self.starting:
            return web.json_response({"status": "red"}, status=503)
        return web.json_response({"status": "green"})

    async def security(self, request: web.Request) -> web.Response:
        self.calls.append(
            {
                "method": request.method,
                "path": request.path,
                "authorization": request.headers.get("Authorization"),
                "type": request.headers.get("Content-Type"),
                "body": await request.json(),
            }
        )
        status = self.status_of.get(request.path, 200)
        body = {"acknowledged": True} if status == 200 else {"error": "denied by the stand-in"}
        return web.json_response(body, status=status)


@pytest.fixture
async def elastic():
    stand_in = StandIn()
    app = web.Application()
    app.router.add_get("/_cluster/health", stand_in.health)
    app.router.add_route("*", "/_security/{rest:.*}", stand_in.security)
    async with serving(app) as url:
        stand_in.url = url
        yield stand_in


async def run_setup(**env: str) -> tuple[int, str]:
    return await run_script(SCRIPT, **{"ES_INTERVAL": "1", **env})


async def test_waits_then_sets_kibana_system_and_a_streamer_user_limited_to_its_indices(elastic):
    code, output = await run_setup(ES_URL=elastic.url + "/", **PASSWORDS)
    assert code == 0, output
    assert elastic.health_calls == 2  # once starting, then ready
    assert [(c["method"], c["path"]) for c in elastic.calls] == [
        ("POST", "/_security/user/kibana_system/_password"),
        ("PUT", "/_security/role/streamer_writer"),
        ("PUT", "/_security/user/streamer"),
    ]
    basic = base64.b64encode(f"elastic:{PASSWORDS['ELASTIC_PASSWORD']}".encode()).decode()
    assert {c["authorization"] for c in elastic.calls} == {f"Basic {basic}"}
    assert {c["type"] for c in elastic.calls} == {"application/json"}
    kibana, role, user = (c["body"] for c in elastic.calls)
    assert kibana == {"password": PASSWORDS["KIBANA_SYSTEM_PASSWORD"]}
    assert [entry["names"] for entry in role["indices"]] == [["streamer-*"]]
    assert "all" not in role["cluster"] and "manage_security" not in role["cluster"]
    assert user["password"] == PASSWORDS["STREAMER_ES_PASSWORD"]
    assert user["roles"] == ["streamer_writer"]
    for password in PASSWORDS.values():
        assert password not in output


async def test_running_again_is_harmless(elastic):
    for _ in range(2):
        code, output = await run_setup(ES_URL=elastic.url, **PASSWORDS)
        assert code == 0, output
    assert len(elastic.calls) == 6


async def test_a_refused_request_stops_with_its_answer(elastic):
    elastic.status_of["/_security/role/streamer_writer"] = 403
    code, output = await run_setup(ES_URL=elastic.url, **PASSWORDS)
    assert code == 1
    assert "PUT /_security/role/streamer_writer answered HTTP 403" in output
    assert "denied by the stand-in" in output
    assert [c["path"] for c in elastic.calls][-1] == "/_security/role/streamer_writer"


@pytest.mark.parametrize("missing", sorted(PASSWORDS))
async def test_a_missing_password_is_named(elastic, missing):
    given = {key: value for key, value in PASSWORDS.items() if key != missing}
    code, output = await run_setup(ES_URL=elastic.url, **given)
    assert code == 2 and f"error: {missing} is not set" in output
    assert elastic.health_calls == 0


async def test_gives_up_when_elasticsearch_never_becomes_ready(elastic):
    elastic.starting = 1000
    code, output = await run_setup(ES_URL=elastic.url, ES_TIMEOUT="1", **PASSWORDS)
    assert code == 3
    assert f"Elasticsearch at {elastic.url} not ready after 1s" in output
    assert elastic.calls == []
