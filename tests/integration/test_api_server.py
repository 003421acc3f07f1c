"""`streamer api` as a real process on a loopback port, called over real HTTP: it serves, takes
a change with its token, and stops cleanly (exit status 0) on SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from shared.clients.redis import connect_redis
from tests.integration.test_api import TOKEN, cleanup, make_usecase

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def output(log: Path) -> str:
    """What the process printed (for failure messages; small, read once)."""
    return log.read_text()


def start_api(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        return subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)


async def wait_until_serving(
    client: httpx.AsyncClient, process: subprocess.Popen, log: Path, wait_s: float = 30.0
) -> httpx.Response:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"streamer api exited: {output(log)}"
        try:
            return await client.get("/health")
        except httpx.TransportError:
            await asyncio.sleep(0.2)
    raise AssertionError(f"streamer api did not answer within {wait_s} s: {output(log)}")


async def test_streamer_api_serves_over_http_and_stops_on_sigterm(tmp_path, connections, unique):
    usecases_dir = tmp_path / "usecases"
    make_usecase(usecases_dir, unique)
    settings = connections.model_copy(update={"influx_db": unique, "usecases_dir": usecases_dir})
    port, log = free_port(), tmp_path / "api.log"
    env = {
        **os.environ,
        "STREAMER_USECASES_DIR": str(usecases_dir),
        "STREAMER_INFLUX_DB": unique,
        "MY_API_TOKEN": TOKEN,
        "PYTHONPATH": str(REPO),
    }
    command = [sys.executable, "-m", "services.cli", "api", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--token-env", "MY_API_TOKEN", "--usecase", unique]
    process = start_api(command, env, log)
    redis = connect_redis(settings)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            health = await wait_until_serving(client, process, log)
            assert health.status_code == 503  # nothing runs for the use case
            assert health.json()["usecases"] == [unique]
            response = await client.patch(
                f"/usecases/{unique}/config",
                json={"training.interval": 1500},
                headers={"Authorization": f"Bearer {TOKEN}".encode()},
            )
            assert response.status_code == 200, response.text
            config = (await client.get(f"/usecases/{unique}/config")).json()
            assert config["overrides"] == {"training.interval": "1500"}
            assert (await client.get("/docs")).status_code == 200
            metrics = (await client.get("/metrics")).text
            assert 'route="/usecases/{name}/config",status="200"' in metrics
        beats = [key async for key in redis.scan_iter(f"streamer:heartbeat:api:*-{process.pid}")]
        assert len(beats) == 1, "the API writes its own heartbeat"

        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 20) == 0, output(log)
        last = json.loads(await redis.get(beats[0]))
        assert last["status"] == "stopping"
        await redis.delete(beats[0])
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        await redis.aclose()
        await cleanup(settings, unique)
