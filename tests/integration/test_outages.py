"""Redis, InfluxDB and Elasticsearch going away while a use case streams: every service (producer,
launcher, trainer, evaluator, api) rides the outages out, says each once when it starts and
once when it ends, shows it in its heartbeat meanwhile, and not a record is lost or doubled.

The services reach the three through TCP proxies (tests/integration/tcp_proxy.py) that the test
closes and reopens, with the real servers behind them; the test reads Redis directly. Kafka's
outage (a broker restart) is in test_chaos.py, on a private broker. Each outage here lasts
OUTAGE_S; the retry policy has no time limit inside a service (tests/unit/test_retry.py), so
the two minutes of issue 10 are the same case, only slower.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import socket
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

from shared.clients.redis import connect_redis
from shared.heartbeat import read_heartbeats
from shared.wire.keys import heartbeat_pattern
from tests.integration.pipeline_helpers import (
    cli_process,
    collect_outputs,
    kdd_slice,
    make_kdd_usecase,
    service,
    service_env,
)
from tests.integration.tcp_proxy import TcpProxy

ROWS = 6_000
OUTAGE_S = 10.0
SERVICES = ("launcher", "trainer", "evaluator")


def proxy_to(url: str, default_port: int) -> TcpProxy:
    address = urlsplit(url)
    return TcpProxy(address.hostname or "127.0.0.1", address.port or default_port)


async def outages_reported(redis, usecase: str, backing: str, services: tuple[str, ...]) -> bool:
    """Each of `services` of `usecase` has `backing` in its heartbeat's outages."""
    beats = await read_heartbeats(redis, heartbeat_pattern())
    reporting = {
        beat.service for beat in beats if usecase in beat.usecases and backing in beat.outages
    }
    return set(services) <= reporting


async def wait_for(condition, within_s: float, what: str) -> None:
    try:
        async with asyncio.timeout(within_s):
            while True:  # polling Redis: no event to wait on
                if await condition():
                    return
                await asyncio.sleep(0.2)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def log_entries(log: Path) -> list[dict]:
    entries = []
    for line in log.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            entries.append(json.loads(line))
    return entries


async def test_every_service_rides_out_redis_influxdb_and_elasticsearch_outages(
    tmp_path, data_dir, connections, kafka_bootstrap, unique
):
    redis_proxy = proxy_to(connections.redis_url, 6379)
    influx_proxy = proxy_to(connections.influx_url, 8086)
    es_proxy = proxy_to(connections.es_url, 9200)
    for proxy in (redis_proxy, influx_proxy, es_proxy):
        await proxy.start()
    redis_url = connections.redis_url.replace(
        f":{urlsplit(connections.redis_url).port}", f":{redis_proxy.port}"
    )
    env = {
        **service_env(unique),
        "STREAMER_REDIS_URL": redis_url,
        "STREAMER_INFLUX_URL": influx_proxy.url,
        "STREAMER_ES_URL": es_proxy.url,
    }
    datafile = kdd_slice(data_dir, ROWS, tmp_path / "kdd.csv")
    folder = make_kdd_usecase(
        tmp_path,
        unique,
        datafile,
        extra="producerType=BLOCK\nrecordsPerBlock=100\nproducerTimeInterval=1000\n"
        "visualization=true\n",
    )
    logs = {name: tmp_path / f"{name}.log" for name in (*SERVICES, "producer", "api")}
    redis = connect_redis(connections)
    expected = {f"kdd:{line}" for line in range(1, ROWS + 1)}
    try:
        with (
            service("launch", folder, env, logs["launcher"]) as launcher,
            service("train", folder, env, logs["trainer"]) as trainer,
            service("evaluate", folder, env, logs["evaluator"]) as evaluator,
            api_process(env, logs["api"], unique) as api,
            service("produce", folder, env, logs["producer"]) as producer,
        ):
            processes = {"launcher": launcher, "trainer": trainer, "evaluator": evaluator}
            processes |= {"api": api}
            alive = dict.fromkeys(processes)

            # each outage while the stream flows, so the service that needs it notices it
            for proxy, backing, noticing, first in (
                (influx_proxy, "InfluxDB", "launcher", "kdd:500"),
                (es_proxy, "Elasticsearch", "evaluator", "kdd:1500"),
                (redis_proxy, "Redis", None, "kdd:2500"),
            ):
                await collect_outputs(kafka_bootstrap, f"{unique}.outputs", {first}, 90)
                await proxy.stop()
                if noticing is not None:  # (Redis away: nobody can write a heartbeat)
                    await wait_for(
                        lambda b=backing, n=noticing: outages_reported(redis, unique, b, (n,)),
                        30,
                        f"the {backing} outage in the {noticing}'s heartbeat",
                    )
                await asyncio.sleep(OUTAGE_S)
                assert {name: p.poll() for name, p in processes.items()} == alive, backing
                assert producer.poll() in (None, 0), backing  # it ends once its file is sent
                await proxy.start()
                await wait_for(
                    lambda b=backing: no_outage(redis, unique, (b,)),
                    60,
                    f"the end of the {backing} outage in the heartbeats",
                )

            outputs = await collect_outputs(kafka_bootstrap, f"{unique}.outputs", expected, 180)
            assert {name: p.poll() for name, p in processes.items()} == alive
            assert producer.wait(60) == 0
            # stopping the services below blocks this loop, and with it the proxies: what
            # they log from then on is no outage of this test's
            done = datetime.now(UTC).isoformat(timespec="milliseconds")
    finally:
        await redis.aclose()
        for proxy in (redis_proxy, influx_proxy, es_proxy):
            await proxy.stop()

    ids = collections.Counter(output["record_id"] for output in outputs)
    assert expected - set(ids) == set()
    assert [rid for rid, count in ids.items() if count > 1] == []
    for name, log in logs.items():
        lines = [
            entry
            for entry in log_entries(log)
            if entry["logger"] == "streamer.outage" and entry["ts"] <= done
        ]
        for backing in {entry["backing"] for entry in lines}:
            started = [e for e in lines if e["backing"] == backing and e["level"] == "warning"]
            ended = [e for e in lines if e["backing"] == backing and e["level"] == "info"]
            # once when it starts and once when it ends, per outage (at most two here)
            assert 1 <= len(started) <= 2 and len(ended) == len(started), (name, backing, lines)
    said = {
        name: {entry["backing"] for entry in log_entries(log) if "backing" in entry}
        for name, log in logs.items()
    }
    assert {"InfluxDB", "Redis"} <= said["launcher"], said
    assert {"Elasticsearch", "Redis"} <= said["evaluator"], said


async def no_outage(redis, usecase: str, backings: tuple[str, ...]) -> bool:
    beats = await read_heartbeats(redis, heartbeat_pattern())
    mine = [beat for beat in beats if usecase in beat.usecases and beat.service in SERVICES]
    return bool(mine) and not any(set(backings) & set(beat.outages) for beat in mine)


@contextlib.contextmanager
def api_process(env: dict[str, str], log: Path, usecase: str) -> Iterator[subprocess.Popen]:
    """`streamer api` on a free port (its heartbeat names the use case)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with cli_process(["api", "--port", str(port), "--usecase", usecase], env, log) as process:
        yield process
