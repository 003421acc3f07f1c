"""Helpers of the end-to-end tests: a use case on a slice of real data, services as processes."""

from __future__ import annotations

import asyncio
import bisect
import gzip
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.clients.kafka import make_consumer, start_client

REPO = Path(__file__).resolve().parents[2]
MODEL_SECRET = "integration-test-secret"


def kdd_slice(data_dir: Path, rows: int, target: Path) -> Path:
    """The first `rows` lines of the real KDD 10% file, written for one test (never committed)."""
    with gzip.open(data_dir / "kdd-cup-99" / "kddcup.data_10_percent.gz", "rt") as source:
        lines = [next(source) for _ in range(rows)]
    target.write_text("".join(lines))
    return target


def make_kdd_usecase(
    root: Path, name: str, datafile: Path, *, training_interval_ms: int = 1000, extra: str = ""
) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "streaming.props").write_text(
        f"mainTopic={name}\noutputTopic={name}.outputs\nproblem.type=KDDClassification\n"
        f"datafile={datafile}\nproducerType=FAST\nreadingTimeInterval=100\n{extra}"
    )
    (folder / "algs.props").write_text(
        "algorithm=HoeffdingTreeClassifier\n"
        f"training.interval={training_interval_ms}\ntraining.maxdata=-1\n"
    )
    return folder


def service_env(database: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "STREAMER_MODEL_SECRET": MODEL_SECRET,
            "STREAMER_INFLUX_DB": database,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@contextmanager
def cli_process(
    args: list[str], env: dict[str, str], log: Path, cwd: Path = REPO
) -> Iterator[subprocess.Popen]:
    """`streamer <args>` as a process; SIGTERM (then SIGKILL) when the block ends."""
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", *args],
            cwd=cwd,
            env={**env, "PYTHONPATH": str(REPO)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def service(
    command: str, folder: Path, env: dict[str, str], log: Path, cwd: Path = REPO
) -> Iterator[subprocess.Popen]:
    """`streamer <command> <folder>` as a process (see cli_process)."""
    with cli_process([command, str(folder)], env, log, cwd) as process:
        yield process


def run_producer(folder: Path, env: dict[str, str], log: Path, timeout: float = 120) -> None:
    with log.open("ab") as out:
        subprocess.run(
            [sys.executable, "-m", "services.cli", "produce", str(folder)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=True,
        )


async def collect_outputs(
    bootstrap: str, topic: str, expected_ids: set[str], wait_s: float
) -> list[dict]:
    """Every output of `topic`, duplicates included: read from the start until every expected
    record id has an output (or the wait is over), then on to the topic's end offsets at that
    moment, so a duplicate written meanwhile is counted too."""
    consumer = make_consumer(bootstrap, None, topic, isolation_level="read_committed")
    await start_client(consumer, bootstrap)
    outputs: list[dict] = []
    seen: set[str] = set()

    def take(batch: dict) -> None:
        for messages in batch.values():
            for message in messages:
                output = json.loads(message.value)
                outputs.append(output)
                seen.add(output["record_id"])

    try:
        async with asyncio.timeout(wait_s):
            while not expected_ids <= seen:
                take(await consumer.getmany(timeout_ms=500, max_records=5000))
            ends = await consumer.end_offsets(list(consumer.assignment()))
            for tp, end in ends.items():
                while await consumer.position(tp) < end:
                    take(await consumer.getmany(tp, timeout_ms=500, max_records=5000))
    except TimeoutError:
        pass  # the caller reports what is missing
    finally:
        await consumer.stop()
    return outputs


async def read_to_end(bootstrap: str, topic: str, records: int, wait_s: float) -> list[dict]:
    """`collect_outputs` for a replay of `records` KDD lines (record ids `kdd:1`...)."""
    expected = {f"kdd:{line}" for line in range(1, records + 1)}
    return await collect_outputs(bootstrap, topic, expected, wait_s)


async def wait_for(condition: Callable[[], object], what: str, seconds: float = 90) -> object:
    """Poll `condition` (a function, sync or async) until it returns something truthy, which is
    returned; fail naming `what` after `seconds`. For states only reachable by asking (an API,
    Redis, InfluxDB): no event to wait on."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = condition()
        if asyncio.iscoroutine(found):
            found = await found
        if found:
            return found
        await asyncio.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


class InputPositions:
    """Where each output's record and its version's knowledge sit in the input file, for an
    input topic of one partition. Input offsets are not line numbers: each producer
    transaction's commit marker takes an offset too, so records are counted among the offsets
    the outputs name, and a record's line comes from its id (`<source>:<line>`, 1-based)."""

    def __init__(self, outputs: list[dict]):
        self.line_at = {offset_of(o): int(o["record_id"].rsplit(":", 1)[1]) - 1 for o in outputs}
        self.offsets = sorted(self.line_at)  # the input offsets holding records, in order

    def learnt(self, output: dict) -> int:
        """How many records the predicting version had learnt (0 before any version)."""
        if output["model_version"] is None:
            return 0
        return bisect.bisect_left(self.offsets, offset_of(output) - output["staleness"])

    def line_of_learnt(self, count: int) -> int:
        """The file line (0-based) of the count-th record learnt (0-based), in input order."""
        return self.line_at[self.offsets[count]]

    def line_of(self, output: dict) -> int:
        """The file line (0-based) of the output's record."""
        return self.line_at[offset_of(output)]


def offset_of(output: dict) -> int:
    """The input offset of the record an output predicts (its id ends with it)."""
    return int(output["id"].rsplit("/", 1)[1])
