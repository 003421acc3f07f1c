"""The API sidecar in-process (httpx over ASGI: the real HTTP stack without a socket) against the
real Redis, InfluxDB and Elasticsearch: health from real heartbeats, configuration changes with
their token, validation and audit, retrain requests, metrics, alerts, models, Prometheus."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr
from redis.asyncio import Redis

from services.api.app import create_app
from shared.algorithms.registry import build_algorithm
from shared.clients.elastic import connect_elasticsearch
from shared.clients.influx import AioinfluxStore
from shared.clients.line_protocol import encode_point
from shared.clients.redis import connect_redis
from shared.config import ConnectionSettings, load_usecase
from shared.heartbeat import Heartbeat
from shared.modelstore import ModelStore
from shared.sinks.elastic import ensure_templates
from shared.wire.federated import ClientRound, RoundPhase
from shared.wire.keys import UseCaseKeys, heartbeat_key

TOKEN = "test-token-\u00e9"  # not ASCII: sent as UTF-8 bytes, compared as bytes
AUTH = {"Authorization": f"Bearer {TOKEN}".encode()}
REQUIRED = ("launcher", "trainer", "evaluator")


def make_usecase(
    root: Path,
    name: str,
    training_interval_ms: int = 60000,
    algorithm: str = "HoeffdingTreeClassifier",
) -> Path:
    """A KDD use-case folder (no datafile needed: the API only reads the configuration)."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "streaming.props").write_text(
        f"mainTopic={name}\noutputTopic={name}.outputs\nproblem.type=KDDClassification\n"
    )
    (folder / "algs.props").write_text(
        f"algorithm={algorithm}\ntraining.interval={training_interval_ms}\ntraining.maxdata=-1\n"
    )
    return folder


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient
    redis: Redis
    name: str
    settings: ConnectionSettings


