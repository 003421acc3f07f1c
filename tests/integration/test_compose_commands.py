"""Every STREAMER container of compose/docker-compose.yml, run on this machine: the Dockerfile's
ENTRYPOINT and WORKDIR with the Compose service's command and environment, interpolated from
the compose/.env that `make up` writes. Only what the container network provides is remapped:
the backing services' host names to the local services, each mount point to the folder it
mounts, the API's port to a free one; the local services run without credentials, so those are
left out (authentication is tested in test_influx_auth.py and by the Compose checks).

Each must start and pass its own Compose healthcheck; the launcher runs twice (as with
`--scale launcher=2`) and both share the records; the producer ends cleanly after its file; the
API answers /health; SIGTERM stops every one with exit status 0."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from scripts.compose_env import parse, write_env_file
from shared.clients.influx import AioinfluxStore
from shared.clients.redis import connect_redis
from shared.config import ConnectionSettings
from shared.heartbeat import read_heartbeats
from shared.wire.influx import RECORD_ID, RecordsMeasurement
from tests.compose_file import (
    STREAMER_SERVICES,
    compose,
    dockerfile_instructions,
    exec_form,
    final_stage,
)
from tests.integration.pipeline_helpers import kdd_slice

pytestmark = pytest.mark.integration

ROWS = 4000
#: Container values that name the container network's services, replaced by the local ones.
ADDRESSES = (
    "STREAMER_KAFKA_BOOTSTRAP",
    "STREAMER_REDIS_URL",
    "STREAMER_INFLUX_URL",
    "STREAMER_ES_URL",
)
CREDENTIALS = (
    "STREAMER_REDIS_PASSWORD",
    "STREAMER_INFLUX_USER",
    "STREAMER_INFLUX_PASSWORD",
    "STREAMER_ES_USER",
    "STREAMER_ES_PASSWORD",
)
HEALTHY_WITHIN_S = 90  # the services' start_period


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Container:
    """One container's process on this machine."""

    name: str
    argv: list[str]
    health_argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT
            )

    def healthcheck(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.health_argv,
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=20,
        )

    def tail(self) -> str:
        return f"--- {self.name} ({' '.join(self.argv)}):\n{self.log.read_text()[-3000:]}"


def streamer_executable() -> str:
    beside = Path(sys.executable).parent / "streamer"
    found = str(beside) if beside.exists() else shutil.which("streamer")
    if not found:
        pytest.fail("the `streamer` command is missing: pip install -e .")
    return found


def containers(root: Path, usecase: str, connections: ConnectionSettings) -> list[Container]:
    """Each STREAMER service of the Compose file as a local process (module docstring)."""
    env_file = root / ".env"
    data = root / "data"
    write_env_file(env_file, {"USECASES": usecase, "STREAMER_DATA_DIR": str(data)})
    document = compose(parse(env_file.read_text()))
    runtime = dict(final_stage(dockerfile_instructions()))
    entrypoint = exec_form(runtime["ENTRYPOINT"])
    assert entrypoint[0] == "streamer"
    workdir = Path(runtime["WORKDIR"])
    app = root / "app"
    local = {
        "STREAMER_KAFKA_BOOTSTRAP": connections.kafka_bootstrap_or("127.0.0.1:19092"),
        "STREAMER_REDIS_URL": connections.redis_url,
        "STREAMER_INFLUX_URL": connections.influx_url,
        "STREAMER_ES_URL": connections.es_url,
    }
    base_env = {key: value for key, value in os.environ.items() if not key.startswith("STREAMER_")}
    made = []
    for name in STREAMER_SERVICES:
        service = document["services"][name]
        mounts = {}  # container path -> folder here
        for volume in service["volumes"]:
            source, target = volume.split(":")[:2]
            if source.startswith("."):  # ../usecases: this test's own use-case folder
                mounts[target] = app / "usecases"
            elif source.startswith("/"):
                mounts[target] = Path(source)
            else:  # a named volume
                mounts[target] = root / "volumes" / source
        env = dict(base_env, PYTHONUNBUFFERED="1")
        for key, value in service["environment"].items():
            value = str(value)
            if key in CREDENTIALS:
                continue
            if key in ADDRESSES:
                value = local[key]
            for target, folder in mounts.items():
                if value == target or value.startswith(f"{target}/"):
                    value = str(folder) + value[len(target) :]
            env[key] = value
        env["STREAMER_INFLUX_DB"] = f"{usecase}_compose"  # this test's own database
        command = [str(part) for part in service["command"]]
        if "--port" in command:  # the container's port, published elsewhere: a free one here
            command[command.index("--port") + 1] = str(free_port())
        executable = streamer_executable()
        check = service["healthcheck"]["test"]
        assert check[0] == "CMD" and check[1] == "streamer"
        for folder in mounts.values():
            folder.mkdir(parents=True, exist_ok=True)
        cwd = mounts.get(str(workdir), app)
        # logs/ of WORKDIR is the streamer-logs volume in Compose
        if f"{workdir}/logs" in mounts:
            with contextlib.suppress(FileExistsError):
                (cwd / "logs").symlink_to(mounts[f"{workdir}/logs"])
        made.append(
            Container(
                name,
                [executable, *entrypoint[1:], *command],
                [executable, *check[2:]],
                env,
                cwd,
                root / f"{name}.log",
            )
        )
    return made


