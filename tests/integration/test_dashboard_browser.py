"""The dashboard in a real headless browser: Debian's chromium driven by playwright-core
(tests/browser/driver.mjs; `bash scripts/browser-setup.sh` installs both), against the router
served by uvicorn on a loopback port and real data in InfluxDB, Redis and Elasticsearch.

The page must load without console errors, show the use case, its model version and the health
of its services, draw alert markers, and its chart must gain points while the test writes more
evaluations the way the evaluator does. A screenshot is saved as artifacts/dashboard.png.
Without a browser: the snapshot when Elasticsearch is down, and the routes' edges.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI

from services.api.dashboard.router import dashboard_router
from services.api.dashboard.snapshot import Dashboard
from shared.clients.elastic import connect_elasticsearch
from shared.clients.influx import AioinfluxStore
from shared.clients.line_protocol import encode_point
from shared.clients.redis import connect_redis
from shared.config import ConnectionSettings
from shared.heartbeat import Heartbeat
from shared.modelstore import ModelStore
from shared.sinks.elastic import ensure_templates
from shared.wire.influx import LeaderboardMeasurement, ReliabilityMeasurement
from shared.wire.keys import UseCaseKeys, heartbeat_key
from shared.wire.store import ModelMeta

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BROWSER_DIR = REPO / "tests" / "browser"
SCREENSHOT = REPO / "artifacts" / "dashboard.png"
#: This machine's network is closed: without these, chromium floods refused connections.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SETUP_HINT = "install the browser pieces with `bash scripts/browser-setup.sh`"
HISTORY = 30  # evaluations already written when the page opens
METRICS = ("accuracy", "macro_f1")


def chromium_path() -> str:
    path = (
        os.environ.get("STREAMER_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )
    if not path:
        pytest.fail(f"no chromium found: {SETUP_HINT}")
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir() or not shutil.which("node"):
        pytest.fail(f"node or playwright-core missing in {BROWSER_DIR}: {SETUP_HINT}")
    return path


class Browser:
    """Client of tests/browser/driver.mjs (JSON lines over the node process's stdin/stdout)."""

    def __init__(self, process: asyncio.subprocess.Process):
        self.process = process
        self.next_id = 0

    @classmethod
    @contextlib.asynccontextmanager
    async def launch(cls, executable: str) -> AsyncIterator[Browser]:
        profile = tempfile.mkdtemp(prefix="streamer-chromium-")
        with tempfile.TemporaryFile() as stderr:
            process = await asyncio.create_subprocess_exec(
                "node",
                str(BROWSER_DIR / "driver.mjs"),
                cwd=BROWSER_DIR,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                limit=1 << 24,
            )
            browser = cls(process)
            try:
                await browser.call(
                    "launch",
                    executablePath=executable,
                    userDataDir=profile,
                    args=CHROMIUM_FLAGS,
                    viewport={"width": 1400, "height": 1000},
                    wait_s=30,
                )
                yield browser
            finally:
                with contextlib.suppress(Exception):
                    await browser.call("close", wait_s=10)
                await browser.stop()
                shutil.rmtree(profile, ignore_errors=True)
                stderr.seek(0)
                leftover = stderr.read().decode(errors="replace").strip()
                if leftover:
                    print(f"browser driver stderr:\n{leftover[-4000:]}")

    async def stop(self) -> None:
        """End the driver, bounded: SIGTERM first (playwright then closes chromium, which runs
        in a session of its own), SIGKILL after 5 s; never wait on the pipes for ever."""
        for send_signal in (self.process.terminate, self.process.kill):
            if self.process.returncode is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                send_signal()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)

    async def call(self, cmd: str, wait_s: float = 15, **arguments: Any) -> Any:
        self.next_id += 1
        request = {"id": self.next_id, "cmd": cmd, **arguments}
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        await self.process.stdin.drain()
        line = await asyncio.wait_for(self.process.stdout.readline(), wait_s)
        if not line:
            raise RuntimeError(f"browser driver ended during {cmd!r}")
        answer = json.loads(line)
        assert answer["id"] == self.next_id, answer
        if not answer["ok"]:
            raise AssertionError(f"browser {cmd} failed: {answer['error']}")
        return answer["result"]

    async def evaluate(self, expression: str) -> Any:
        return await self.call("evaluate", expression=expression)

    async def wait_for(self, expression: str, timeout_s: float = 10) -> Any:
        """Wait until `expression` is truthy in the page; on timeout say what the page has."""
        try:
            return await self.call(
                "waitFor", expression=expression, timeoutMs=timeout_s * 1000, wait_s=timeout_s + 5
            )
        except AssertionError as error:
            state = await self.evaluate("JSON.stringify(window.dashboard)")
            problems = await self.call("problems")
            raise AssertionError(
                f"{error}\nwindow.dashboard = {state}\nproblems: {problems}"
            ) from error