@contextlib.asynccontextmanager
async def running_api(
    settings: ConnectionSettings, name: str, **options
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """create_app with its lifespan running, and a client speaking HTTP to it over ASGI."""
    app = create_app(settings, settings.usecases_dir, TOKEN, health_usecases=[name], **options)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield app, client


async def cleanup(settings: ConnectionSettings, name: str) -> None:
    """Drop what a test wrote: Redis keys, InfluxDB database, Elasticsearch indices/templates."""
    redis = connect_redis(settings)
    keys = [key async for key in redis.scan_iter(f"streamer:{name}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()
    influx = AioinfluxStore(settings)
    await influx.query(f'DROP DATABASE "{settings.influx_db}"')
    await influx.close()
    elastic = connect_elasticsearch(settings)
    await elastic.options(ignore_status=404).indices.delete(index=f"{name}-*")
    await elastic.options(ignore_status=404).indices.delete_index_template(name=f"{name}-*")
    await elastic.close()


@pytest.fixture
async def api(tmp_path, connections, unique) -> AsyncIterator[Api]:
    settings = connections.model_copy(
        update={"influx_db": unique, "usecases_dir": tmp_path / "usecases"}
    )
    make_usecase(settings.usecases_dir, unique)
    redis = connect_redis(settings)
    try:
        async with running_api(settings, unique, es_prefix=f"{unique}-") as (app, client):
            yield Api(app, client, redis, unique, settings)
    finally:
        await redis.aclose()
        await cleanup(settings, unique)


@contextlib.asynccontextmanager
async def heartbeats(redis: Redis, name: str, ttl_s: dict[str, int] | None = None, **options):
    """A real shared.heartbeat.Heartbeat per required service, as the services write them;
    `ttl_s[service]` with a long interval lets that one expire."""
    beats = {}
    for service in REQUIRED:
        ttl = (ttl_s or {}).get(service)
        timing = {"ttl_s": ttl, "interval_s": 3600} if ttl else {"interval_s": 0.5}
        beats[service] = Heartbeat(redis, service, [name], **timing, **options)
        await beats[service].start()
    try:
        yield beats
    finally:
        for beat in beats.values():
            await beat.stop()
            await redis.delete(beat.key)


# ---- health --------------------------------------------------------------------------------


async def test_health_is_503_without_services_and_200_when_every_required_one_beats(api):
    response = await api.client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["usecases"] == [api.name]
    assert body["problems"] == [
        f"{service} of {api.name}: no heartbeat (down or not started)" for service in REQUIRED
    ]

    async with heartbeats(api.redis, api.name):
        response = await api.client.get("/health")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] == "ok"
        assert body["problems"] == []
        assert {(c["service"], c["up"], c["status"]) for c in body["checks"]} == {
            (service, True, "running") for service in REQUIRED
        }
        # which services are required is a query parameter too
        response = await api.client.get("/health?required_services=trainer,producer")
        assert response.status_code == 503
        assert response.json()["problems"] == [
            f"producer of {api.name}: no heartbeat (down or not started)"
        ]


async def test_health_turns_503_when_a_heartbeat_expires_or_a_service_stops(api):
    async with heartbeats(api.redis, api.name, ttl_s={"trainer": 1}) as beats:
        assert (await api.client.get("/health")).status_code == 200
        await asyncio.sleep(1.6)  # the trainer's key expires: it stopped refreshing it
        response = await api.client.get("/health")
        assert response.status_code == 503
        assert response.json()["problems"] == [
            f"trainer of {api.name}: no heartbeat (down or not started)"
        ]

        beats["launcher"].record_error(RuntimeError("Kafka at k:1 is not reachable"))
        await beats["launcher"].stop()  # a crashing service says "stopping" one last time
        body = (await api.client.get("/health")).json()
        assert body["problems"] == [
            f"launcher of {api.name}: stopping; last error: Kafka at k:1 is not reachable",
            f"trainer of {api.name}: no heartbeat (down or not started)",
        ]
        launcher = next(check for check in body["checks"] if check["service"] == "launcher")
        assert launcher["up"] is False
        assert launcher["last_error"] == "Kafka at k:1 is not reachable"


async def test_a_malformed_heartbeat_is_skipped_by_every_reader(api):
    """Anyone can write Redis: a value that is not a HeartbeatPayload must not break /health,
    /usecases or /metrics, and is not shown as an instance."""
    bad = [heartbeat_key("launcher", f"{api.name}-bad-{number}") for number in range(2)]
    await api.redis.set(bad[0], b"not json", ex=30)
    await api.redis.set(bad[1], json.dumps({"service": "launcher", "usecases": [api.name]}), ex=30)
    try:
        async with heartbeats(api.redis, api.name):
            response = await api.client.get("/health")
            assert response.status_code == 200, response.text
            shown = {instance["instance"] for instance in response.json()["instances"]}
            assert not [name for name in shown if name.startswith(f"{api.name}-bad")], shown
            assert (await api.client.get("/usecases")).status_code == 200
            assert (await api.client.get("/metrics")).status_code == 200
    finally:
        await api.redis.delete(*bad)


async def test_usecases_lists_folders_validity_and_running_services(api):
    broken = api.settings.usecases_dir / "broken"
    broken.mkdir()
    (broken / "streaming.props").write_text("mainTopic=t\nrecordsPerBlock=abc\n")
    async with heartbeats(api.redis, api.name):
        body = (await api.client.get("/usecases")).json()
    listed = {usecase["name"]: usecase for usecase in body["usecases"]}
    assert listed[api.name]["valid"] is True
    assert listed[api.name]["services"] == sorted(["api", *REQUIRED])  # the API beats too
    assert listed["broken"]["valid"] is False
    assert {
        "file": "algs.props",
        "line": None,
        "key": "algs.props",
        "reason": "file is missing",
    } in (listed["broken"]["errors"])
    response = await api.client.get("/usecases/broken/config")
    assert response.status_code == 409
    assert response.json()["detail"]["message"] == "the props files of 'broken' are invalid"
    assert (await api.client.get("/usecases/nothing-here/config")).status_code == 404


# ---- configuration -------------------------------------------------------------------------


async def test_get_config_is_resolved_with_secrets_masked(api, connections):
    settings = api.settings.model_copy(update={"model_secret": SecretStr("s3cret")})
    async with running_api(settings, api.name) as (_, client):
        body = (await client.get(f"/usecases/{api.name}/config")).json()
    assert body["config"]["connections"]["model_secret"] == "**********"
    assert "s3cret" not in str(body)
    assert body["config"]["algs.props"]["training.interval"] == 60000
    assert body["overrides"] == {}
    assert "training.interval" in body["mutable_keys"]


async def test_changes_need_the_token(api):
    path = f"/usecases/{api.name}/config"
    change = {"training.interval": 500}
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}".encode()},
    ):
        response = await api.client.patch(path, json=change, headers=headers)
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
    response = await api.client.post(f"/usecases/{api.name}/retrain")
    assert response.status_code == 401
    assert (await api.client.get(f"{path}/audit")).status_code == 401
    assert await api.redis.exists(f"streamer:{api.name}:config:overrides") == 0


