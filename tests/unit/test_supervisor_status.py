"""`streamer status` without services: the sidecar's /health mapped into heartbeats, the
verdict, the table, and the HTTP fetch (a local server in a thread stands in for the sidecar)."""

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
    heartbeats_from_health,
    missing,
)

NOW = 1_000_000.0


def beat(service: str, status: str = "running", **extra) -> dict:
    return {
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


def render(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_the_sidecar_checks_become_one_row_per_service_instance():
    body = {
        "status": "unavailable",
        "required_services": ["launcher", "trainer"],
        "usecases": ["a", "b"],
        "checks": [
            {"usecase": "a", "service": "launcher", "up": True, "status": "running",
             "instances": ["h-1"], "last_error": None, "age_s": 1.5},
            {"usecase": "b", "service": "launcher", "up": True, "status": "running",
             "instances": ["h-1"], "last_error": None, "age_s": 1.0},
            {"usecase": "a", "service": "trainer", "up": False, "status": None,
             "instances": [], "last_error": None, "age_s": None},
            {"usecase": "b", "service": "trainer", "up": False, "status": "stopping",
             "instances": ["h-2"], "last_error": "boom", "age_s": 4.0},
        ],
        "problems": ["trainer of a: no heartbeat (down or not started)"],
    }  # fmt: skip
    rows = heartbeats_from_health(body, now=NOW)
    by_key = {(row["service"], row["instance"]): row for row in rows}
    assert by_key["launcher", "h-1"]["usecases"] == ["a", "b"]
    assert by_key["launcher", "h-1"]["status"] == "running"
    assert by_key["launcher", "h-1"]["updated_at"] == NOW - 1.0
    assert by_key["trainer", None]["status"] == "down"
    assert by_key["trainer", "h-2"]["status"] == "stopping"
    assert by_key["trainer", "h-2"]["last_error"] == "boom"
    assert missing(rows, ["launcher", "trainer"]) == ["trainer"]


@pytest.mark.parametrize(
    "body",
    [
        [beat("launcher")],
        {"heartbeats": [beat("launcher")]},
        {"services": [beat("launcher")]},
        {"services": {"launcher": beat("launcher")}},
        {"services": {"launcher": [beat("launcher")]}},
        {"services": {"launcher": {"up": True, "instances": [beat("launcher")]}}},
    ],
)
def test_heartbeat_shaped_bodies_are_accepted_too(body):
    (row,) = heartbeats_from_health(body)
    assert row["service"] == "launcher" and row["status"] == "running"


def test_a_summary_without_instances_keeps_the_service_and_its_state():
    rows = heartbeats_from_health({"services": {"trainer": {"up": False}, "api": "running"}})
    assert [(row["service"], row["status"]) for row in rows] == [
        ("trainer", "down"),
        ("api", "running"),
    ]


def test_an_unknown_body_gives_no_rows():
    assert heartbeats_from_health({"whatever": 1}) == []
    assert heartbeats_from_health("text") == []


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
    handler.body = json.dumps({"required_services": ["launcher"], "checks": [], "problems": ["x"]})
    handler.body = handler.body.encode()

    async def no_redis(settings):  # the sidecar answered: Redis is not read
        raise AssertionError("Redis read although the sidecar answered")

    monkeypatch.setattr(supervisor_status, "heartbeats_from_redis", no_redis)
    health = await supervisor_status.gather_health(url, settings=None)  # type: ignore[arg-type]
    assert (health.source, health.ok, health.note) == ("sidecar", False, "x")
    assert health.required == ()  # its checks already have a row per required service
    handler.status, handler.body = 200, b'{"checks": []}'
    health = await supervisor_status.gather_health(url, settings=None)  # type: ignore[arg-type]
    assert health.ok and "checks no use case" in health.note
    handler.status, handler.body = 200, json.dumps([beat("launcher")]).encode()
    health = await supervisor_status.gather_health(url, settings=None)  # type: ignore[arg-type]
    assert health.ok and health.heartbeats[0]["service"] == "launcher"


async def test_without_the_sidecar_the_heartbeats_come_from_redis(monkeypatch):
    async def from_redis(settings):
        return [beat("launcher"), beat("trainer")]

    monkeypatch.setattr(supervisor_status, "heartbeats_from_redis", from_redis)
    closed = "http://127.0.0.1:9/health"  # discard port: nothing listens
    health = await supervisor_status.gather_health(closed, settings=None)  # type: ignore[arg-type]
    assert health.source == "redis" and not health.ok
    assert "does not answer" in health.note and "down: evaluator" in health.note