@contextlib.contextmanager
def serve(app: FastAPI) -> Iterator[str]:
    """uvicorn in a thread on a free loopback port; yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def evaluation_lines(usecase: str, index: int, time_ms: int) -> list[str]:
    """What the evaluator's `_write` writes for one evaluation (two metrics, two views)."""
    lines = []
    for view, offset in (("cumulative", 0.0), ("window", -0.04)):
        for metric, base in zip(METRICS, (0.82, 0.7), strict=True):
            value = base + 0.1 * (1 - math.exp(-index / 12)) + offset + 0.02 * math.sin(index)
            lines.append(
                encode_point(
                    f"{usecase}_metrics",
                    {"view": view, "metric": metric},
                    {"value": float(value), "evaluation": index},
                    time_ms * 1_000_000,
                )
            )
    return lines


async def publish_model(redis: Any, usecase: str, version: int, time_ms: int) -> None:
    """What the trainer's ModelStore.publish leaves in Redis, minus the model bytes."""
    meta = {
        "version": version,
        "created_at": time_ms / 1000,
        "algorithm": "river.tree.HoeffdingTreeClassifier",
        "mode": "incremental" if version > 1 else "full",
        "records_learned": 10_000 * version,
        "reason": "alert: accuracy" if version > 1 else "start",
    }
    encoded = ModelMeta.model_validate(meta).encode()
    keys = UseCaseKeys(usecase)
    await redis.hset(keys.model_meta(version), mapping=encoded)
    await redis.set(keys.model_latest, version)
    await redis.xadd(keys.models, encoded, id=f"{time_ms}-0")


def heartbeat(
    redis: Any,
    service: str,
    usecase: str,
    model: int | None,
    interval_s: float = 1,
    **counters: int,
) -> Heartbeat:
    beat = Heartbeat(
        redis,
        service,
        [usecase],
        lambda: {"counters": {usecase: counters}, "model_versions": {usecase: model}},
        interval_s=interval_s,
    )
    # a key of its own, so that a heartbeat of this process in another test is not overwritten
    beat.instance = f"{usecase}-{service}"
    beat.key = heartbeat_key(service, beat.instance)
    return beat