async def test_without_a_configured_token_nothing_can_change(api):
    app = create_app(api.settings, api.settings.usecases_dir, token=None, heartbeat=False)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            response = await client.patch(
                f"/usecases/{api.name}/config", json={"training.interval": 1}, headers=AUTH
            )
    assert response.status_code == 401
    assert response.json() == {
        "detail": "changes are disabled: this API has no token (STREAMER_API_TOKEN)"
    }


async def test_patch_stores_the_override_shows_it_in_config_and_audits_it(api):
    path = f"/usecases/{api.name}/config"
    response = await api.client.patch(
        path,
        json={
            "training.interval": 500,
            "online.inference": False,
            "evaluation.metrics": ["a", "b"],
        },
        headers={**AUTH, "X-Actor": "alice"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["overrides"] == {
        "training.interval": "500",
        "online.inference": "false",
        "evaluation.metrics": "a,b",
    }
    assert body["config"]["algs.props"]["training.interval"] == 500
    assert body["config"]["streaming.props"]["online.inference"] is False
    stored = await api.redis.hgetall(f"streamer:{api.name}:config:overrides")
    assert stored[b"training.interval"] == b"500"
    assert (await api.client.get(path)).json() == body

    await api.client.patch(path, json={"training.interval": "750"}, headers=AUTH)
    audit = await api.client.get(f"{path}/audit", headers=AUTH)
    assert audit.status_code == 200
    entries = audit.json()["entries"]
    assert [(e["who"], e["key"], e["old"], e["new"]) for e in entries] == [
        ("api", "training.interval", "500", "750"),  # newest first
        ("alice", "evaluation.metrics", "", "a,b"),
        ("alice", "online.inference", "true", "false"),
        ("alice", "training.interval", "60000", "500"),
    ]
    assert all(abs(entry["at"] - time.time()) < 60 for entry in entries)


async def test_patch_refuses_keys_and_values_with_every_problem_named(api):
    path = f"/usecases/{api.name}/config"
    response = await api.client.patch(
        path,
        json={"algorithm": "KNN", "training.interval": "soon", "training.maxdata": 0},
        headers=AUTH,
    )
    assert response.status_code == 422
    assert response.json() == {
        "detail": [
            {
                "loc": ["body", "algorithm"],
                "msg": "cannot be changed at run time",
                "type": "immutable_key",
                "input": "KNN",
            },
            {
                "loc": ["body", "training.interval"],
                "msg": "Input should be a valid integer, unable to parse string as an integer "
                "(got 'soon')",
                "type": "invalid_value",
                "input": "soon",
            },
        ]
    }
    response = await api.client.patch(path, json={"training.maxdata": 0}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "loc": ["body", "training.maxdata"],
            "msg": "must be -1 (all records) or a positive count",
            "type": "invalid_value",
            "input": "0",
        }
    ]
    response = await api.client.patch(path, json={"training.interval": {"a": 1}}, headers=AUTH)
    assert response.status_code == 422  # not a props value: FastAPI's own validation
    response = await api.client.patch(path, json={}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["detail"][0]["msg"] == "no key to change"
    assert await api.redis.exists(f"streamer:{api.name}:config:overrides") == 0
    assert (await api.client.get(f"{path}/audit", headers=AUTH)).json()["entries"] == []


# ---- retrain, metrics, alerts, models ------------------------------------------------------


async def test_retrain_adds_a_request_to_the_trainers_stream(api):
    path = f"/usecases/{api.name}/retrain"
    response = await api.client.post(path, headers=AUTH)
    assert response.status_code == 202
    first = response.json()
    response = await api.client.post(
        path, json={"reason": "drift seen on the dashboard"}, headers={**AUTH, "X-Actor": "bob"}
    )
    second = response.json()
    entries = await api.redis.xrange(f"streamer:{api.name}:train:requests")
    assert [entry_id.decode() for entry_id, _ in entries] == [
        first["request_id"],
        second["request_id"],
    ]
    assert entries[0][1] == {b"reason": b"api request", b"by": b"api"}
    assert entries[1][1] == {
        b"reason": b"drift seen on the dashboard",
        b"by": b"api",
        b"actor": b"bob",
    }
    assert (await api.client.post("/usecases/nope/retrain", headers=AUTH)).status_code == 404


async def test_metrics_give_the_latest_value_per_view_and_recent_series(api):
    influx = AioinfluxStore(api.settings)
    await influx.ensure_database()
    now_ms = int(time.time() * 1000)
    points = []
    for index in range(3):
        for view, value in (("cumulative", 0.5 + index / 10), ("window", 0.2 + index / 10)):
            points.append(
                encode_point(
                    f"{api.name}_metrics",
                    {"view": view, "metric": "accuracy"},
                    {"value": value, "evaluation": index},
                    (now_ms - 3000 + index * 1000) * 1_000_000,
                )
            )
    await influx.write_lines(points)
    await influx.close()
    path = f"/usecases/{api.name}/metrics"

    body = (await api.client.get(path)).json()
    assert body["series"] is None
    latest = {(item["view"], item["metric"]): item for item in body["latest"]}
    assert latest[("cumulative", "accuracy")]["value"] == pytest.approx(0.7)
    assert latest[("window", "accuracy")]["value"] == pytest.approx(0.4)
    assert latest[("window", "accuracy")]["time_ms"] == now_ms - 1000

    body = (await api.client.get(path, params={"since": 600, "view": "cumulative"})).json()
    assert [item["view"] for item in body["latest"]] == ["cumulative"]
    (series,) = body["series"]
    assert series["view"] == "cumulative"
    assert [value for _, value in series["points"]] == pytest.approx([0.5, 0.6, 0.7])
    assert (await api.client.get(path, params={"view": "daily"})).status_code == 422


async def test_metrics_alerts_and_models_are_empty_before_anything_ran(api):
    for kind in ("metrics", "alerts", "models"):
        response = await api.client.get(f"/usecases/{api.name}/{kind}")
        assert response.status_code == 200, response.text
    assert response.json() == {"usecase": api.name, "latest": None, "versions": []}
    alerts = (await api.client.get(f"/usecases/{api.name}/alerts")).json()
    assert alerts == {"usecase": api.name, "alerts": [], "detections": []}


async def test_alerts_come_newest_first_from_elasticsearch(api):
    elastic = connect_elasticsearch(api.settings)
    prefix = f"{api.name}-"
    await ensure_templates(elastic, prefix)
    t0 = 1_760_000_000_000
    for index, (usecase, state) in enumerate(
        [(api.name, "started"), (api.name, "stopped"), ("another", "started")]
    ):
        await elastic.index(
            index=f"{prefix}alerts",
            id=f"{usecase}:{index}:{state}",
            document={
                "@timestamp": t0 + index * 1000,
                "usecase": usecase,
                "state": state,
                "metrics": ["accuracy"],
                "evaluation": index,
                "retrain_requested": state == "started",
                "detection_ids": [f"{usecase}:accuracy:threshold:{index}"],
            },
            refresh=True,
        )
    await elastic.close()
    body = (await api.client.get(f"/usecases/{api.name}/alerts")).json()
    assert [(alert["state"], alert["@timestamp"]) for alert in body["alerts"]] == [
        ("stopped", t0 + 1000),
        ("started", t0),
    ]
    assert body["detections"] == []  # that index does not exist: empty, not an error
    limited = (await api.client.get(f"/usecases/{api.name}/alerts?limit=1")).json()
    assert [alert["state"] for alert in limited["alerts"]] == ["stopped"]


async def test_models_lists_versions_with_their_metadata(api):
    usecase = load_usecase(api.settings.usecases_dir / api.name, api.settings)
    store = ModelStore(api.redis, api.name, b"model-secret")
    for reason in ("interval", "alert: accuracy"):
        await store.publish(build_algorithm(usecase), mode="classical", reason=reason)
    body = (await api.client.get(f"/usecases/{api.name}/models")).json()
    assert body["latest"] == 2
    assert [(v["version"], v["reason"], v["mode"]) for v in body["versions"]] == [
        (2, "alert: accuracy", "classical"),
        (1, "interval", "classical"),
    ]
    assert body["versions"][0]["algorithm"] == "HoeffdingTreeClassifier"
    assert body["versions"][0]["size_bytes"] > 0


# ---- Prometheus, docs, the API's own heartbeat ---------------------------------------------


def samples(text: str, name: str) -> dict[frozenset, float]:
    return {
        frozenset(sample.labels.items()): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


async def test_prometheus_exposes_requests_and_the_pipeline_counters(api):
    def snapshot():
        return {
            "counters": {api.name: {"records_in": 42, "dlq": 1, "lag": {"p0": 7}}},
            "model_versions": {api.name: 3},
        }

    await api.client.get("/usecases")
    await api.client.get("/usecases/nope/models")
    async with heartbeats(api.redis, api.name, snapshot=snapshot) as beats:
        response = await api.client.get("/metrics")
        assert response.status_code == 200
        text = response.text
        instance = beats["launcher"].instance
    counters = samples(text, "streamer_pipeline_counter")
    for counter, value in (("records_in", 42), ("dlq", 1), ("lag.p0", 7)):
        labels = {"service": "launcher", "instance": instance, "usecase": api.name}
        assert counters[frozenset({**labels, "counter": counter}.items())] == value
    up = samples(text, "streamer_service_up")
    assert up[frozenset({"service": "trainer", "usecase": api.name}.items())] == 1.0
    versions = samples(text, "streamer_model_version")
    assert (
        versions[
            frozenset({"service": "evaluator", "instance": instance, "usecase": api.name}.items())
        ]
        == 3
    )
    requests = samples(text, "streamer_api_requests_total")
    assert (
        requests[frozenset({"method": "GET", "route": "/usecases", "status": "200"}.items())] >= 1
    )
    assert (
        requests[
            frozenset(
                {"method": "GET", "route": "/usecases/{name}/models", "status": "404"}.items()
            )
        ]
        == 1
    )
    # after the services stopped, their counters are gone from the next scrape
    after = (await api.client.get("/metrics")).text
    assert not [
        labels
        for labels in samples(after, "streamer_pipeline_counter")
        if ("usecase", api.name) in labels
    ]
    assert (await api.client.get("/metrics/")).status_code == 200


async def test_openapi_docs_and_the_apis_own_heartbeat(api):
    assert (await api.client.get("/docs")).status_code == 200
    schema = (await api.client.get("/openapi.json")).json()
    assert schema["paths"]["/usecases/{name}/config"]["patch"]["security"] == [{"HTTPBearer": []}]
    assert "security" not in schema["paths"]["/usecases/{name}/config"]["get"]
    assert schema["components"]["schemas"]["Health"]["properties"]["checks"]
    raw = [key async for key in api.redis.scan_iter("streamer:heartbeat:api:*")]
    assert raw, "the API writes its own heartbeat"


async def test_rounds_fold_a_federated_servers_phases_into_one_row_per_round(api):
    """As `streamer federate server` writes them (services/federated/state.py), read back by
    the API and the dashboard's snapshot."""
    phases = [
        RoundPhase(phase="fit", round=1, at=10.0, clients=[ClientRound(client="a", examples=30)]),
        RoundPhase(phase="evaluate", round=1, at=11.0, clients=[ClientRound(client="a", loss=0.5)]),
        RoundPhase(phase="server", round=1, at=12.0, loss=0.25),
        RoundPhase(
            phase="fit",
            round=2,
            at=20.0,
            clients=[ClientRound(client="a", examples=40), ClientRound(client="b", examples=7)],
            failures=1,
        ),
    ]
    for phase in phases:
        await api.redis.xadd(UseCaseKeys(api.name).federated_rounds, phase.encode())
    body = (await api.client.get(f"/usecases/{api.name}/rounds")).json()
    assert body["rounds"] == [
        {
            "round": 1,
            "at": 12.0,
            "clients": {"a": {"examples": 30, "loss": 0.5}},
            "failures": 0,
            "server_loss": 0.25,
        },
        {
            "round": 2,
            "at": 20.0,
            "clients": {"a": {"examples": 40, "loss": None}, "b": {"examples": 7, "loss": None}},
            "failures": 1,
            "server_loss": None,
        },
    ]
    newest = (await api.client.get(f"/usecases/{api.name}/rounds?limit=1")).json()
    assert [row["round"] for row in newest["rounds"]] == [2]
    snapshot = (await api.client.get(f"/dashboard/api/snapshot?usecase={api.name}")).json()
    assert snapshot["rounds"] == body["rounds"]
    other = (await api.client.get("/usecases/kdd-cup-99/rounds")).status_code
    assert other in (200, 404)  # a use case that is no server has no rounds
