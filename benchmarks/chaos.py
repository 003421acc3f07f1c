"""Chaos: one replay of KDD rows through `streamer run` while its services are SIGKILLed and its
Kafka broker restarted, each when the victim is provably mid-stream; then every figure that
must hold (`make chaos`; services started, STREAMER_* set; a JSON report, last line).

The default scenario (issue 10): during ONE replay, 10 SIGKILLs of the launcher, 3 of the
trainer, 3 of the evaluator, 1 of the producer and 1 broker restart (a private broker, started
here from the jars `make services` caches, so the other tests' broker is never touched). The
supervisor of `streamer run` restarts each killed service (its give-up rule concerns only
children that never became healthy). Then, read to outputTopic's end offsets
(read_committed), every message counted:
- 0 records without a prediction, 0 duplicate predictions on outputTopic;
- InfluxDB holds each record once;
- the evaluator's final cumulative accuracy equals the accuracy computed here over the run's
  own outputs (the evaluator's checkpoint makes its restarts exact);
- every prediction is River's own Hoeffding tree's after learning exactly the records the
  predicting version had learnt (its offset minus its staleness): an outside reference, which
  a trainer that learnt a record twice or skipped one after a kill would fail;
- and an undisturbed run of the same rows (`--no-baseline` skips it) makes exactly the same
  predictions, so its evaluator's accuracy is exactly the same.

Why the last one can hold although predictions depend on timing: a prediction depends only on
how many records its version had learnt. The replay is paced in blocks (one transaction each,
so a launcher reads whole blocks) with `launcher.max.staleness` equal to the block size: a
block can only be predicted by a version that learnt every earlier block, and the trainer only
learns what was predicted, so no version learnt part of a block the launcher had not predicted
yet. Each block is then predicted by the version that learnt exactly the blocks before it, in
the undisturbed run and under chaos alike (`predictions_differing` in the report counts the
exceptions, e.g. a launcher that waited more than 10 s for a version and went on without).

Each kill waits for proof that its victim is mid-stream: the launcher's committed input offsets
below the input's end and moved since its start; the trainer's newest version behind the input
and newer than its start; the evaluator with an evaluation announced and not checkpointed; the
producer with a transaction open and lines left to send; the broker restarted while outputs are
still missing. Exit 1 when a figure is wrong or a kill could not be made.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import contextlib
import gzip
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from river import tree

from scripts.kafka_broker import PrivateBroker
from shared.clients.influx import AioinfluxStore
from shared.clients.kafka import make_consumer, partitions_of
from shared.clients.redis import connect_redis
from shared.config import ConnectionSettings
from shared.heartbeat import read_heartbeats, this_host
from shared.records import KDDClassificationRecord
from shared.wire.heartbeat import RUNNING
from shared.wire.influx import MetricsMeasurement, RecordsMeasurement
from shared.wire.kafka import Output
from shared.wire.keys import UseCaseKeys, heartbeat_pattern
from shared.wire.store import Fields, ModelMeta

REPO = Path(__file__).resolve().parents[1]
SECRET = "chaos-secret"
KDD_FILE = Path("kdd-cup-99") / "kddcup.data_10_percent.gz"

log = logging.getLogger("chaos")


class ChaosError(RuntimeError):
    """The run could not be made as asked (a kill impossible, a timeout): no report."""


@dataclass
class Scenario:
    rows: int = 30_000
    block: int = 100  # records per block (one producer transaction)
    interval_ms: int = 1000  # between two blocks
    launcher_kills: int = 10
    trainer_kills: int = 3
    evaluator_kills: int = 3
    producer_kills: int = 1
    broker_restarts: int = 1
    broker_down_s: float = 120.0  # how long the broker stays stopped (issue 10: 2 minutes)
    baseline: bool = True  # an undisturbed run of the same rows, compared
    drain_timeout_s: float = 300.0

    @property
    def replay_s(self) -> float:
        return self.rows / self.block * self.interval_ms / 1000


@dataclass
class Figures:
    """What one run produced, read back from Kafka, InfluxDB and Redis."""

    records: int
    outputs: int = 0
    missing: int = 0
    duplicates: int = 0
    influx_records: int = 0
    influx_record_ids: int = 0
    evaluator_accuracy: float | None = None
    outputs_accuracy: float | None = None
    river_mismatches: int = 0
    max_staleness: int | None = None
    predictions: dict[str, Any] = field(default_factory=dict, repr=False)


# ---- the use case and the pipeline ------------------------------------------------------------


def kdd_rows(data_dir: Path, rows: int, target: Path) -> Path:
    with gzip.open(data_dir / KDD_FILE, "rt") as source:
        lines = [next(source) for _ in range(rows)]
    target.write_text("".join(lines))
    return target


def write_usecase(folder: Path, name: str, datafile: Path, scenario: Scenario) -> Path:
    folder.mkdir(parents=True)
    (folder / "streaming.props").write_text(
        f"mainTopic={name}\noutputTopic={name}.outputs\nproblem.type=KDDClassification\n"
        f"datafile={datafile}\nproducerType=BLOCK\nrecordsPerBlock={scenario.block}\n"
        f"producerTimeInterval={scenario.interval_ms}\nreadingTimeInterval=100\n"
        f"launcher.max.staleness={scenario.block}\nvisualization=false\n"
    )
    (folder / "algs.props").write_text(
        "algorithm=HoeffdingTreeClassifier\nevaluation.metrics=Accuracy\n"
        "model.checkpoint.interval=2000\n"
    )
    return folder


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Pipeline:
    """`streamer run` of one use case as a process; its children found by their heartbeats."""

    def __init__(self, folder: Path, env: dict[str, str], log_file: Path):
        self.folder, self.env, self.log_file = folder, env, log_file
        self.name = folder.name
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [sys.executable, "-m", "services.cli", "run", str(self.folder)]
        command += ["--port", str(free_port()), "--log-file", str(self.log_file)]
        self.process = subprocess.Popen(
            command,
            cwd=REPO,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    async def stop(self) -> int:
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.to_thread(self.process.wait, 120)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            return await asyncio.to_thread(self.process.wait)


# ---- reading what a run produced --------------------------------------------------------------


async def partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        numbers = (await partitions_of(admin, [topic])).get(topic, [])
    finally:
        await admin.close()
    return [TopicPartition(topic, number) for number in numbers]


async def end_offsets(
    bootstrap: str, topic: str, isolation: str = "read_committed"
) -> dict[int, int]:
    """Per partition, the last stable offset (read_committed readers read up to it), or the
    high watermark (`read_uncommitted`: what was written, committed or not)."""
    tps = await partitions(bootstrap, topic)
    if not tps:
        return {}
    consumer = make_consumer(bootstrap, None, isolation_level=isolation)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(tps)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def read_outputs(bootstrap: str, topic: str) -> list[Output]:
    """Every committed output of `topic`, duplicates included, up to its end offsets."""
    ends = await end_offsets(bootstrap, topic)
    consumer = make_consumer(bootstrap, None)
    await consumer.start()
    outputs: list[Output] = []
    try:
        tps = [TopicPartition(topic, partition) for partition in ends]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async with asyncio.timeout(120):
            for tp in tps:
                while await consumer.position(tp) < ends[tp.partition]:
                    batch = await consumer.getmany(tp, timeout_ms=500, max_records=5000)
                    for messages in batch.values():
                        outputs += [Output.decode(message.value) for message in messages]
    finally:
        await consumer.stop()
    return outputs


async def output_ids(bootstrap: str, topic: str) -> set[str]:
    return {output.record_id for output in await read_outputs(bootstrap, topic)}


def offset_of(output: Output) -> int:
    return int(output.id.rsplit("/", 1)[1])


def river_reference(datafile: Path, outputs: list[Output]) -> dict[str, Any]:
    """The outside reference: River's Hoeffding tree's prediction for each output's record
    after learning, in order, exactly the records its version had learnt (those at offsets
    below `offset - staleness`, on the one input partition). Keyed by record id."""
    lines = datafile.read_text().splitlines()
    line_at = {offset_of(o): int(o.record_id.split(":")[1]) for o in outputs}
    order = sorted(line_at)  # input offsets of the records, in the partition's order
    model, learnt, expected = tree.HoeffdingTreeClassifier(), 0, {}

    def learnt_count(output: Output) -> int:
        if output.staleness is None:
            return 0
        return bisect.bisect_left(order, offset_of(output) - output.staleness)

    for output in sorted({o.record_id: o for o in outputs}.values(), key=learnt_count):
        target = learnt_count(output)
        while learnt < target:
            record = KDDClassificationRecord.parse(lines[line_at[order[learnt]] - 1])
            model.learn_one(record.values, record.targets[0])
            learnt += 1
        record = KDDClassificationRecord.parse(lines[line_at[offset_of(output)] - 1])
        # River types x as an invariant dict[Hashable, Any]: a dict[str, ...] is one
        expected[output.record_id] = model.predict_one(record.values) if learnt else None  # type: ignore[arg-type]
    return expected


def accuracy(outputs: list[Output]) -> float | None:
    """The share of right predictions among the outputs with a prediction (the evaluator's
    Accuracy skips a pair without one)."""
    pairs = [
        (o.targets[0], o.prediction) for o in outputs if o.targets and o.prediction is not None
    ]
    return sum(str(t) == str(p) for t, p in pairs) / len(pairs) if pairs else None


async def influx_count(
    settings: ConnectionSettings, database: str, usecase: str
) -> tuple[int, int]:
    """(points, distinct record ids) of the use case's records in InfluxDB: a record written
    again under the same key overwrites its point; written under another key, it shows."""
    store = AioinfluxStore(settings, database)
    try:
        records, _ = await RecordsMeasurement(usecase).recent(store, -1)
    finally:
        await store.close()
    return len(records), len({record.record_id for record in records})


async def evaluator_accuracy(settings: ConnectionSettings, database: str, usecase: str) -> Any:
    store = AioinfluxStore(settings, database)
    try:
        points = await MetricsMeasurement(usecase).latest(store, view="cumulative")
    finally:
        await store.close()
    values = {point.metric.lower(): point.value for point in points}
    return values.get("accuracy")


# ---- proofs that a victim is mid-stream --------------------------------------------------------


class Probes:
    """Reads that prove where each service of one run is."""

    def __init__(self, name: str, bootstrap: str, settings: ConnectionSettings, rows: int):
        self.name, self.bootstrap, self.settings, self.rows = name, bootstrap, settings, rows
        self.keys = UseCaseKeys(name)
        self.redis = connect_redis(settings)

    async def close(self) -> None:
        await self.redis.aclose()

    async def pid(self, service: str) -> int | None:
        """The pid of the service's running instance on this host (its heartbeat's name)."""
        for beat in await read_heartbeats(self.redis, heartbeat_pattern(service, this_host())):
            if beat.status == RUNNING and self.name in beat.usecases:
                return int(beat.instance.rsplit("-", 1)[1])
        return None

    async def input_end(self) -> int:
        return sum((await end_offsets(self.bootstrap, self.name)).values())

    async def launcher_committed(self) -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(f"streamer-{self.name}")
        finally:
            await admin.close()
        return sum(meta.offset for tp, meta in offsets.items() if tp.topic == self.name)

    async def trainer_position(self) -> int:
        latest = await self.redis.get(self.keys.model_latest)
        if latest is None:
            return 0
        # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
        raw: Fields = await self.redis.hgetall(self.keys.model_meta(int(latest)))  # type: ignore[assignment]
        meta = ModelMeta.decode(raw)
        return sum((meta.positions or {}).values())

    async def evaluating(self) -> bool:
        return bool(await self.redis.hexists(self.keys.evaluator_checkpoint, "pending"))

    async def input_transaction_open(self) -> tuple[bool, int]:
        """(a transaction is open on the input, its committed end offsets added up)."""
        high = await end_offsets(self.bootstrap, self.name, "read_uncommitted")
        stable = await end_offsets(self.bootstrap, self.name)
        return high != stable, sum(stable.values())


# ---- the kills ---------------------------------------------------------------------------------


@dataclass
class KillLog:
    done: dict[str, int] = field(default_factory=lambda: collections.defaultdict(int))
    broker_down_s: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], deadline: float, what: str, every_s: float = 0.05
) -> None:
    while not await condition():
        if time.monotonic() > deadline:
            raise ChaosError(f"timed out waiting for {what}")
        await asyncio.sleep(every_s)  # polling brokers and Redis: no event to wait on


async def quietly(call: Callable[[], Awaitable[Any]], default: Any) -> Any:
    """A probe through an outage (the broker restarting): the default meanwhile."""
    try:
        async with asyncio.timeout(20):
            return await call()
    except Exception:  # a probe is retried by its caller
        return default
    except asyncio.CancelledError:  # aiokafka's stop() may turn the timeout into this
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        return default


async def kill_service(
    probes: Probes,
    service: str,
    mid_stream: Callable[[int], Awaitable[bool]],
    deadline: float,
    kills: KillLog,
) -> None:
    """SIGKILL the service's running instance once `mid_stream(pid)` proves it works."""
    pid = None

    async def ready() -> bool:
        nonlocal pid
        pid = await quietly(lambda: probes.pid(service), None)
        return pid is not None and bool(await quietly(lambda: mid_stream(pid), False))

    await wait_until(ready, deadline, f"the {service} mid-stream (kill {kills.done[service] + 1})")
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    kills.done[service] += 1
    log.info(f"SIGKILL {service} (pid {pid}), kill {kills.done[service]}")
    # the supervisor's restart is a new pid: the next kill waits for it
    await wait_until(lambda: _gone(pid), deadline, f"the killed {service} to be gone", every_s=0.1)


