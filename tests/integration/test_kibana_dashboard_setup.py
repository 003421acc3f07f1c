"""compose/kibana/setup.sh against a stand-in Kibana (no Kibana can run here): it waits for
`/api/status` to say available, imports the ndjson as multipart field `file` with
`kbn-xsrf` and `overwrite=true`, sends basic auth when asked, and fails loudly."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from tests.integration.setup_scripts import run_script, serving

KIBANA_DIR = Path(__file__).resolve().parents[2] / "compose" / "kibana"
SCRIPT = KIBANA_DIR / "setup.sh"
DASHBOARD = KIBANA_DIR / "dashboard.ndjson"


@dataclass
class FakeKibana:
    """Answers `unavailable` for the first `starting` status calls, then `available`."""

    starting: int = 1
    url: str = ""
    import_reply: dict = field(default_factory=lambda: {"success": True, "successCount": 21})
    status_calls: int = 0
    imports: list[dict] = field(default_factory=list)

    async def status(self, request: web.Request) -> web.Response:
        self.status_calls += 1
        if self.status_calls <= self.starting:
            body = {"status": {"overall": {"level": "unavailable", "summary": "starting"}}}
            return web.json_response(body, status=503)
        body = {"name": "kb", "status": {"overall": {"summary": "ok", "level": "available"}}}
        return web.json_response(body)

    async def import_objects(self, request: web.Request) -> web.Response:
        form = await request.post()
        upload = form.get("file")
        self.imports.append(
            {
                "path": request.path,
                "query": dict(request.query),
                "xsrf": request.headers.get("kbn-xsrf"),
                "authorization": request.headers.get("Authorization"),
                "filename": getattr(upload, "filename", None),
                "content": upload.file.read().decode() if upload is not None else None,
            }
        )
        return web.json_response(self.import_reply, status=200)


@pytest.fixture
async def kibana():
    fake = FakeKibana()
    app = web.Application()
    app.router.add_get("/api/status", fake.status)
    app.router.add_post("/api/saved_objects/_import", fake.import_objects)
    app.router.add_post("/s/{space}/api/saved_objects/_import", fake.import_objects)
    async with serving(app) as url:
        fake.url = url
        yield fake


async def run_setup(**env: str) -> tuple[int, str]:
    return await run_script(SCRIPT, **{"KIBANA_INTERVAL": "1", **env})


async def test_waits_for_kibana_then_imports_with_overwrite(kibana):
    code, output = await run_setup(KIBANA_URL=kibana.url + "/")
    assert code == 0, output
    assert kibana.status_calls == 2  # once unavailable, then available
    assert "imported 21 saved objects" in output
    [sent] = kibana.imports
    assert sent["query"] == {"overwrite": "true"}
    assert sent["xsrf"] == "true"
    assert sent["authorization"] is None
    assert sent["filename"].endswith(".ndjson")
    assert sent["content"] == DASHBOARD.read_text(encoding="utf-8")


async def test_running_twice_overwrites_again(kibana):
    for _ in range(2):
        code, output = await run_setup(KIBANA_URL=kibana.url)
        assert code == 0, output
    assert [sent["query"]["overwrite"] for sent in kibana.imports] == ["true", "true"]


async def test_basic_auth_and_space(kibana):
    password = 'p"a\\ss w:rd'
    code, output = await run_setup(
        KIBANA_URL=kibana.url, KIBANA_USER="elastic", KIBANA_PASSWORD=password, KIBANA_SPACE="ml"
    )
    assert code == 0, output
    [sent] = kibana.imports
    assert sent["path"] == "/s/ml/api/saved_objects/_import"
    expected = base64.b64encode(f"elastic:{password}".encode()).decode()
    assert sent["authorization"] == f"Basic {expected}"
    assert password not in output


async def test_a_failed_import_exits_non_zero_and_shows_the_response(kibana):
    kibana.import_reply = {
        "success": False,
        "successCount": 0,
        "errors": [{"id": "streamer-evaluation", "error": {"type": "missing_references"}}],
    }
    code, output = await run_setup(KIBANA_URL=kibana.url)
    assert code == 1
    assert "import failed (HTTP 200)" in output
    assert "missing_references" in output


async def test_gives_up_when_kibana_never_becomes_available(kibana):
    kibana.starting = 1000
    code, output = await run_setup(KIBANA_URL=kibana.url, KIBANA_TIMEOUT="1")
    assert code == 3
    assert f"Kibana at {kibana.url} not available after 1s (last HTTP status 503)" in output
    assert kibana.imports == []


async def test_nothing_listening(kibana):
    code, output = await run_setup(KIBANA_URL="http://127.0.0.1:1", KIBANA_TIMEOUT="1")
    assert code == 3
    assert "last HTTP status 000" in output


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KIBANA_TIMEOUT": "soon"}, "must be whole seconds"),
        ({"DASHBOARD_FILE": "/nonexistent.ndjson"}, "cannot read /nonexistent.ndjson"),
        ({"KIBANA_USER": "elastic"}, "KIBANA_PASSWORD is not"),
    ],
)
async def test_bad_settings(kibana, env, message):
    code, output = await run_setup(KIBANA_URL=kibana.url, **env)
    assert code == 2
    assert message in output
    assert kibana.status_calls == 0