async def test_dashboard_in_a_browser(unique: str, monkeypatch: pytest.MonkeyPatch) -> None:
    executable = chromium_path()
    started = time.monotonic()
    usecase, database, es_prefix = f"dash-{unique}", f"{unique}_dashboard", f"{unique}-"
    monkeypatch.setenv("STREAMER_INFLUX_DB", database)
    settings = ConnectionSettings()
    assert settings.influx_db == database
    redis = connect_redis(settings)
    influx = AioinfluxStore(settings)
    elastic = connect_elasticsearch(settings)
    beats = [
        heartbeat(redis, "launcher", usecase, 2, batches=31, records=3100, outputs=3100),
        heartbeat(redis, "evaluator", usecase, None, evaluations=30, outputs=3000),
        heartbeat(redis, "trainer", usecase, 2, trainings=2, records_learned=20000),
    ]
    beats[2].record_error("InfluxDB unavailable at http://127.0.0.1:18086 (retrying)")
    try:
        # history: HISTORY evaluations 3 s apart, ending now; batches; a retrain; two models
        await influx.ensure_database()
        now = int(time.time() * 1000)
        times = [now - (HISTORY - i) * 3000 for i in range(HISTORY)]
        await influx.write_lines(
            [line for i, t in enumerate(times) for line in evaluation_lines(usecase, i, t)]
        )
        await ensure_templates(elastic, es_prefix)  # no alerts index yet: the page must cope
        for i, t in enumerate(times):
            await elastic.index(
                index=f"{es_prefix}batches",
                id=f"{usecase}:{i}",
                document={
                    "@timestamp": t,
                    "usecase": usecase,
                    "evaluation": i,
                    "records": 100 + 10 * (i % 7),
                    "records_per_s": 33.0,
                    "latency_ms_p50": 20 + i % 5,
                    "latency_ms_p95": 60 + 3 * (i % 9),
                },
            )
        await elastic.indices.refresh(index=f"{es_prefix}batches")
        await publish_model(redis, usecase, 1, times[0])
        await redis.xadd(  # what request_training writes, back then (explicit id = time)
            UseCaseKeys(usecase).train_requests,
            {"reason": "alert: accuracy", "by": "evaluator", "evaluation": "15"},
            id=f"{times[15]}-0",
        )
        await publish_model(redis, usecase, 2, times[20])
        for beat in beats:
            await beat.start()

        app = FastAPI()
        # short-lived event streams: the page must resume them (Last-Event-ID) without a gap
        router = dashboard_router(settings, es_prefix=es_prefix, stream_lifetime_s=4)
        app.include_router(router, prefix="/dashboard")
        with serve(app) as base:
            async with Browser.launch(executable) as browser:
                await browser.call("goto", url=f"{base}/dashboard?usecase={usecase}&window=300")
                await browser.wait_for(
                    f"window.dashboard && dashboard.points.cumulative >= {HISTORY}"
                    " && dashboard.points.throughput > 0"
                )
                shown = await browser.evaluate(
                    """({
                      selected: document.querySelector('#usecase').value,
                      options: [...document.querySelectorAll('#usecase option')].map(o => o.value),
                      title: document.title,
                      model: document.querySelector('#model-version').textContent,
                      mode: dashboard.mode,
                      points: dashboard.points,
                      markers: dashboard.markers,
                      services: [...document.querySelectorAll('#services tbody tr')].map(r =>
                        [...r.cells].map(c => c.textContent)),
                      attribute: document.querySelector('#chart-cumulative').dataset.points,
                    })"""
                )
                assert shown["selected"] == usecase, shown
                assert usecase in shown["options"] and usecase in shown["title"], shown
                assert shown["model"] == "v2", shown
                assert shown["mode"] == "sse", shown
                assert shown["points"]["window"] >= HISTORY, shown
                assert shown["points"]["latency"] >= HISTORY, shown
                assert shown["markers"] >= 3, shown  # two model versions and a retrain request
                assert int(shown["attribute"]) == shown["points"]["cumulative"], shown
                health = {row[0]: row for row in shown["services"]}
                assert health["launcher"][1] == "up" and health["launcher"][4] == "v2", health
                assert health["producer"][1] == "down", health
                assert "InfluxDB unavailable" in health["trainer"][6], health

                # records flow: new evaluations and a new model reach the open page
                before = shown["points"]["cumulative"]
                for i in range(HISTORY, HISTORY + 3):
                    await influx.write_lines(evaluation_lines(usecase, i, int(time.time() * 1000)))
                    await asyncio.sleep(1.1)
                await publish_model(redis, usecase, 3, int(time.time() * 1000))
                # the evaluator's alerts index appears (late: the sink buffers) with an alert
                for state, t in (("started", times[16]), ("stopped", times[24])):
                    await elastic.index(
                        index=f"{es_prefix}alerts",
                        id=f"{usecase}:{t}:{state}",
                        document={
                            "@timestamp": t,
                            "usecase": usecase,
                            "state": state,
                            "metrics": ["accuracy"],
                            "evaluation": 16,
                            "retrain_requested": state == "started",
                        },
                        refresh="wait_for",
                    )
                await browser.wait_for(
                    f"dashboard.points.cumulative > {before} && dashboard.model === 3"
                    " && document.querySelectorAll('#events li.alert_started').length === 1"
                    " && document.querySelectorAll('#events li.alert_stopped').length === 1"
                    " && dashboard.markers >= 6"
                )
                # the 4 s streams were resumed with deltas: one full snapshot only
                resumed = await browser.evaluate(
                    "[dashboard.mode, dashboard.streams, dashboard.full]"
                )
                assert resumed == ["sse", resumed[1], 1] and resumed[1] >= 2, resumed
                assert (
                    await browser.evaluate("document.querySelector('#model-version').textContent")
                    == "v3"
                )
                SCREENSHOT.parent.mkdir(exist_ok=True)
                await browser.call("screenshot", path=str(SCREENSHOT), fullPage=True)

                # the polling fallback shows the same data
                await browser.call(
                    "goto", url=f"{base}/dashboard/?usecase={usecase}&transport=poll"
                )
                await browser.wait_for(
                    f"dashboard.mode === 'poll' && dashboard.updates >= 2"
                    f" && dashboard.points.cumulative > {before}"
                )
                assert await browser.call("problems") == []
    finally:
        for beat in beats:
            await beat.stop()
        await redis.delete(*(beat.key for beat in beats))
        keys = [key async for key in redis.scan_iter(match=f"{UseCaseKeys(usecase).prefix}*")]
        if keys:
            await redis.delete(*keys)
        await influx.query(f'DROP DATABASE "{database}"')
        await elastic.indices.delete(index=f"{es_prefix}*", ignore_unavailable=True)
        await elastic.indices.delete_index_template(name=f"{es_prefix}*")
        await redis.aclose()
        await influx.close()
        await elastic.close()
    assert time.monotonic() - started < 60


