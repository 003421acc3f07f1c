"""`streamer status` without services: the sidecar's /health (shared.health.Health) as rows,
the verdict, the table, and the HTTP fetch (a local server in a thread stands in for the
sidecar)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from rich.console import Console

from services import supervisor_status
from services.supervisor_status import (
    Answer,
    _fetch_with_urllib,
    fetch_health,
    health_table,
    sidecar_status,
)
from shared.health import InstanceHealth
from shared.health import services_down as missing
from shared.wire.heartbeat import HeartbeatPayload

NOW = 1_000_000.0


def beat(service: str, status: str = "running", **extra) -> InstanceHealth:
    payload = {
        "service": service,
        "instance": f"host-{service}",
        "usecases": ["kdd"],
        "status": status,
        "started_at": NOW - 90,
        "updated_at": NOW - 2,
        "counters": {"kdd": {"records_in": 10}},
        "model_versions": {"kdd": 3},
        "last_error": None,
        **extra,
    }
    return InstanceHealth.of(HeartbeatPayload.model_validate(payload), NOW)


def body(status: str = "ok", checks=(), problems=(), instances=(), required=("launcher",)) -> dict:
    """A /health body as the sidecar answers it (shared.health.Health)."""
    return {
        "status": status,
        "required_services": list(required),
        "usecases": sorted({check["usecase"] for check in checks}),
        "checks": list(checks),
        "problems": list(problems),
        "instances": [instance.model_dump(mode="json") for instance in instances],
    }


def render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def check(usecase, service, up, status, instances, last_error=None, age_s=None) -> dict:
    return {"usecase": usecase, "service": service, "up": up, "status": status,
            "instances": instances, "last_error": last_error, "age_s": age_s,
            "model_version": None}  # fmt: skip


# The sidecar's rows were guessed from five body shapes; they are now its response model's
# `instances` (replaced: the tests of the checks-to-rows mapping and of the other shapes).
def test_the_sidecar_instances_are_the_rows_and_its_checks_name_the_down_services():
    launcher = beat("launcher", instance="h-1", usecases=["a", "b"], updated_at=NOW - 1.0)
    trainer = beat("trainer", "stopping", instance="h-2", usecases=["b"], last_error="boom")
    answer = Answer(
        503,
        body(
            "unavailable",
            checks=[
                check("a", "launcher", True, "running", ["h-1"], age_s=1.5),
                check("b", "launcher", True, "running", ["h-1"], age_s=1.0),
                check("a", "trainer", False, None, []),
                check("b", "trainer", False, "stopping", ["h-2"], "boom", 4.0),
            ],
            problems=["trainer of a: no heartbeat (down or not started)"],
            instances=[launcher, trainer],
            required=("launcher", "trainer"),
        ),
    )
    status = sidecar_status(answer)
    rows = status.instances
    by_key = {(row.service, row.instance): row for row in rows}
    assert by_key["launcher", "h-1"].usecases == ["a", "b"]
    assert by_key["launcher", "h-1"].status == "running"
    assert by_key["launcher", "h-1"].updated_at == NOW - 1.0
    assert status.required == ("trainer",)  # a `down` row unless a trainer runs somewhere
    assert by_key["trainer", "h-2"].status == "stopping"
    assert by_key["trainer", "h-2"].last_error == "boom"
    assert missing(rows, ["launcher", "trainer"]) == ["trainer"]
    assert not status.ok and status.note == "trainer of a: no heartbeat (down or not started)"


@pytest.mark.parametrize(
    "reply",
    [[beat("launcher").model_dump()], {"heartbeats": []}, {"whatever": 1}, "text"],
)
def test_a_body_that_is_not_the_documented_health_gives_no_rows_and_says_why(reply):
    status = sidecar_status(Answer(200, reply))
    assert status.instances == [] and status.ok
    assert "not the documented Health" in status.note


def test_a_required_service_is_up_only_with_a_running_heartbeat():
    beats = [beat("launcher"), beat("trainer", status="stopping"), beat("producer")]
    assert missing(beats, ["launcher", "trainer", "evaluator"]) == ["trainer", "evaluator"]


def test_the_table_lists_every_instance_in_pipeline_order_and_the_missing_ones():
    text = render(
        health_table(
            [beat("trainer", last_error="redis went away"), beat("launcher")],
            ["launcher", "trainer", "evaluator"],
            now=NOW,
        )
    )
    lines = [line for line in text.splitlines() if "host-" in line or "evaluator" in line]
    assert [line.split()[1] for line in lines] == ["launcher", "trainer", "evaluator"]
    assert "1m ago" not in text and "2s ago" in text and "90s" in text
    assert "kdd: records_in=10" in text and "kdd: 3" in text
    assert "redis went away" in text
    assert "down" in lines[-1]


class Sidecar(BaseHTTPRequestHandler):
    status = 200
    body = b"{}"

    def do_GET(self) -> None:
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def sidecar() -> Iterator[tuple[str, type[Sidecar]]]:
    handler = type("Handler", (Sidecar,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/health", handler
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [200, 503])
def test_the_urllib_fallback_reads_the_body_of_200_and_503(sidecar, status):
    url, handler = sidecar
    handler.status, handler.body = status, json.dumps({"status": "x"}).encode()
    assert _fetch_with_urllib(url, 2) == Answer(status, {"status": "x"})


async def test_fetch_health_gives_the_answer_or_why_there_is_none(sidecar):
    url, handler = sidecar
    handler.status, handler.body = 503, b'{"checks": []}'
    assert await fetch_health(url) == Answer(503, {"checks": []})
    handler.status, handler.body = 200, b"<html>"
    assert "without a JSON body" in str(await fetch_health(url))
    closed = url.rsplit(":", 1)[0] + ":9/health"  # discard port: nothing listens
    assert isinstance(await fetch_health(closed, timeout_s=1), str)


async def test_the_sidecar_verdict_is_its_http_status(sidecar, monkeypatch):
    url, handler = sidecar
    handler.status = 503
    handler.body = json.dumps(body("unavailable", problems=["x"])).encode()

    async def no_redis(settings):  # the sidecar answered: Redis is not read
        raise AssertionError("Redis read although the sidecar answered")

    monkeypatch.setattr(supervisor_status, "instances_from_redis", no_redis)
    health = await supervisor_status.gather_health(url, settings=None)  # type: ignore[arg-type]
    assert (health.source, health.ok, health.note) == ("sidecar", False, "x")
    assert health.required == ()  # its checks already have a row per required service
    handler.status, handler.body = 200, json.dumps(body()).encode()
    health = await supervisor_status.gather_health(url, settings=None)  # type: ignore[arg-type]
    assert health.ok and "checks no use case" in health.note
    handler.status = 200
    handler.body = json.dumps(body(instances=[beat("launcher")])).encode()
    health = await supervisor_status.gather_health(url, settings=None)  # type: ignore[arg-type]
    assert health.ok and health.instances[0].service == "launcher"  # the documented shape


async def test_without_the_sidecar_the_heartbeats_come_from_redis(monkeypatch):
    async def from_redis(settings):
        return [beat("launcher"), beat("trainer")]

    monkeypatch.setattr(supervisor_status, "instances_from_redis", from_redis)
    closed = "http://127.0.0.1:9/health"  # discard port: nothing listens
    health = await supervisor_status.gather_health(closed, settings=None)  # type: ignore[arg-type]
    assert health.source == "redis" and not health.ok
    assert "does not answer" in health.note and "down: evaluator" in health.note