def write_usecase(root: Path, usecase: str, data_dir: Path) -> None:
    """A KDD use case in the mounted use-case folder, its data file in the mounted data folder,
    referred to through ${STREAMER_DATA_DIR} as in usecases/kdd-cup-99."""
    folder = root / "app" / "usecases" / usecase
    folder.mkdir(parents=True)
    (root / "data").mkdir(exist_ok=True)
    kdd_slice(data_dir, ROWS, root / "data" / "kdd.csv")
    (folder / "streaming.props").write_text(
        f"datafile=${{STREAMER_DATA_DIR}}/kdd.csv\nproblem.type=KDDClassification\n"
        f"mainTopic={usecase}\noutputTopic={usecase}.outputs\n"
        "producerType=BLOCK\nrecordsPerBlock=100\nproducerTimeInterval=50\n"
        "readingTimeInterval=100\n"
    )
    (folder / "algs.props").write_text(
        "algorithm=HoeffdingTreeClassifier\ntraining.interval=2000\ntraining.maxdata=-1\n"
    )


def wait_healthy(container: Container, deadline: float) -> str:
    while True:
        assert container.process is not None
        if container.process.poll() is not None:
            raise AssertionError(
                f"{container.name} exited {container.process.returncode}\n" + container.tail()
            )
        result = container.healthcheck()
        if result.returncode == 0:
            return result.stdout.strip()
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{container.name} not healthy: {result.stdout}\n" + container.tail()
            )
        time.sleep(1)


@contextlib.contextmanager
def running(group: list[Container]) -> Iterator[None]:
    try:
        yield
    finally:
        for container in group:
            if container.process and container.process.poll() is None:
                container.process.kill()
                container.process.wait()


def stop(container: Container, timeout_s: float = 40) -> int:
    """SIGTERM, as `docker stop` sends; the container's stop_grace_period is 40 s."""
    assert container.process is not None
    if container.process.poll() is None:
        container.process.send_signal(signal.SIGTERM)
    try:
        return container.process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        container.process.kill()
        container.process.wait()
        raise AssertionError(f"{container.name} ignored SIGTERM\n{container.tail()}") from None


async def launcher_records(redis: Any, usecase: str, pids: set[int]) -> dict[int, int]:
    counts = {}
    for beat in await read_heartbeats(redis):
        pid = int(beat.instance.rsplit("-", 1)[1])
        if beat.service == "launcher" and pid in pids:
            counts[pid] = beat.counters.get(usecase, {}).get("records", 0)
    return counts


async def test_each_container_command_starts_and_becomes_healthy_here(
    tmp_path: Path, data_dir: Path, connections: ConnectionSettings, unique: str
) -> None:
    usecase = f"compose-{unique}"
    write_usecase(tmp_path, usecase, data_dir)
    made = {c.name: c for c in containers(tmp_path, usecase, connections)}
    second = Container(
        **{
            **made["launcher"].__dict__,
            "name": "launcher-2",
            "log": tmp_path / "launcher-2.log",
            "process": None,
        }
    )
    launchers = [made["launcher"], second]
    first_wave = [*launchers, made["trainer"], made["evaluator"], made["api"]]
    redis = connect_redis(connections)
    influx = AioinfluxStore(connections, database=f"{usecase}_compose")
    everything = [*first_wave, made["producer"]]
    try:
        with running(everything):
            for container in first_wave:
                container.start()
            deadline = time.monotonic() + HEALTHY_WITHIN_S
            health = {c.name: wait_healthy(c, deadline) for c in first_wave}
            assert "running" in health["launcher"] and "running" in health["api"], health
            # the producer waits for a healthy launcher, as depends_on says
            made["producer"].start()
            assert made["producer"].process is not None
            await asyncio.to_thread(made["producer"].process.wait, 60)
            assert made["producer"].process.returncode == 0, made["producer"].tail()

            pids = {c.process.pid for c in launchers if c.process}
            async with asyncio.timeout(60):
                while sum((counts := await launcher_records(redis, usecase, pids)).values()) < ROWS:  # noqa: ASYNC110
                    await asyncio.sleep(0.5)
            assert len(counts) == 2 and all(counts.values()), counts  # both launchers worked
            # every record stored once (a rebalance may replay a batch: the sink keys on offsets)
            rows = await influx.query(
                f'SELECT COUNT("{RECORD_ID}") FROM "{RecordsMeasurement(usecase).name}"'
            )
            assert rows[0]["count"] == ROWS, rows

            port = made["api"].argv[made["api"].argv.index("--port") + 1]
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.get(f"http://127.0.0.1:{port}/health")
            body = answer.json()
            assert answer.status_code == 200 and body["status"] == "ok", body
            assert body["usecases"] == [usecase]

            # docker stop: SIGTERM, in the pipeline's order
            codes = {
                c.name: stop(c)
                for c in [*launchers, made["trainer"], made["evaluator"], made["api"]]
            }
            assert set(codes.values()) == {0}, (codes, [c.tail() for c in first_wave])
    finally:
        keys = [key async for key in redis.scan_iter(match=f"streamer:{usecase}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()
        with contextlib.suppress(Exception):
            await influx.query(f'DROP DATABASE "{usecase}_compose"')
        await influx.close()