async def test_dashboard_marks_only_versions_not_learnt_from_the_stream(unique: str) -> None:
    """The trainer publishes a `stream` version about every second: those are no events (a
    classical or retrain version is); the model panel shows the newest version's positions
    and lag, and each launcher's version. Versions written by the real ModelStore."""
    usecase = f"dash-{unique}"
    settings = ConnectionSettings(
        influx_db=f"{unique}_dashboard", es_url=f"http://127.0.0.1:{free_port()}"
    )
    redis = connect_redis(settings)
    store = ModelStore(redis, usecase, b"not-read-by-the-dashboard")
    dashboard = Dashboard(settings)
    launchers = [heartbeat(redis, "launcher", usecase, version) for version in (6, 7)]
    for number, beat in enumerate(launchers):
        beat.instance = f"{usecase}-launcher-{number}"
        beat.key = heartbeat_key("launcher", beat.instance)
    partition = f"{usecase}/0"

    def meta(version: int, mode: str, reason: str) -> ModelMeta:
        return ModelMeta(
            version=version,
            mode=mode,
            reason=reason,
            positions={partition: 100 * version},
            lag_records=10 * version,
        )

    try:
        await store.put(1, b"model", meta(1, "classical", "interval"))
        for version in range(2, 6):
            await store.put(version, b"model", meta(version, "stream", "stream"))
        await store.put(6, b"model", meta(6, "retrain", "alert: accuracy"))
        await store.put(7, b"model", meta(7, "stream", "stream"))
        for beat in launchers:
            await beat.start()
        snapshot = await dashboard.snapshot(usecase, 60)
        events = [event for event in snapshot["events"] if event["kind"] == "model"]
        assert [event["text"] for event in events] == [
            "v1 (classical, interval)",
            "v6 (retrain, alert: accuracy)",
        ]
        model = snapshot["model"]
        assert (model["version"], model["mode"]) == (7, "stream")
        assert (model["positions"], model["lag_records"]) == ({partition: 700}, 70)
        assert model["launchers"] == {f"{usecase}-launcher-0": 6, f"{usecase}-launcher-1": 7}
    finally:
        for beat in launchers:
            await beat.stop()
            await redis.delete(beat.key)
        keys = [key async for key in redis.scan_iter(match=f"{UseCaseKeys(usecase).prefix}*")]
        if keys:
            await redis.delete(*keys)
        await dashboard.close()
        await redis.aclose()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_dashboard_without_elasticsearch(unique: str) -> None:
    """Elasticsearch down: metrics, model and health still come; the snapshot says what failed;
    throughput falls back to the evaluator's heartbeat counters; deltas carry new points only."""
    usecase, database = f"dash-{unique}", f"{unique}_dashboard"
    settings = ConnectionSettings(influx_db=database, es_url=f"http://127.0.0.1:{free_port()}")
    sources = Dashboard(settings)
    influx = AioinfluxStore(settings)
    redis = connect_redis(settings)
    outputs = {"outputs": 1000}
    beat = heartbeat(redis, "evaluator", usecase, None, interval_s=600)  # beats when told
    beat.snapshot = lambda: {"counters": {usecase: dict(outputs)}, "model_versions": {}}
    try:
        await influx.ensure_database()
        now = int(time.time() * 1000)
        await influx.write_lines(evaluation_lines(usecase, 0, now - 5000))
        await beat.start()
        first = await sources.snapshot(usecase, 60)
        assert first["full"] and first["metrics"]["cumulative"]["accuracy"][0][0] <= now - 5000
        assert first["sources"]["elasticsearch"]["ok"] is False, first["sources"]
        assert first["sources"]["influxdb"] == {"ok": True} == first["sources"]["redis"]
        assert first["throughput"] == {"source": None, "points": []}
        assert [s["service"] for s in first["services"] if s["up"]] == ["evaluator"]
        assert first["model"] is None
        listed = await sources.usecases()
        assert {"name": usecase, "live": True, "configured": False, "metrics": True} in listed[
            "usecases"
        ]

        await asyncio.sleep(1)
        outputs["outputs"] = 1500
        await beat.beat()
        await influx.write_lines(evaluation_lines(usecase, 1, int(time.time() * 1000)))
        delta = await sources.snapshot(usecase, 60, first["cursor"])
        assert not delta["full"]
        accuracy = delta["metrics"]["cumulative"]["accuracy"]
        assert accuracy and all(t >= first["cursor"] for t, _ in accuracy), accuracy
        assert delta["throughput"]["source"] == "heartbeat"
        assert 250 < delta["throughput"]["points"][-1][1] <= 500, delta["throughput"]
    finally:
        await beat.stop()
        await redis.delete(beat.key)
        await influx.query(f'DROP DATABASE "{database}"')
        await sources.close()
        await influx.close()
        await redis.aclose()


