"""`streamer run` and `streamer status` on the real services: a tiny KDD use case flows through
the whole pipeline started by `run`, `status` sees it, SIGTERM stops everything in order and
leaves no process behind."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.supervisor import STOP_ORDER
from services.supervisor_status import gather_health
from shared.clients.redis import connect_redis
from shared.wire.keys import heartbeat_key
from tests.integration.pipeline_helpers import (
    REPO,
    collect_outputs,
    kdd_slice,
    make_kdd_usecase,
    service_env,
)

ROWS = 2000


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def supervisor_lines(log: Path) -> list[dict]:
    lines = []
    for line in log.read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("logger") == "supervisor":
            lines.append(record)
    return lines


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes that contain `text` (children, grandchildren, ...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{entry.name}: {cmdline}")
    return found


async def streamer_status(url: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "status",
        "--url",
        url,
        cwd=REPO,
        env={**env, "COLUMNS": "250"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return subprocess.CompletedProcess([], process.returncode, out.decode(), err.decode())


@pytest.mark.parametrize("api_port_taken", [False, True], ids=["api-up", "api-port-taken"])
async def test_streamer_run_flows_records_and_stops_everything_on_sigterm(
    tmp_path, data_dir, kafka_bootstrap, unique, api_port_taken
):
    """With the api's port taken, the api fails at every start: `run` gives it up and keeps
    the pipeline going, and `status` falls back to Redis (a sidecar that is not implemented
    yet fails the same way)."""
    datafile = kdd_slice(data_dir, ROWS, tmp_path / "kdd.csv")
    folder = make_kdd_usecase(tmp_path, unique, datafile)
    env = {**service_env(unique), "PYTHONPATH": str(REPO)}
    del env["STREAMER_MODEL_SECRET"]  # `run` makes one for its children
    with contextlib.ExitStack() as stack:
        port = free_port()
        if api_port_taken:  # listens, never answers
            squatter = stack.enter_context(socket.create_server(("127.0.0.1", port)))
            assert squatter.getsockname()[1] == port
        await run_and_stop(tmp_path, folder, env, port, kafka_bootstrap, unique, api_port_taken)


async def run_and_stop(
    tmp_path: Path,
    folder: Path,
    env: dict[str, str],
    port: int,
    kafka_bootstrap: str,
    unique: str,
    api_port_taken: bool,
) -> None:
    workdir = tmp_path / "run"  # the evaluator writes its log files under the working dir
    workdir.mkdir()
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        run = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            "run",
            str(folder),
            "--port",
            str(port),
            "--stop-timeout",
            "60",
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        expected = {f"kdd:{line}" for line in range(1, ROWS + 1)}
        outputs = await collect_outputs(kafka_bootstrap, f"{unique}.outputs", expected, 180)
        assert expected <= {o["record_id"] for o in outputs}, log.read_text()[-4000:]

        if api_port_taken:
            await wait_for_line(log, "api exited with code 3: giving up after 5", 240)
        # the sidecar (or, without it, Redis) shows this run's services up
        deadline = time.monotonic() + 90
        while True:
            status = await streamer_status(f"http://127.0.0.1:{port}/health", env)
            if (status.returncode == 0 and unique in status.stdout) or time.monotonic() > deadline:
                break
            await asyncio.sleep(2)
        assert status.returncode == 0 and unique in status.stdout, (status, log.read_text()[-4000:])
        print(f"streamer status: {status.stderr.strip() or 'from the sidecar'}\n{status.stdout}")
        assert ("heartbeats read from Redis" in status.stderr) == api_port_taken, status.stderr

        run.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(run.wait(), 300)
    finally:
        if run.returncode is None:  # a failed assertion: stop the children too (each has its
            run.send_signal(signal.SIGTERM)  # own process group: only `run` can reach them)
            try:
                await asyncio.wait_for(run.wait(), 90)
            except TimeoutError:
                os.killpg(run.pid, signal.SIGKILL)
                await run.wait()
    lines = supervisor_lines(log)
    messages = [line["msg"] for line in lines]
    assert code == 0, log.read_text()[-6000:]
    assert any("STREAMER_MODEL_SECRET is not set: generated one" in m for m in messages)
    assert "producer finished (exit code 0)" in messages
    assert any(m.startswith("all children stopped cleanly") for m in messages)

    stopped = [m.split()[1] for m in messages if m.startswith("stopping ") and "(SIGTERM)" in m]
    assert stopped == [name for name in STOP_ORDER if name in stopped]  # in pipeline order
    gave_up = [m for m in messages if "giving up" in m]
    # without a working api (port taken, or not implemented yet where this runs), the api
    # alone is given up; the others run on and stop cleanly
    assert all(m.startswith("api ") for m in gave_up), gave_up
    assert bool(gave_up) >= api_port_taken
    assert stopped == ["launcher", "trainer", "evaluator"] + ([] if gave_up else ["api"])
    if gave_up:
        print(f"the api was given up: {gave_up}")

    pids = {line["pid"] for line in lines if line["msg"].endswith(" started")}
    assert len(pids) >= 5
    for pid in pids:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            continue
        raise AssertionError(f"child {pid} still runs")
    assert processes_mentioning(str(folder)) == []
    assert processes_mentioning(f"--port {port}") == []


async def wait_for_line(log: Path, text: str, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while text not in (content := await asyncio.to_thread(log.read_text)):
        assert time.monotonic() < deadline, f"no {text!r} in {content[-4000:]}"
        await asyncio.sleep(1)


async def test_status_reads_the_heartbeats_from_redis_without_the_sidecar(connections, unique):
    redis = connect_redis(connections)
    beat = {
        "service": "trainer",
        "instance": unique,
        "usecases": [unique],
        "status": "running",
        "started_at": time.time() - 60,
        "updated_at": time.time(),
        "counters": {unique: {"trainings": 4}},
        "model_versions": {unique: 7},
        "last_error": None,
    }
    key = heartbeat_key("trainer", unique)
    await redis.set(key, json.dumps(beat), ex=30)
    try:
        health = await gather_health(f"http://127.0.0.1:{free_port()}/health", connections)
    finally:
        await redis.delete(key)
        await redis.aclose()
    assert health.source == "redis" and "heartbeats read from Redis" in health.note
    # the rows are shared.health.InstanceHealth now: the heartbeat as written, plus up/age
    rows = [row.model_dump(include=set(beat)) for row in health.instances if row.instance == unique]
    assert rows == [beat]


async def test_status_exits_1_naming_redis_when_neither_answers(tmp_path):
    closed = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "STREAMER_REDIS_URL": f"redis://127.0.0.1:{closed}/0",
    }
    status = await streamer_status(f"http://127.0.0.1:{closed}/health", env)
    assert status.returncode == 1
    assert f"Redis at redis://127.0.0.1:{closed}/0 is not reachable" in status.stderr
