"""The Compose `kafka` service's configuration, run for real without Docker.

Its KAFKA_* variables fail late: the broker ignores a misspelt key with a warning, and a wrong
advertised address only shows when a client behind it fails. So the environment becomes
server.properties as the apache/kafka image makes it (its own KafkaDockerWrapper writes the file
and formats the storage), only ports, the host name `kafka` and log.dirs changed, and that
broker (the jars `make services` caches) must take every setting and advertise, on each
listener, the address its clients reach.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.client import AIOKafkaClient

from scripts.compose_env import SECRETS
from shared.clients.kafka import make_consumer, start_client
from tests.compose_file import REPO, interpolate, interpolate_text, raw_compose

pytestmark = pytest.mark.integration

SERVICE = "kafka"
INTERNAL, CONTROLLER, HOST = "INTERNAL", "CONTROLLER", "HOST"
#: Loopback: the broker of this test is reachable from this machine only.
LOOPBACK = "127.0.0.1"

#: docker/resources/common-scripts/configureDefaults of the image: set when a variable is unset.
IMAGE_DEFAULTS = {
    "CLUSTER_ID": "5L6g3nShT-eMCtK--X86sw",
    "KAFKA_NODE_ID": "1",
    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": (
        "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,PLAINTEXT_HOST:PLAINTEXT"
    ),
    "KAFKA_LISTENERS": (
        "PLAINTEXT://localhost:29092,CONTROLLER://localhost:29093,PLAINTEXT_HOST://0.0.0.0:9092"
    ),
    "KAFKA_ADVERTISED_LISTENERS": "PLAINTEXT://localhost:29092,PLAINTEXT_HOST://localhost:9092",
    "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
    "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
    "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
    "KAFKA_PROCESS_ROLES": "broker,controller",
    "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:29093",
    "KAFKA_INTER_BROKER_LISTENER_NAME": "PLAINTEXT",
    "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
    "KAFKA_LOG_DIRS": "/tmp/kraft-combined-logs",
}
#: kafka.docker.Constants.ExcludeServerPropsEnv: KAFKA_* variables that are not properties.
NOT_PROPERTIES = frozenset(
    {
        "KAFKA_VERSION",
        "KAFKA_HEAP_OPTS",
        "KAFKA_LOG4J_OPTS",
        "KAFKA_OPTS",
        "KAFKA_JMX_OPTS",
        "KAFKA_JVM_PERFORMANCE_OPTS",
        "KAFKA_GC_LOG_OPTS",
        "KAFKA_LOG4J_ROOT_LOGLEVEL",
        "KAFKA_LOG4J_LOGGERS",
        "KAFKA_TOOLS_LOG4J_LOGLEVEL",
        "KAFKA_JMX_HOSTNAME",
    }
)
#: The only properties this test changes; every other one runs as Compose writes it.
REMAPPED = frozenset({"listeners", "advertised.listeners", "controller.quorum.voters", "log.dirs"})

STARTUP_TIMEOUT_S = 45.0
STOP_TIMEOUT_S = 15.0
CLIENT_TIMEOUT_S = 30.0
HELPER_DIR = REPO / "scripts" / "services"
# As scripts/services.sh runs the broker and Kafka's command-line tools.
BROKER_JVM = [
    "-Xms256m",
    "-Xmx512m",
    f"-Dlog4j2.configurationFile={HELPER_DIR}/kafka-log4j2.properties",
]
TOOL_JVM = [
    "-Xmx256m",
    "-XX:TieredStopAtLevel=1",
    "-XX:+UseSerialGC",
    f"-Dlog4j2.configurationFile={HELPER_DIR}/kafka-tools-log4j2.properties",
]

_LISTENER = re.compile(r"(?P<name>[A-Za-z0-9_]+)://(?P<host>\[[^\]]*\]|[^:,]*):(?P<port>\d+)")
_VOTER = re.compile(r"(?P<id>\d+)@(?P<host>\[[^\]]*\]|[^:,]*):(?P<port>\d+)")


# --- the image's conversion ---------------------------------------------------------------------


def property_name(variable: str) -> str:
    """KafkaDockerWrapper.getServerConfigsFromEnv: KAFKA_A_B__C___D -> a.b_c-d."""
    return (
        variable.removeprefix("KAFKA_")
        .lower()
        .replace("_", ".")
        .replace("...", "-")
        .replace("..", "_")
    )


def variable_name(prop: str) -> str:
    """The KAFKA_* variable the image turns into `prop`."""
    escaped = "".join({".": "_", "_": "__", "-": "___"}.get(char, char) for char in prop)
    return "KAFKA_" + escaped.upper()


def image_configuration(environment: Mapping[str, str]) -> tuple[dict[str, str], str]:
    """server.properties and the storage's cluster id, as the image derives them from its
    environment (configureDefaults, configure, then KafkaDockerWrapper)."""
    env = dict(environment)
    for variable, default in IMAGE_DEFAULTS.items():
        if not env.get(variable):
            env[variable] = default
    roles = env.get("KAFKA_PROCESS_ROLES", "")
    if roles:
        assert env.get("CLUSTER_ID"), "CLUSTER_ID environment variable not set"
        if roles == "controller":
            assert not env.get("KAFKA_ADVERTISED_LISTENERS"), "not supported on a controller"
    if not env.get("KAFKA_LISTENERS") and roles != "controller":
        env["KAFKA_LISTENERS"] = re.sub(
            r"://[^:]*:", "://0.0.0.0:", env.get("KAFKA_ADVERTISED_LISTENERS", "")
        )
    properties = {
        property_name(variable): value
        for variable, value in env.items()
        if variable.startswith("KAFKA_") and variable not in NOT_PROPERTIES
    }
    return properties, env["CLUSTER_ID"]


def read_properties(path: Path) -> dict[str, str]:
    """A server.properties file as the image writes it: key=value lines, no escapes."""
    lines = path.read_text().splitlines()
    pairs = [line.split("=", 1) for line in lines if line.strip() and not line.startswith("#")]
    return {key.strip(): value.strip() for key, value in pairs}


# --- the compose file ---------------------------------------------------------------------------


def compose_service(variables: Mapping[str, str]) -> dict[str, Any]:
    """The `kafka` service interpolated with `variables`, as Compose would with compose/.env."""
    return interpolate(raw_compose()["services"][SERVICE], variables)


def environment_of(service: Mapping[str, Any]) -> dict[str, str]:
    """The container's environment, in either Compose syntax, values as strings."""
    environment = service["environment"]
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    values = {}
    for key, value in environment.items():
        assert isinstance(value, str | int | float | bool), (key, value)
        values[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return values


def published_ports(service: Mapping[str, Any]) -> dict[int, int]:
    """Container port -> host port of each `ports` entry ("[ip:]host:container[/tcp]")."""
    mapping = {}
    for entry in service.get("ports", []):
        *_, host, container = str(entry).removesuffix("/tcp").split(":")
        mapping[int(container)] = int(host)
    return mapping


def listeners(value: str) -> list[tuple[str, str, int]]:
    """(name, host, port) of each endpoint of a listeners / advertised.listeners value."""
    endpoints = [_LISTENER.fullmatch(item.strip()) for item in value.split(",")]
    assert all(endpoints), f"not NAME://host:port endpoints: {value!r}"
    return [(m["name"], m["host"], int(m["port"])) for m in endpoints if m]


def voters(value: str) -> list[tuple[int, str, int]]:
    found = [_VOTER.fullmatch(item.strip()) for item in value.split(",")]
    assert all(found), f"not id@host:port voters: {value!r}"
    return [(int(m["id"]), m["host"], int(m["port"])) for m in found if m]


def remap(properties: Mapping[str, str], ports: Mapping[str, int], log_dir: Path) -> dict[str, str]:
    """`properties` on this machine: each listener at ports[name], bound to loopback (in its
    container it binds every interface, here that would be the host's), `kafka` replaced by
    loopback where advertised and in the voters, log.dirs in `log_dir`. Addresses advertised
    under another host name (the host side of published ports) are kept as they are."""
    by_container_port = {port: name for name, _, port in listeners(properties["listeners"])}
    remapped = dict(properties)
    remapped["listeners"] = ",".join(
        f"{name}://{LOOPBACK}:{ports[name]}" for name, _, _ in listeners(properties["listeners"])
    )
    remapped["advertised.listeners"] = ",".join(
        f"{name}://{LOOPBACK}:{ports[name]}" if host == SERVICE else f"{name}://{host}:{port}"
        for name, host, port in listeners(properties["advertised.listeners"])
    )
    remapped["controller.quorum.voters"] = ",".join(
        f"{node}@{LOOPBACK}:{ports[by_container_port[port]]}"
        if host == SERVICE
        else f"{node}@{host}:{port}"
        for node, host, port in voters(properties["controller.quorum.voters"])
    )
    remapped["log.dirs"] = str(log_dir)
    return remapped


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports nobody listens on (all held open while choosing)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((LOOPBACK, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


# --- the broker ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComposeBroker:
    service: dict[str, Any]  # the interpolated Compose service
    compose_properties: dict[str, str]  # what the image writes from the Compose environment
    properties: dict[str, str]  # the same, remapped to run here
    image_properties: dict[str, str]  # what KafkaDockerWrapper wrote from the remapped env
    cluster_id: str
    ports: dict[str, int]  # listener name -> its port here
    java: str
    lib: Path  # the jars of the image's Kafka version
    log: Path

    def address(self, listener: str) -> str:
        return f"{LOOPBACK}:{self.ports[listener]}"

    def advertised(self, listener: str) -> tuple[str, int]:
        entries = listeners(self.properties["advertised.listeners"])
        return next((host, port) for name, host, port in entries if name == listener)


def kafka_jars(version: str) -> Path:
    """The lib folder scripts/services.sh fills for Kafka `version` (same cache, same layout)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamer"
    lib = cache / f"kafka-{version}" / "lib"
    if not (lib / f"kafka_2.13-{version}.jar").is_file():
        pytest.fail(
            f"no Kafka {version} jars in {lib}: `make services` installs them "
            f"(STREAMER_KAFKA_VERSION={version} make services if the Compose image is newer "
            "than scripts/services.sh's default)",
            pytrace=False,
        )
    return lib


def java_command(java: str, lib: Path, options: list[str], main: str, *args: str) -> list[str]:
    return [java, *options, "-cp", f"{lib}/*", main, *args]


def tail(path: Path, lines: int = 40) -> str:
    text = path.read_text(errors="replace") if path.exists() else ""
    return "\n".join(text.splitlines()[-lines:])


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a controlled shutdown), then SIGKILL if it is still running after a while."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComposeBroker]:
    """The Compose `kafka` service's broker, running here until the module's tests are done."""
    work = tmp_path_factory.mktemp("compose-kafka")
    image = raw_compose()["services"][SERVICE]["image"]
    assert image.startswith("apache/kafka:"), image
    java = shutil.which("java")
    if java is None:
        pytest.fail("no `java` on PATH: `make services` installs it", pytrace=False)
    lib = kafka_jars(image.partition(":")[2])

    # compose/.env as `make up` writes it; KAFKA_HOST_PORT chosen so that it is free here.
    internal_port, controller_port, host_port = free_ports(3)
    variables = {
        "KAFKA_CLUSTER_ID": SECRETS["KAFKA_CLUSTER_ID"](),
        "KAFKA_HOST_PORT": str(host_port),
    }
    service = compose_service(variables)
    compose_properties, cluster_id = image_configuration(environment_of(service))
    ports = {INTERNAL: internal_port, CONTROLLER: controller_port, HOST: host_port}
    properties = remap(compose_properties, ports, work / "data")

    # The image's own code writes server.properties from the environment and formats storage.
    config, defaults, mounted = work / "config", work / "defaults", work / "mounted"
    for folder in (config, defaults, mounted):
        folder.mkdir()
    path = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    image_env = {variable_name(key): value for key, value in properties.items()}
    wrapper = ["setup", "--default-configs-dir", str(defaults)]
    wrapper += ["--mounted-configs-dir", str(mounted), "--final-configs-dir", str(config)]
    setup = subprocess.run(
        java_command(java, lib, TOOL_JVM, "kafka.docker.KafkaDockerWrapper", *wrapper),
        env={**path, **image_env, "CLUSTER_ID": cluster_id},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if setup.returncode != 0:
        pytest.fail(
            f"the image's KafkaDockerWrapper refuses the Compose Kafka configuration "
            f"(exit {setup.returncode}):\n{setup.stdout}{setup.stderr}",
            pytrace=False,
        )

    log = work / "kafka.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            java_command(java, lib, BROKER_JVM, "kafka.Kafka", str(config / "server.properties")),
            cwd=work,
            env=path,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while "Kafka Server started" not in log.read_text(errors="replace"):
            if process.poll() is not None:
                pytest.fail(
                    f"the Compose Kafka configuration does not start (exit {process.returncode})"
                    f"; {log}:\n{tail(log)}",
                    pytrace=False,
                )
            if time.monotonic() > deadline:
                pytest.fail(f"broker not started in {STARTUP_TIMEOUT_S:g} s:\n{tail(log)}")
            time.sleep(0.2)
        yield ComposeBroker(
            service=service,
            compose_properties=compose_properties,
            properties=properties,
            image_properties=read_properties(config / "server.properties"),
            cluster_id=cluster_id,
            ports=ports,
            java=java,
            lib=lib,
            log=log,
        )
    finally:
        stop(process)


async def advertised_brokers(bootstrap: str) -> set[tuple[int, str, int]]:
    """(node id, host, port) of every broker in the metadata answered through `bootstrap`."""
    client = AIOKafkaClient(bootstrap_servers=bootstrap)
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            await client.bootstrap()
        return {(b.nodeId, b.host, b.port) for b in client.cluster.brokers()}
    finally:
        await client.close()


# --- the configuration --------------------------------------------------------------------------


def test_the_image_naming_rule_round_trips(broker: ComposeBroker) -> None:
    """variable_name (how this test hands the remapped properties to the image) inverts the
    image's rule for every key Compose sets."""
    for prop in [*broker.compose_properties, "a_b.c-d"]:
        assert property_name(variable_name(prop)) == prop
    assert property_name("KAFKA_SASL_MECHANISM_CONTROLLER__PROTOCOL") == (
        "sasl.mechanism.controller_protocol"
    )
    assert property_name("KAFKA_CONFLUENT___SUPPORT") == "confluent-support"


def test_the_image_writes_what_this_test_runs(broker: ComposeBroker) -> None:
    """The conversion above is the image's: its wrapper wrote the very same file."""
    assert broker.image_properties == broker.properties
    meta = read_properties(Path(broker.properties["log.dirs"]) / "meta.properties")
    assert meta["cluster.id"] == broker.cluster_id
    assert meta["node.id"] == broker.properties["node.id"]


def test_only_ports_host_names_and_log_dirs_were_changed(broker: ComposeBroker) -> None:
    compose, here = broker.compose_properties, broker.properties
    assert set(here) == set(compose)
    assert {k: v for k, v in here.items() if k not in REMAPPED} == {
        k: v for k, v in compose.items() if k not in REMAPPED
    }
    for key in ("listeners", "advertised.listeners"):
        assert [name for name, _, _ in listeners(here[key])] == [
            name for name, _, _ in listeners(compose[key])
        ]
    assert [node for node, _, _ in voters(here["controller.quorum.voters"])] == [
        node for node, _, _ in voters(compose["controller.quorum.voters"])
    ]
    # the host-side address is advertised as Compose writes it
    assert f"{HOST}://{LOOPBACK}:{broker.ports[HOST]}" in compose["advertised.listeners"]
    assert broker.advertised(HOST) == (LOOPBACK, broker.ports[HOST])


def test_each_advertised_address_reaches_its_listener_in_compose(broker: ComposeBroker) -> None:
    """In Compose: `kafka:<port>` must be the listener's container port, any other host name
    the host side of a published port that leads to that listener."""
    props = broker.compose_properties
    container_port = {name: port for name, _, port in listeners(props["listeners"])}
    published = published_ports(broker.service)
    for name, host, port in listeners(props["advertised.listeners"]):
        if host == SERVICE:
            assert port == container_port[name], (name, host, port)
        else:
            assert published.get(container_port[name]) == port, (name, host, port, published)
    assert props["inter.broker.listener.name"] == INTERNAL
    assert props["controller.listener.names"] == CONTROLLER
    # the STREAMER containers bootstrap on the INTERNAL listener, under its advertised name
    streamer_bootstrap = raw_compose()["x-streamer-environment"]["STREAMER_KAFKA_BOOTSTRAP"]
    assert f"{INTERNAL}://{streamer_bootstrap}" in props["advertised.listeners"].split(",")
    (node, host, port), *_ = voters(props["controller.quorum.voters"])
    assert (str(node), host, port) == (props["node.id"], SERVICE, container_port[CONTROLLER])


async def test_the_broker_runs_with_every_compose_setting(broker: ComposeBroker) -> None:
    """A misspelt key is ignored with a mere warning: every key must be a config the broker
    knows, with the value Compose gives it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.address(HOST))
    await start_client(admin, broker.address(HOST))
    try:
        resource = ConfigResource(ConfigResourceType.BROKER, broker.properties["node.id"])
        (response,) = await admin.describe_configs([resource])
    finally:
        await admin.close()
    (error_code, error_message, _, _, entries), *_ = response.resources
    assert error_code == 0, error_message
    effective = {entry[0]: entry[1] for entry in entries}
    assert {key: effective.get(key) for key in broker.properties} == broker.properties


# --- the listeners ------------------------------------------------------------------------------


async def test_the_internal_listener_advertises_the_internal_address(
    broker: ComposeBroker,
) -> None:
    host, port = broker.advertised(INTERNAL)
    assert (host, port) == (LOOPBACK, broker.ports[INTERNAL])  # kafka:9092 in Compose
    node = int(broker.properties["node.id"])
    assert await advertised_brokers(broker.address(INTERNAL)) == {(node, host, port)}


async def test_the_host_listener_advertises_loopback_at_the_published_port(
    broker: ComposeBroker,
) -> None:
    """Published on 127.0.0.1 only, advertised as 127.0.0.1: no detour through a `localhost`
    that resolves to ::1 first."""
    node = int(broker.properties["node.id"])
    expected = {(node, LOOPBACK, broker.ports[HOST])}
    assert await advertised_brokers(broker.address(HOST)) == expected
    assert await advertised_brokers(f"localhost:{broker.ports[HOST]}") == expected


async def test_a_partitioned_topic_round_trips_through_the_host_listener(
    broker: ComposeBroker,
) -> None:
    """What a client on the host does: create a topic with the partitions the pipeline uses,
    produce to each partition, read everything back in a consumer group (whose coordinator is
    found through the advertised address too)."""
    bootstrap = broker.address(HOST)
    # the default of STREAMER_TOPIC_PARTITIONS, which the STREAMER services create topics with
    partitions = int(
        interpolate_text(raw_compose()["x-streamer-environment"]["STREAMER_TOPIC_PARTITIONS"], {})
    )
    assert partitions > 1
    topic = f"compose-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await start_client(admin, bootstrap)
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    assert described["error_code"] == 0, described
    assert len(described["partitions"]) == partitions

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await start_client(producer, bootstrap)
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            for partition in range(partitions):
                await producer.send_and_wait(topic, f"r{partition}".encode(), partition=partition)
    finally:
        await producer.stop()

    consumer = make_consumer(bootstrap, f"{topic}-group", topic)
    await start_client(consumer, bootstrap)
    received: dict[int, bytes] = {}
    try:
        async with asyncio.timeout(CLIENT_TIMEOUT_S):
            while len(received) < partitions:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    received.update((record.partition, record.value) for record in records)
    finally:
        await consumer.stop()
    assert received == {p: f"r{p}".encode() for p in range(partitions)}


async def test_topics_are_not_created_by_asking_for_them(broker: ComposeBroker) -> None:
    """auto.create.topics.enable=false: a metadata request for a missing topic (which aiokafka
    sends allowing auto-creation) answers UNKNOWN_TOPIC_OR_PARTITION and creates nothing."""
    missing = f"missing-{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=broker.address(HOST))
    await start_client(admin, broker.address(HOST))
    try:
        (described,) = await admin.describe_topics([missing])
        assert described["error_code"] == 3, described
        assert missing not in await admin.list_topics()
    finally:
        await admin.close()


def test_the_compose_healthcheck_passes(broker: ComposeBroker) -> None:
    """The healthcheck's kafka-broker-api-versions.sh (BrokerApiVersionsCommand), pointed at
    the INTERNAL listener as inside the container."""
    kind, command = broker.service["healthcheck"]["test"]
    assert kind == "CMD-SHELL"
    match = re.search(r"kafka-broker-api-versions\.sh --bootstrap-server localhost:(\d+)", command)
    assert match, command
    by_port = {port: name for name, _, port in listeners(broker.compose_properties["listeners"])}
    assert by_port.get(int(match[1])) == INTERNAL, (command, by_port)
    bootstrap = f"localhost:{broker.ports[INTERNAL]}"
    result = subprocess.run(
        java_command(
            broker.java,
            broker.lib,
            TOOL_JVM,
            "org.apache.kafka.tools.BrokerApiVersionsCommand",
            "--bootstrap-server",
            bootstrap,
        ),
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{LOOPBACK}:{broker.ports[INTERNAL]} (id: " in result.stdout, result.stdout