def test_dashboard_routes(unique: str) -> None:
    """The page works under any prefix (its base is the request's path), static files cannot
    escape their folder, and a malformed use-case name is refused."""

    def get(url: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    app = FastAPI()
    app.include_router(dashboard_router(ConnectionSettings()), prefix="/ops/dashboard")
    with serve(app) as base:
        status, page = get(f"{base}/ops/dashboard")
        assert status == 200 and '<base href="/ops/dashboard/">' in page
        status, page = get(f"{base}/ops/dashboard/?usecase=x")
        assert status == 200 and '<base href="/ops/dashboard/">' in page
        assert get(f"{base}/ops/dashboard/static/dashboard.js")[0] == 200
        status, license_text = get(f"{base}/ops/dashboard/static/vendor/uplot/LICENSE")
        assert status == 200 and "MIT" in license_text
        assert get(f"{base}/ops/dashboard/static/..%2Frouter.py")[0] == 404
        assert get(f"{base}/ops/dashboard/static/%2E%2E/router.py")[0] == 404
        assert get(f"{base}/ops/dashboard/api/snapshot?usecase=a%20b")[0] == 400
        assert get(f"{base}/ops/dashboard/api/stream?usecase=..%2Fx")[0] == 400


async def test_dashboard_shows_the_leaderboard_and_a_promotion(unique: str) -> None:
    """With challengers: the leaderboard table (champion first, each model's window and
    cumulative values), the models' window chart, and the promotion as an event; a use case
    without challengers shows neither."""
    executable = chromium_path()
    usecase, database = f"dash-{unique}", f"{unique}_dashboard"
    settings = ConnectionSettings(influx_db=database, es_url=f"http://127.0.0.1:{free_port()}")
    redis = connect_redis(settings)
    influx = AioinfluxStore(settings)
    store = ModelStore(redis, usecase, b"not-read-by-the-dashboard")
    champion, challenger = "river.dummy.PriorClassifier", "HoeffdingTreeClassifier"
    try:
        await influx.ensure_database()
        board, now = LeaderboardMeasurement(usecase), int(time.time() * 1000)
        lines = []
        for i in range(20):
            t = now - (20 - i) * 3000
            for model, value in ((champion, 0.6), (challenger, 0.7 + i / 100)):
                for view in ("window", "cumulative"):
                    lines.append(
                        board.point(model, view, "accuracy", value, pairs=100 * i,
                                    role="champion" if model == champion else "challenger",
                                    evaluation=i, time_ms=t)
                    )  # fmt: skip
        await influx.write_lines(lines)
        roles = {"champion": champion, "challengers": [challenger]}
        await store.put(1, b"model", ModelMeta(version=1, mode="stream", **roles))
        promoted = ModelMeta(
            version=2,
            mode="promotion",
            reason=f"{challenger} replaces {champion}: window accuracy 0.8900 against 0.6000",
            champion=challenger,
            challengers=[champion],
            previous_champion=champion,
        )
        await store.put(2, b"model", promoted)
        app = FastAPI()
        app.include_router(dashboard_router(settings), prefix="/dashboard")
        with serve(app) as base:
            async with Browser.launch(executable) as browser:
                await browser.call("goto", url=f"{base}/dashboard?usecase={usecase}&window=300")
                await browser.wait_for(
                    "window.dashboard && dashboard.leaderboard"
                    " && dashboard.points.leaderboard >= 20"
                    " && document.querySelectorAll('#events li.model').length === 1"
                )
                shown = await browser.evaluate(
                    """({
                      hidden: document.querySelector('#leaderboard').hidden,
                      head: [...document.querySelectorAll('#leaderboard thead th')]
                        .map(c => c.textContent),
                      rows: [...document.querySelectorAll('#leaderboard tbody tr')].map(r =>
                        [...r.cells].map(c => c.textContent)),
                      note: document.querySelector('#leaderboard-note').textContent,
                      event: document.querySelector('#events li.model').textContent,
                      caption: document.querySelector('#chart-leaderboard figcaption')
                        .textContent,
                    })"""
                )
                assert not shown["hidden"], shown
                assert shown["head"] == [
                    "model", "role", "accuracy (window)", "accuracy (cumulative)"
                ], shown  # fmt: skip
                assert shown["rows"] == [
                    [challenger, "champion", "0.89", "0.89"],
                    [champion, "challenger", "0.6", "0.6"],
                ], shown
                assert shown["note"] == f"champion: {challenger}", shown
                assert f"v2 (promotion, {challenger} replaces {champion}" in shown["event"]
                assert "accuracy" in shown["caption"] and challenger in shown["caption"]
                # a use case without challengers: no leaderboard at all
                await browser.call("goto", url=f"{base}/dashboard?usecase=kdd-cup-99")
                await browser.wait_for("window.dashboard && dashboard.updates >= 1")
                assert await browser.evaluate(
                    "[document.querySelector('#leaderboard').hidden,"
                    " document.querySelector('#chart-leaderboard').hidden]"
                ) == [True, True]
                assert await browser.call("problems") == []
    finally:
        keys = [key async for key in redis.scan_iter(match=f"{UseCaseKeys(usecase).prefix}*")]
        if keys:
            await redis.delete(*keys)
        await influx.query(f'DROP DATABASE "{database}"')
        await redis.aclose()
        await influx.close()


async def test_dashboard_shows_the_reliability_table(unique: str) -> None:
    """With a calibration metric: the newest reliability table of the window and cumulative
    views, bin by bin (an older evaluation's bin left out), a large gap marked; a use case
    without one shows no table."""
    executable = chromium_path()
    usecase, database = f"dash-{unique}", f"{unique}_dashboard"
    settings = ConnectionSettings(influx_db=database, es_url=f"http://127.0.0.1:{free_port()}")
    influx = AioinfluxStore(settings)
    try:
        await influx.ensure_database()
        table, now = ReliabilityMeasurement(usecase), int(time.time() * 1000)

        def row(number: int, count: int, confidence: float, frequency: float) -> dict:
            return {"bin": number, "lower": number / 10, "upper": (number + 1) / 10,
                    "count": count, "confidence": confidence, "frequency": frequency}  # fmt: skip

        lines = [
            # evaluation 1 had a window bin 3 that evaluation 2 no longer has
            table.point("window", "calibration_error", row(3, 2, 0.35, 0.5), 1, now - 6000),
            table.point("window", "calibration_error", row(9, 10, 0.95, 0.9), 1, now - 6000),
            table.point("window", "calibration_error", row(9, 12, 0.96, 0.75), 2, now - 3000),
            table.point("cumulative", "calibration_error", row(3, 2, 0.35, 0.5), 2, now - 3000),
            table.point("cumulative", "calibration_error", row(9, 22, 0.955, 0.8), 2, now - 3000),
        ]
        await influx.write_lines(lines)
        app = FastAPI()
        app.include_router(dashboard_router(settings), prefix="/dashboard")
        with serve(app) as base:
            async with Browser.launch(executable) as browser:
                await browser.call("goto", url=f"{base}/dashboard?usecase={usecase}&window=300")
                await browser.wait_for("window.dashboard && dashboard.reliability")
                shown = await browser.evaluate(
                    """({
                      hidden: document.querySelector('#reliability').hidden,
                      head: [...document.querySelectorAll('#reliability thead th')]
                        .map(c => c.textContent),
                      rows: [...document.querySelectorAll('#reliability tbody tr')].map(r =>
                        [...r.cells].map(c => c.textContent)),
                      far: [...document.querySelectorAll('#reliability td.far')]
                        .map(c => c.textContent),
                      note: document.querySelector('#reliability-note').textContent,
                    })"""
                )
                assert not shown["hidden"], shown
                assert shown["head"] == [
                    "probability",
                    "records (window)", "mean probability (window)", "observed (window)",
                    "gap (window)",
                    "records (cumulative)", "mean probability (cumulative)",
                    "observed (cumulative)", "gap (cumulative)",
                ], shown  # fmt: skip
                assert shown["rows"] == [
                    ["0.3–0.4", "–", "–", "–", "–", "2", "0.35", "0.5", "0.15"],
                    ["0.9–1", "12", "0.96", "0.75", "0.21", "22", "0.955", "0.8", "0.155"],
                ], shown
                assert shown["far"] == ["0.15", "0.21", "0.155"], shown
                assert shown["note"] == "calibration_error · evaluation 2", shown
                await browser.call("goto", url=f"{base}/dashboard?usecase=kdd-cup-99")
                await browser.wait_for("window.dashboard && dashboard.updates >= 1")
                assert await browser.evaluate("document.querySelector('#reliability').hidden")
                assert await browser.call("problems") == []
    finally:
        await influx.query(f'DROP DATABASE "{database}"')
        await influx.close()
