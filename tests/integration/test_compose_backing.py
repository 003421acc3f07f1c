"""The Compose Redis and InfluxDB containers' commands and healthchecks, run here for real in a
private network namespace (`unshare -n`: its own loopback, so the containers' fixed ports 6379
and 8086 collide with nothing on this machine) and PID namespace (whatever the service started
ends with it, as in a container). Redis runs the exact `command` of the Compose
file with its environment; InfluxDB runs influxd (the image's command) with the service's
INFLUXDB_* environment, which influxd reads as configuration; only the data folders are
remapped, as their volumes would be. Each must pass its own Compose healthcheck, and both must
refuse a client without credentials. (Kafka: test_compose_kafka.py; ours:
test_compose_commands.py; InfluxDB's user setup: test_influx_auth.py.)"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts.compose_env import parse, write_env_file
from tests.compose_file import compose

pytestmark = pytest.mark.integration

#: Runs inside the namespace: loopback up, the service in the background, its healthcheck
#: polled (up to 30 s), then `$PROBE`; prints HEALTHY or UNHEALTHY and the probe's output.
NAMESPACE_SCRIPT = """
ip link set lo up
cd "$WORKDIR"
sh -c "$SERVICE" > service.log 2>&1 &
service=$!
healthy=UNHEALTHY
for _ in $(seq 60); do
  if sh -c "$HEALTHCHECK" > /dev/null 2>&1; then healthy=HEALTHY; break; fi
  sleep 0.5
done
echo "$healthy"
sh -c "$PROBE" 2>&1
kill "$service"; wait "$service" 2> /dev/null
exit 0
"""


def compose_services(tmp_path: Path) -> dict:
    env_file = tmp_path / ".env"
    write_env_file(env_file, {"USECASES": "x", "STREAMER_DATA_DIR": str(tmp_path)})
    return compose(parse(env_file.read_text()))["services"]


def in_namespace(
    service: str, healthcheck: list[str], probe: str, env: dict[str, str], workdir: Path
) -> str:
    if not shutil.which("unshare") or not shutil.which("ip"):
        pytest.fail("unshare and ip are needed (util-linux, iproute2)")
    assert healthcheck[0] == "CMD-SHELL", healthcheck
    result = subprocess.run(
        ["unshare", "--net", "--pid", "--fork", "sh", "-c", NAMESPACE_SCRIPT],
        env={
            "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            **env,
            "WORKDIR": str(workdir),
            "SERVICE": service,
            "HEALTHCHECK": healthcheck[1],
            "PROBE": probe,
        },
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + (workdir / "service.log").read_text()[-2000:]


def test_the_redis_container_command_requires_its_password_and_is_healthy(
    tmp_path: Path,
) -> None:
    redis = compose_services(tmp_path)["redis"]
    environment = {key: str(value) for key, value in redis["environment"].items()}
    command = shlex.join(redis["command"])  # ["sh", "-c", "exec redis-server ..."], as is
    assert "$REDIS_PASSWORD" in command  # the password comes from the environment only
    output = in_namespace(
        command,
        redis["healthcheck"]["test"],
        "redis-cli ping; redis-cli config get appendonly",  # no credentials
        environment,
        tmp_path,
    )
    assert output.startswith("HEALTHY"), output
    assert "NOAUTH Authentication required" in output, output


def test_the_influxdb_container_is_healthy_with_authentication_on(tmp_path: Path) -> None:
    influxdb = compose_services(tmp_path)["influxdb"]
    environment = {key: str(value) for key, value in influxdb["environment"].items()}
    assert environment["INFLUXDB_HTTP_AUTH_ENABLED"] == "true"
    # the influxdb-data volume (/var/lib/influxdb in the image) is a folder here
    for part in ("meta", "data", "wal"):
        environment[f"INFLUXDB_{part.upper()}_DIR"] = str(tmp_path / part)
    environment["INFLUXDB_BIND_ADDRESS"] = "127.0.0.1:8088"
    output = in_namespace(
        "exec influxd",
        influxdb["healthcheck"]["test"],
        "curl -s -o /dev/null -w 'query without credentials: HTTP %{http_code}\\n' "
        "'http://localhost:8086/query?q=SHOW+DATABASES'",
        environment,
        tmp_path,
    )
    assert output.startswith("HEALTHY"), output
    assert re.search(r"query without credentials: HTTP 40[13]", output), output  # refused
