"""A private Kafka broker (KRaft, one node) that a test or `make chaos` stops and restarts
without disturbing the broker every other test uses.

It runs from the jars `make services` caches (~/.cache/streamer/kafka-<version>/lib), with the
configuration scripts/services.sh writes, on free loopback ports and a data folder of its own;
the data survive a restart, as they would on a real broker. `stop()` is a controlled shutdown
(SIGTERM), `kill()` a crash (SIGKILL); `start()` starts it again on the same ports.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

REPO = Path(__file__).resolve().parents[1]
HELPERS = REPO / "scripts" / "services"
VERSION = os.environ.get("STREAMER_KAFKA_VERSION", "4.1.1")
STARTUP_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

PROPERTIES = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs={data}
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
share.coordinator.state.topic.num.partitions=1
min.insync.replicas=1
group.initial.rebalance.delay.ms=0
"""


class BrokerError(RuntimeError):
    """The broker could not be started (the message says why, with its log's tail)."""


def free_ports(count: int) -> list[int]:
    """Distinct loopback ports nobody listens on (all held open while choosing)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def kafka_lib(version: str = VERSION) -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "streamer"
    lib = cache / f"kafka-{version}" / "lib"
    if not (lib / f"kafka_2.13-{version}.jar").is_file():
        raise BrokerError(f"no Kafka {version} jars in {lib}: `make services` installs them")
    return lib


class PrivateBroker:
    """One broker in `folder` (its data, configuration and log)."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.port, self.controller_port = free_ports(2)
        self.lib = kafka_lib()
        java = shutil.which("java")
        if java is None:
            raise BrokerError("no `java` on PATH: `make services` installs it")
        self.java = java
        self.log = folder / "kafka.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._formatted = False

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _command(self, jvm: list[str], main: str, *args: str) -> list[str]:
        return [self.java, *jvm, "-cp", f"{self.lib}/*", main, *args]

    def _format(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self.folder / "server.properties"
        config.write_text(
            PROPERTIES.format(
                port=self.port, controller=self.controller_port, data=self.folder / "data"
            )
        )
        tool = ["-Xmx256m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"]
        tool.append(f"-Dlog4j2.configurationFile={HELPERS}/kafka-tools-log4j2.properties")
        storage = "kafka.tools.StorageTool"
        cluster = subprocess.run(
            self._command(tool, storage, "random-uuid"),
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        subprocess.run(
            self._command(tool, storage, "format", "-t", cluster, "-c", str(config)),
            capture_output=True,
            check=True,
            timeout=60,
        )
        self._formatted = True

    async def start(self) -> float:
        """Start (formatting the storage the first time); wait until it serves metadata.
        Returns the seconds it took."""
        started = time.monotonic()
        if not self._formatted:
            await asyncio.to_thread(self._format)
        self._launch()
        await self._wait_ready(started)
        return time.monotonic() - started

    def _launch(self) -> None:
        jvm = ["-Xms256m", "-Xmx512m"]
        jvm.append(f"-Dlog4j2.configurationFile={HELPERS}/kafka-log4j2.properties")
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                self._command(jvm, "kafka.Kafka", str(self.folder / "server.properties")),
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def _wait_ready(self, started: float) -> None:
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise BrokerError(f"the broker exited ({self.process.returncode}):\n{self.tail()}")
            if time.monotonic() - started > STARTUP_TIMEOUT_S:
                raise BrokerError(f"no broker after {STARTUP_TIMEOUT_S:g} s:\n{self.tail()}")
            if await self._answers():
                return
            await asyncio.sleep(0.3)

    async def _answers(self) -> bool:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        try:
            async with asyncio.timeout(5):
                await admin.start()
                await admin.list_topics()
            return True
        except Exception:  # not up yet
            return False
        finally:
            try:
                async with asyncio.timeout(5):
                    await admin.close()
            except Exception:  # closing a client that never connected
                pass

    async def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """SIGTERM: a controlled shutdown; SIGKILL: a crash. Waits until it is gone."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            await asyncio.to_thread(process.wait, STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait)

    async def restart(self, down_s: float = 0.0, sig: signal.Signals = signal.SIGTERM) -> float:
        """Stop, stay down `down_s`, start again; the seconds it was unreachable."""
        began = time.monotonic()
        await self.stop(sig)
        await asyncio.sleep(down_s)
        await self.start()
        return time.monotonic() - began

    def tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])
