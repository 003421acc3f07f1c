"""The API sidecar's logic that needs no backing service: binding policy, token checks, health
from heartbeats, props text, the use-case catalog, Prometheus gauges, the OpenAPI schema."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.api.app import create_app
from services.api.catalog import Catalog
from services.api.prometheus import ApiMetrics
from services.api.routes.usecases import props_text
from services.api.security import InsecureBindError, check_bind, is_loopback, token_matches
from shared.config import ConnectionSettings
from shared.health import check_health
from shared.wire.heartbeat import HeartbeatPayload

REPO = Path(__file__).resolve().parents[2]
NOW = 1_800_000_000.0


def beat(service, usecases, status="running", instance="h-1", age=1.0, error=None, **extra):
    return HeartbeatPayload(
        service=service,
        instance=instance,
        usecases=usecases,
        status=status,
        started_at=NOW - 60,
        updated_at=NOW - age,
        last_error=error,
        **extra,
    )


# ---- binding and tokens --------------------------------------------------------------------


@pytest.mark.parametrize("host", ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"])
def test_loopback_addresses_may_serve_without_a_token(host):
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.10", "api.example.org"])
def test_other_addresses_need_a_token(host):
    assert not is_loopback(host)
    with pytest.raises(InsecureBindError) as error:
        check_bind(host, "")
    assert error.value.exit_code == 2
    assert str(error.value).startswith(f"refusing to serve on {host}: it is not a loopback")
    check_bind(host, "a-token")


def test_streamer_api_refuses_to_start_beyond_loopback_without_a_token():
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMER_")}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "api", "--host", "0.0.0.0", "--port", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "refusing to serve on 0.0.0.0: it is not a loopback address" in result.stderr


def test_tokens_are_compared_as_bytes():
    assert token_matches("s3cret", "s3cret")
    assert not token_matches("s3cre", "s3cret")
    utf8_as_latin1 = "t\u00e9".encode().decode("latin-1")  # how ASGI hands a UTF-8 header over
    assert token_matches(utf8_as_latin1, "t\u00e9")
    assert not token_matches("\u20ac", "x")  # cannot have come over HTTP: no match, no error


async def asgi_client(token: str | None) -> httpx.AsyncClient:
    """A client for an app whose lifespan did not run: enough for what fails before any
    backing service is touched (authentication, routing)."""
    app = create_app(ConnectionSettings(), Path("/nonexistent"), token)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


@pytest.mark.parametrize(
    ("token", "headers", "detail"),
    [
        (None, {"Authorization": "Bearer x"}, "changes are disabled: this API has no token"),
        ("x", {}, "missing bearer token"),
        ("x", {"Authorization": "Bearer y"}, "invalid bearer token"),
        ("x", {"Authorization": "Basic x"}, "missing bearer token"),
    ],
)
async def test_changing_endpoints_answer_401_before_doing_anything(token, headers, detail):
    async with await asgi_client(token) as client:
        for method, path in (
            ("PATCH", "/usecases/uc/config"),
            ("POST", "/usecases/uc/retrain"),
            ("GET", "/usecases/uc/config/audit"),
        ):
            response = await client.request(method, path, json={}, headers=headers)
            assert response.status_code == 401
            assert response.json()["detail"].startswith(detail)
            assert response.headers["www-authenticate"] == "Bearer"


async def test_405_lists_every_method_of_the_path():
    async with await asgi_client("x") as client:
        response = await client.request("DELETE", "/usecases/uc/config")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, PATCH"


def test_openapi_marks_the_changing_endpoints_as_secured():
    schema = create_app(ConnectionSettings(), token="x").openapi()
    secured = {
        f"{method.upper()} {path}"
        for path, operations in schema["paths"].items()
        for method, operation in operations.items()
        if operation.get("security")
    }
    assert secured == {
        "PATCH /usecases/{name}/config",
        "GET /usecases/{name}/config/audit",
        "POST /usecases/{name}/retrain",
        "POST /usecases/{name}/promote",
        "POST /usecases/{name}/rollback",
    }
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            ok = operation["responses"].get("200") or operation["responses"].get("202")
            assert "$ref" in ok["content"]["application/json"]["schema"], (method, path)


# ---- health --------------------------------------------------------------------------------


def test_health_is_ok_only_when_every_required_service_runs_for_every_usecase():
    beats = [
        beat("launcher", ["a", "b"]),
        beat("trainer", ["a"]),
        beat("trainer", ["b"], instance="h-2"),
    ]
    assert check_health(beats, ["a", "b"], ["launcher", "trainer"], NOW).status == "ok"
    health = check_health(beats, ["a", "b", "c"], ["launcher", "trainer"], NOW)
    assert health.status == "unavailable"
    assert health.problems == [
        "launcher of c: no heartbeat (down or not started)",
        "trainer of c: no heartbeat (down or not started)",
    ]


def test_health_names_a_stopping_service_and_its_last_error():
    beats = [
        beat("launcher", ["a"], status="stopping", error="Kafka is not reachable", age=2.5),
        beat("trainer", ["a"]),
    ]
    health = check_health(beats, ["a"], ["launcher", "trainer"], NOW)
    assert health.problems == ["launcher of a: stopping; last error: Kafka is not reachable"]
    launcher = health.checks[0]
    assert (launcher.up, launcher.status, launcher.age_s) == (False, "stopping", 2.5)
    assert launcher.instances == ["h-1"]


def test_one_running_instance_is_enough():
    beats = [beat("trainer", ["a"], status="stopping", instance="old"), beat("trainer", ["a"])]
    check = check_health(beats, ["a"], ["trainer"], NOW).checks[0]
    assert check.up and check.instances == ["h-1"] and check.status == "running"


def test_no_usecase_means_nothing_is_required():
    assert check_health([], [], ["trainer"], NOW).status == "ok"


# ---- props text, catalog, Prometheus -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (500, "500"),
        (500.0, "500"),
        (0.25, "0.25"),
        (1e-7, "1e-07"),
        (True, "true"),
        (False, "false"),
        ("Accuracy,MacroF1", "Accuracy,MacroF1"),
        (["Accuracy", "MacroF1"], "Accuracy,MacroF1"),
        ([1, 2.5, True], "1,2.5,true"),
    ],
)
def test_json_values_become_props_text(value, text):
    assert props_text(value) == text


def test_non_finite_numbers_are_refused():
    with pytest.raises(ValueError, match="not a finite number"):
        props_text(float("inf"))


def write_usecase(root: Path, name: str, algs: str = "algorithm=HoeffdingTreeClassifier\n"):
    folder = root / name
    folder.mkdir()
    (folder / "streaming.props").write_text("mainTopic=t\noutputTopic=o\nproblem.type=Generic\n")
    (folder / "algs.props").write_text(algs)
    return folder


async def test_catalog_lists_folders_with_props_and_never_follows_paths(tmp_path):
    write_usecase(tmp_path, "good")
    write_usecase(tmp_path, "bad", algs="training.interval=soon\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / ".hidden").mkdir()
    catalog = Catalog(tmp_path, ConnectionSettings(usecases_dir=tmp_path))
    entries = {entry.name: entry for entry in await catalog.entries()}
    assert sorted(entries) == ["bad", "good"]
    assert entries["good"].valid and not entries["bad"].valid
    assert [issue.key for issue in entries["bad"].issues] == ["algorithm", "training.interval"]
    for name in ("..", ".", "../good", "good/", "/etc", "empty", ".hidden", "nope"):
        assert await catalog.get(name) is None, name


async def test_catalog_reloads_a_folder_only_when_its_files_change(tmp_path):
    folder = write_usecase(tmp_path, "uc")
    catalog = Catalog(tmp_path, ConnectionSettings(usecases_dir=tmp_path))
    first = await catalog.get("uc")
    assert await catalog.get("uc") is first
    (folder / "algs.props").write_text("algorithm=HoeffdingTreeClassifier\ntraining.interval=5\n")
    changed = await catalog.get("uc")
    assert changed is not first
    assert changed.usecase.algs.training_interval == 5


def test_pipeline_gauges_come_from_the_heartbeats():
    metrics = ApiMetrics()
    launcher = beat(
        "launcher",
        ["a"],
        counters={"a": {"records_in": 10, "lag": {"p0": 3}, "note": "text", "ok": True}},
        model_versions={"a": 4, "b": None},
    )
    # the launcher is up for `a`, the trainer is not
    metrics.pipeline.health = check_health([launcher], ["a"], ["launcher", "trainer"], NOW)
    found = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(generate_latest(metrics.registry).decode())
        for sample in family.samples
    }
    labels = (("instance", "h-1"), ("service", "launcher"), ("usecase", "a"))

    def counter(name: str) -> float | None:
        key = tuple(sorted((*labels, ("counter", name))))
        return found.get(("streamer_pipeline_counter", key))

    assert (counter("records_in"), counter("lag.p0"), counter("ok")) == (10.0, 3.0, 1.0)
    assert counter("note") is None  # not a number
    assert found[("streamer_model_version", labels)] == 4.0
    assert found[("streamer_service_up", (("service", "trainer"), ("usecase", "a")))] == 0.0
    assert found[("streamer_api_redis_up", ())] == 1.0
