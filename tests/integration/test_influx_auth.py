"""InfluxDB with authentication on, as Compose runs it (influxdb:1.8 with
INFLUXDB_HTTP_AUTH_ENABLED): the services sign in as a user that is not an admin and owns one
database made at the first start. A second, real influxd is started here with auth on (the
one of `make services` runs without)."""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from aioinflux.client import InfluxDBError

from shared.clients.influx import AioinfluxStore
from shared.clients.line_protocol import encode_point
from shared.config import ConnectionSettings

ADMIN, ADMIN_PASSWORD = "admin", "admin-secret"
USER, PASSWORD = "streamer", "user-secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def influxql(url: str, statement: str, auth: tuple[str, str] | None = None) -> bytes:
    headers = {}
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    request = urllib.request.Request(
        f"{url}/query",
        data=urllib.parse.urlencode({"q": statement}).encode(),
        headers=headers,
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


@pytest.fixture(scope="module")
def influx_with_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An influxd with auth on, initialised like the influxdb:1.8 image does from its
    INFLUXDB_* variables: an admin, a database, a user with ALL on that database only."""
    influxd = shutil.which("influxd")
    if not influxd:
        pytest.fail("influxd missing: `make services` installs it")
    folder: Path = tmp_path_factory.mktemp("influx-auth")
    http, rpc = free_port(), free_port()
    (folder / "influxdb.conf").write_text(
        f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n'
        f'[meta]\n  dir = "{folder}/meta"\n'
        f'[data]\n  dir = "{folder}/data"\n  wal-dir = "{folder}/wal"\n'
        "[monitor]\n  store-enabled = false\n"
        f'[http]\n  bind-address = "127.0.0.1:{http}"\n  auth-enabled = true\n'
    )
    with (folder / "influxd.log").open("wb") as log:
        process = subprocess.Popen(
            [influxd, "-config", str(folder / "influxdb.conf")],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    url = f"http://127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/ping", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    pytest.fail(f"influxd with auth did not start: {folder / 'influxd.log'}")
                time.sleep(0.2)
        # with auth on and no user yet, InfluxDB accepts exactly this: the first admin
        influxql(url, f"CREATE USER {ADMIN} WITH PASSWORD '{ADMIN_PASSWORD}' WITH ALL PRIVILEGES")
        admin = (ADMIN, ADMIN_PASSWORD)
        influxql(url, 'CREATE DATABASE "streamer"', admin)
        influxql(url, f"CREATE USER {USER} WITH PASSWORD '{PASSWORD}'", admin)
        influxql(url, f'GRANT ALL ON "streamer" TO "{USER}"', admin)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def settings(url: str, user: str = USER, password: str = PASSWORD) -> ConnectionSettings:
    return ConnectionSettings(
        influx_url=url, influx_user=user, influx_password=password, influx_db="streamer"
    )


async def test_a_user_without_admin_rights_uses_its_database(influx_with_auth: str) -> None:
    store = AioinfluxStore(settings(influx_with_auth))
    try:
        await store.ensure_database()  # may not CREATE DATABASE: checks it can use it instead
        await store.write_lines([encode_point("kdd", {"source": "a"}, {"f": 1.5}, 1_000)])
        rows = await store.query('SELECT "f" FROM "kdd"')
        assert [row["f"] for row in rows] == [1.5]
    finally:
        await store.close()


async def test_a_database_the_user_cannot_reach_is_named_in_the_error(
    influx_with_auth: str,
) -> None:
    store = AioinfluxStore(settings(influx_with_auth), database="elsewhere")
    try:
        with pytest.raises(InfluxDBError, match=r"'elsewhere'.*GRANT ALL"):
            await store.ensure_database()
    finally:
        await store.close()


async def test_a_wrong_password_is_refused_clearly(influx_with_auth: str) -> None:
    store = AioinfluxStore(settings(influx_with_auth, password="wrong"))
    try:
        with pytest.raises(InfluxDBError, match="authorization failed"):
            await asyncio.wait_for(store.ensure_database(), 10)
    finally:
        await store.close()