async def _gone(pid: int) -> bool:
    return _exited(pid)


def _exited(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with contextlib.suppress(OSError):  # a zombie until its parent reaps it
        status = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
        return status == "Z"
    return False


async def chaos(
    probes: Probes,
    broker: PrivateBroker,
    scenario: Scenario,
    kills: KillLog,
    started: float,
    replay_left_s: float,
) -> None:
    """Every kill of the scenario, spread over what is left of the replay (each at its planned
    time or as soon after as its victim is provably mid-stream)."""
    outages_s = scenario.broker_down_s * scenario.broker_restarts  # the replay waits meanwhile
    deadline = started + replay_left_s + outages_s + 120
    span = (replay_left_s + outages_s) * 0.85

    def plan(count: int, first: float, last: float) -> list[float]:
        if count == 0:
            return []
        step = (last - first) / max(count - 1, 1)
        return [started + first * span + i * step * span for i in range(count)]

    async def at(moment: float) -> None:
        await asyncio.sleep(max(0.0, moment - time.monotonic()))

    async def launchers() -> None:
        for moment in plan(scenario.launcher_kills, 0.05, 1.0):
            await at(moment)
            since = await quietly(probes.launcher_committed, 0)

            async def mid_stream(_pid: int, since: int = since) -> bool:
                committed = await probes.launcher_committed()
                if committed <= since:
                    return False  # not working yet since its (re)start
                # below the end: the input's last offset is its closing transaction marker
                return committed + 1 < await probes.input_end() or not await producer_done()

            await kill_service(probes, "launcher", mid_stream, deadline, kills)

    async def producer_done() -> bool:
        """Every block committed: its records and its transaction marker."""
        _, committed = await probes.input_transaction_open()
        return committed >= scenario.rows + -(-scenario.rows // scenario.block)

    async def trainers() -> None:
        for moment in plan(scenario.trainer_kills, 0.15, 0.9):
            await at(moment)
            start_position = await quietly(probes.trainer_position, 0)

            async def mid_stream(_pid: int, start_position: int = start_position) -> bool:
                position = await probes.trainer_position()
                if position <= start_position:
                    return False  # not learning yet since its (re)start
                return position + 1 < await probes.input_end() or not await producer_done()

            await kill_service(probes, "trainer", mid_stream, deadline, kills)

    async def evaluators() -> None:
        for moment in plan(scenario.evaluator_kills, 0.2, 0.95):
            await at(moment)
            await kill_service(
                probes, "evaluator", lambda _pid: probes.evaluating(), deadline, kills
            )

    async def producers() -> None:
        for moment in plan(scenario.producer_kills, 0.4, 0.4):
            await at(moment)

            async def mid_stream(_pid: int) -> bool:
                open_, committed = await probes.input_transaction_open()
                return open_ and 0 < committed < scenario.rows

            await kill_service(probes, "producer", mid_stream, deadline, kills)

    async def brokers() -> None:
        for moment in plan(scenario.broker_restarts, 0.6, 0.6):
            await at(moment)
            await wait_until(
                lambda: quietly(lambda: _input_open(probes), False),
                deadline,
                "the replay under way before the broker restart",
            )
            down = await broker.restart(down_s=scenario.broker_down_s)
            kills.done["broker"] += 1
            kills.broker_down_s.append(round(down, 2))
            log.info(f"broker restarted, unreachable for {down:.1f} s")

    await asyncio.gather(launchers(), trainers(), evaluators(), producers(), brokers())


async def _input_open(probes: Probes) -> bool:
    """The producer is under way: some lines committed, not all."""
    _, committed = await probes.input_transaction_open()
    return 0 < committed < probes.rows


# ---- one run -----------------------------------------------------------------------------------


async def run_once(
    name: str,
    scenario: Scenario,
    datafile: Path,
    work: Path,
    broker: PrivateBroker,
    settings: ConnectionSettings,
    disturb: bool,
) -> tuple[Figures, KillLog, float, int]:
    """One replay of `datafile` through `streamer run`; with `disturb`, the scenario's kills.
    Returns the figures, the kills made, the seconds it took and the run's exit status."""
    folder = write_usecase(work / name, name, datafile, scenario)
    env = {
        **os.environ,
        "STREAMER_MODEL_SECRET": SECRET,
        "STREAMER_INFLUX_DB": name,
        "STREAMER_KAFKA_BOOTSTRAP": broker.bootstrap,
        "PYTHONUNBUFFERED": "1",
    }
    pipeline = Pipeline(folder, env, work / f"{name}.log")
    probes = Probes(name, broker.bootstrap, settings, scenario.rows)
    kills = KillLog()
    started = time.monotonic()
    pipeline.start()
    try:
        if disturb:
            # the replay starts with the producer; the kills wait for the other services
            await wait_until(
                lambda: _all_running(probes),
                started + 180,
                "launcher, trainer and evaluator to be healthy",
                every_s=0.5,
            )
            healthy = time.monotonic()
            left = max(scenario.replay_s - (healthy - started), 10.0)
            await chaos(probes, broker, scenario, kills, healthy, left)
        expected = {f"kdd:{line}" for line in range(1, scenario.rows + 1)}
        deadline = time.monotonic() + scenario.replay_s + scenario.drain_timeout_s
        deadline += scenario.broker_down_s * scenario.broker_restarts

        async def all_predicted() -> bool:
            if not pipeline.alive():
                raise ChaosError(f"streamer run ended early; see {pipeline.log_file}")
            return expected <= await quietly(
                lambda: output_ids(broker.bootstrap, f"{name}.outputs"), set()
            )

        await wait_until(all_predicted, deadline, "a prediction of every record", every_s=2.0)

        await wait_until(
            lambda: _evaluated_all(probes), deadline, "the evaluator to score every output", 1.0
        )
    finally:
        elapsed = time.monotonic() - started
        status = await pipeline.stop()
        await probes.close()
    figures = await measure(name, scenario, datafile, broker.bootstrap, settings)
    log.info(f"{name}: {json.dumps(summary(figures, elapsed, status))}")
    return figures, kills, elapsed, status


async def _all_running(probes: Probes) -> bool:
    pids = [await probes.pid(service) for service in ("launcher", "trainer", "evaluator")]
    return all(pid is not None for pid in pids)


async def _evaluated_all(probes: Probes) -> bool:
    """The evaluator scored an output of every record (its counters come back with its
    checkpoint after a restart) and no evaluation is under way."""
    for beat in await read_heartbeats(probes.redis, heartbeat_pattern("evaluator")):
        if probes.name in beat.usecases and beat.status == RUNNING:
            scored = int(beat.counters.get(probes.name, {}).get("outputs", 0))
            return scored >= probes.rows and not await probes.evaluating()
    return False


async def measure(
    name: str, scenario: Scenario, datafile: Path, bootstrap: str, settings: ConnectionSettings
) -> Figures:
    outputs = await read_outputs(bootstrap, f"{name}.outputs")
    ids = collections.Counter(output.record_id for output in outputs)
    expected = {f"kdd:{line}" for line in range(1, scenario.rows + 1)}
    unique = list({output.record_id: output for output in outputs}.values())
    reference = river_reference(datafile, unique)
    staleness = [o.staleness for o in unique if o.staleness is not None]
    points, record_ids = await influx_count(settings, name, name)
    return Figures(
        records=scenario.rows,
        outputs=len(outputs),
        missing=len(expected - set(ids)),
        duplicates=sum(count - 1 for count in ids.values()),
        influx_records=points,
        influx_record_ids=record_ids,
        evaluator_accuracy=await evaluator_accuracy(settings, name, name),
        outputs_accuracy=accuracy(unique),
        river_mismatches=sum(o.prediction != reference[o.record_id] for o in unique),
        max_staleness=max(staleness, default=None),
        predictions={o.record_id: o.prediction for o in unique},
    )


# ---- the scenario ------------------------------------------------------------------------------


def outage_lines(log_file: Path) -> list[dict[str, Any]]:
    """The services' "<backing> answers again after N s" lines: which outage, how long."""
    found = []
    pattern = re.compile(r"^\s*(\w+) │ INFO streamer\.outage: (\w+) answers again after ([\d.]+) s")
    if log_file.exists():
        for line in log_file.read_text(errors="replace").splitlines():
            match = pattern.match(line)
            if match:
                found.append(
                    {"service": match[1], "backing": match[2], "outage_s": float(match[3])}
                )
    return found


async def run_scenario(scenario: Scenario, data_dir: Path, work: Path) -> dict[str, Any]:
    """The disturbed run and (scenario.baseline) the undisturbed one; the report, with `ok`
    and `failures` (each figure that is wrong)."""
    settings = ConnectionSettings()
    work.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before anything runs
    datafile = kdd_rows(data_dir, scenario.rows, work / "kdd.csv")
    broker = PrivateBroker(work / "kafka")
    broker_start_s = await broker.start()
    tag = uuid.uuid4().hex[:8]
    try:
        chaos_name = f"chaos{tag}"
        figures, kills, elapsed, status = await run_once(
            chaos_name, scenario, datafile, work, broker, settings, disturb=True
        )
        baseline = None
        if scenario.baseline:
            baseline, _, base_elapsed, base_status = await run_once(
                f"calm{tag}", scenario, datafile, work, broker, settings, disturb=False
            )
    finally:
        await broker.stop()
    wanted = {
        "launcher": scenario.launcher_kills,
        "trainer": scenario.trainer_kills,
        "evaluator": scenario.evaluator_kills,
        "producer": scenario.producer_kills,
        "broker": scenario.broker_restarts,
    }
    failures = []
    done = dict(kills.done)
    if any(done.get(service, 0) != count for service, count in wanted.items()):
        failures.append(f"kills done {done} != planned {wanted}")
    failures += checks("chaos", figures)
    report: dict[str, Any] = {
        "scenario": asdict(scenario),
        "kills": {"planned": wanted, "done": done},
        "broker": {"start_s": round(broker_start_s, 2), "restart_down_s": kills.broker_down_s},
        "outages": outage_lines(work / f"{chaos_name}.log"),
        "chaos": summary(figures, elapsed, status),
    }
    if baseline is not None:
        failures += checks("baseline", baseline)
        differing = sum(
            figures.predictions.get(rid) != prediction
            for rid, prediction in baseline.predictions.items()
        )
        report["baseline"] = summary(baseline, base_elapsed, base_status)
        report["predictions_differing"] = differing
        if differing:
            failures.append(f"{differing} predictions differ from the undisturbed run's")
        if figures.evaluator_accuracy != baseline.evaluator_accuracy:
            failures.append(
                f"evaluator accuracy {figures.evaluator_accuracy} under chaos != "
                f"{baseline.evaluator_accuracy} undisturbed"
            )
    report["failures"] = failures
    report["ok"] = not failures
    return report


def checks(run: str, figures: Figures) -> list[str]:
    failures = []
    if figures.missing:
        failures.append(f"{run}: {figures.missing} records without a prediction")
    if figures.duplicates:
        failures.append(f"{run}: {figures.duplicates} duplicate predictions on outputTopic")
    if figures.influx_records != figures.records or figures.influx_record_ids != figures.records:
        failures.append(
            f"{run}: InfluxDB holds {figures.influx_records} points of "
            f"{figures.influx_record_ids} records, for {figures.records} records"
        )
    if figures.evaluator_accuracy is None or figures.evaluator_accuracy != figures.outputs_accuracy:
        failures.append(
            f"{run}: evaluator accuracy {figures.evaluator_accuracy} != "
            f"{figures.outputs_accuracy} over the outputs"
        )
    if figures.river_mismatches:
        failures.append(f"{run}: {figures.river_mismatches} predictions differ from River's")
    return failures


def summary(figures: Figures, elapsed: float, status: int) -> dict[str, Any]:
    values = {k: v for k, v in asdict(figures).items() if k != "predictions"}
    return {**values, "seconds": round(elapsed, 1), "streamer_run_exit": status}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Scenario()
    for name, value in asdict(defaults).items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        else:
            parser.add_argument(flag, type=type(value), default=value)
    default_data = os.environ.get("STREAMER_DATA_DIR") or REPO.parent / "shared" / "data"
    parser.add_argument("--data-dir", type=Path, default=Path(default_data))
    parser.add_argument("--work", type=Path, default=None, help="default: a folder in .run/chaos")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    for noisy in ("aiokafka", "kafka"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    scenario = Scenario(**{name: getattr(args, name) for name in asdict(defaults)})
    work = args.work or Path(tempfile.mkdtemp(prefix="chaos-", dir=_run_dir()))
    try:
        report = asyncio.run(run_scenario(scenario, args.data_dir, work))
    except ChaosError as error:
        report = {"scenario": asdict(scenario), "ok": False, "failures": [str(error)]}
    report["work"] = str(work)
    path = work / "report.json"
    path.write_text(json.dumps(report, indent=2))
    print(json.dumps(report))
    if not report["ok"]:
        print(f"chaos: FAILED: {'; '.join(report['failures'])}", file=sys.stderr)
        return 1
    return 0


def _run_dir() -> Path:
    folder = REPO / ".run" / "chaos"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


if __name__ == "__main__":
    sys.exit(main())
