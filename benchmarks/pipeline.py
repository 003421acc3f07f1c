"""Benchmark: the KDD Cup 99 10% file through the pipeline, against River's own loop on the same
rows, in one run (`make bench`; services started, STREAMER_* set).

Figures, each run on the same rows:
- River's own loop: plain `river` objects on records parsed beforehand, nothing of ours in
  the timed loop (predict_one, metric updates, learn_one); and the wrapper loop (our parsing
  and algorithm wrapper, test-then-train in one process);
- the pipeline, as fast as it goes (producer FAST): the default mode (launchers predict, the
  trainer learns), `launcher.learn=true`, and two launchers on two partitions: records/s end
  to end and the ratio to River's loop, prequential accuracy and macro-F1, staleness p50/p99,
  trainer lag, model hand-off (bytes, seal, fetch and load ms over every version published);
- produce-to-prediction latency p50/p95/p99 at half the default mode's measured rate (a paced
  replay).

It fails (exit 1) on a timeout, a missing or duplicated output, or a service that dies, rather
than report stale figures. `--repeat 3` reports the median of three runs (every run is kept in
the report). The JSON report goes to .run/bench/ and is printed as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from river import metrics, tree

from shared.algorithms.registry import build_algorithm
from shared.clients.influx import AioinfluxStore
from shared.clients.kafka import make_consumer, start_client
from shared.clients.redis import connect_redis
from shared.config import ConnectionSettings, UseCase, load_usecase
from shared.heartbeat import read_heartbeats
from shared.modelstore import unseal
from shared.records import KDDClassificationRecord
from shared.wire.kafka import Output
from shared.wire.keys import UseCaseKeys, heartbeat_pattern
from shared.wire.store import ModelMeta

REPO = Path(__file__).resolve().parents[1]
SECRET = "benchmark-secret"
SHIPPED = REPO / "usecases" / "kdd-cup-99"
#: The tree every loop and the pipeline use (usecases/kdd-cup-99/algs.props).
TREE_PARAMS = {"grace_period": 200, "max_depth": 20}
RUN_TIMEOUT_S = 1800


class BenchmarkError(RuntimeError):
    """A run did not produce every figure it must: the benchmark fails instead of reporting."""


# ---- the reference loops ----------------------------------------------------------------------


def parse_all(lines: list[str]) -> list[tuple[dict, str]]:
    parsed = []
    for line in lines:
        record = KDDClassificationRecord.parse(line)
        parsed.append((record.values, record.targets[0]))
    return parsed


def river_loop(parsed: list[tuple[dict, str]]) -> dict[str, Any]:
    """River's own test-then-train loop on parsed dicts: nothing of ours in the timed loop."""
    model = tree.HoeffdingTreeClassifier(**TREE_PARAMS)
    accuracy, macro_f1 = metrics.Accuracy(), metrics.MacroF1()
    started = time.perf_counter()
    for x, y in parsed:
        prediction = model.predict_one(x)
        accuracy.update(y, prediction)
        macro_f1.update(y, prediction)
        model.learn_one(x, y)
    return _loop_figures(len(parsed), time.perf_counter() - started, accuracy, macro_f1)


def wrapper_loop(lines: list[str], usecase: UseCase) -> dict[str, Any]:
    """Our parsing and algorithm wrapper, test-then-train in one process (the launcher's loop
    before the scale-out)."""
    model = build_algorithm(usecase)
    accuracy, macro_f1 = metrics.Accuracy(), metrics.MacroF1()
    started = time.perf_counter()
    for line in lines:
        record = KDDClassificationRecord.parse(line)
        y = record.targets[0]
        prediction = model.predict_one(record.values)
        accuracy.update(y, prediction)
        macro_f1.update(y, prediction)
        model.learn_one(record.values, y)
    return _loop_figures(len(lines), time.perf_counter() - started, accuracy, macro_f1)


def _loop_figures(records: int, seconds: float, accuracy, macro_f1) -> dict[str, Any]:
    return {
        "records": records,
        "seconds": round(seconds, 2),
        "records_per_s": round(records / seconds, 1),
        "accuracy": round(accuracy.get(), 5),
        "macro_f1": round(macro_f1.get(), 5),
    }


# ---- one pipeline run -------------------------------------------------------------------------


@dataclass
class Run:
    """One replay through the services: its use case and what it must produce."""

    name: str
    folder: Path
    lines: int
    launchers: int = 1
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.folder.parent / f"{self.name}.log"


def write_usecase(
    work: Path, name: str, datafile: Path, *, streaming: str = "", algs: str = ""
) -> Path:
    folder = work / name
    folder.mkdir()
    (folder / "streaming.props").write_text(
        f"mainTopic={name}\noutputTopic={name}.outputs\nproblem.type=KDDClassification\n"
        f"datafile={datafile}\nreadingTimeInterval=100\n{streaming}"
    )
    shipped = (SHIPPED / "algs.props").read_text()
    (folder / "algs.props").write_text(f"{shipped}\n{algs}")
    return folder


async def start_service(command: str, run: Run, env: dict[str, str]) -> asyncio.subprocess.Process:
    with run.log.open("ab") as out:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.cli",
            command,
            str(run.folder),
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@contextlib.asynccontextmanager
async def services(run: Run, env: dict[str, str]) -> AsyncIterator[list]:
    """Launchers and the trainer, running and beating before the clock starts; stopped after."""
    processes = [await start_service("launch", run, env) for _ in range(run.launchers)]
    processes.append(await start_service("train", run, env))
    try:
        await wait_ready(run, processes)
        yield processes
    finally:
        for process in processes:
            if process.returncode is None:
                process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                await asyncio.wait_for(process.wait(), 60)
            except TimeoutError:
                process.kill()
                await process.wait()


async def wait_ready(run: Run, processes: list, wait_s: float = 60) -> None:
    """Until every launcher and the trainer write a running heartbeat for the use case."""
    redis = connect_redis(ConnectionSettings())
    try:
        async with asyncio.timeout(wait_s):
            while True:
                for process in processes:
                    if process.returncode is not None:
                        raise BenchmarkError(f"a service of {run.name} exited; see {run.log}")
                beats = await read_heartbeats(redis, heartbeat_pattern())
                mine = [beat for beat in beats if run.name in beat.usecases]
                launchers = sum(beat.service == "launcher" for beat in mine)
                trainers = sum(beat.service == "trainer" for beat in mine)
                if launchers >= run.launchers and trainers >= 1:
                    return
                await asyncio.sleep(0.2)
    except TimeoutError as error:
        raise BenchmarkError(f"{run.name}: services not ready within {wait_s:g} s") from error
    finally:
        await redis.aclose()


async def produce(run: Run, env: dict[str, str]) -> float:
    """Replay the file; returns when the producer started (epoch s)."""
    started = time.time()
    producer = await start_service("produce", run, env)
    if await producer.wait() != 0:
        raise BenchmarkError(f"the producer of {run.name} failed; see {run.log}")
    return started


async def read_outputs(bootstrap: str, run: Run, processes: list) -> list[tuple[Output, int]]:
    """Every output, to the topic's end offsets once each record has one (duplicates
    included), with its Kafka timestamp; a service dying or the timeout fails the run."""
    consumer = make_consumer(
        bootstrap,
        None,
        f"{run.name}.outputs",
        max_partition_fetch_bytes=8 * 1024 * 1024,
        isolation_level="read_committed",
    )
    await start_client(consumer, bootstrap)
    rows: list[tuple[Output, int]] = []
    seen: set[str] = set()

    def take(batch: dict) -> None:
        for messages in batch.values():
            for message in messages:
                output = Output.decode(message.value)
                rows.append((output, message.timestamp))
                seen.add(output.record_id)

    try:
        async with asyncio.timeout(RUN_TIMEOUT_S):
            while len(seen) < run.lines:
                if any(p.returncode is not None for p in processes):
                    raise BenchmarkError(f"a service of {run.name} died; see {run.log}")
                take(await consumer.getmany(timeout_ms=1000, max_records=20000))
            ends = await consumer.end_offsets(list(consumer.assignment()))
            for tp, end in ends.items():
                while await consumer.position(tp) < end:
                    take(await consumer.getmany(tp, timeout_ms=1000, max_records=20000))
    except TimeoutError as error:
        raise BenchmarkError(
            f"{run.name}: {len(seen):,} of {run.lines:,} records predicted within "
            f"{RUN_TIMEOUT_S} s; see {run.log}"
        ) from error
    finally:
        await consumer.stop()
    if len(rows) != run.lines:
        raise BenchmarkError(f"{run.name}: {len(rows) - run.lines} duplicate outputs")
    return rows


class HandoffProbe:
    """Does what a launcher does with every version the trainer publishes (fetch it, verify
    and unpickle it) and times it."""

    def __init__(self, usecase: str):
        self.usecase = usecase
        self.keys = UseCaseKeys(usecase)
        self.samples: list[dict[str, float]] = []
        self.metas: list[ModelMeta] = []

    async def follow(self) -> None:
        redis = connect_redis(ConnectionSettings())
        last = "0"
        try:
            while True:
                replies = await redis.xread({self.keys.models: last}, count=100, block=1000)
                for _, entries in replies or []:
                    for entry_id, fields in entries:
                        last = entry_id.decode()
                        meta = ModelMeta.decode(fields)
                        self.metas.append(meta)
                        await self._measure(redis, meta)
        finally:
            await redis.aclose()

    async def _measure(self, redis, meta: ModelMeta) -> None:
        started = time.perf_counter()
        envelope = await redis.get(self.keys.model(meta.version))
        fetched = time.perf_counter()
        if envelope is None:
            return  # already deleted (model.keep): a launcher would skip it too
        await asyncio.to_thread(unseal, SECRET.encode(), self.usecase, meta.version, envelope)
        loaded = time.perf_counter()
        self.samples.append(
            {
                "bytes": len(envelope),
                "seal_ms": (meta.seal_seconds or 0) * 1000,
                "fetch_ms": (fetched - started) * 1000,
                "load_ms": (loaded - fetched) * 1000,
            }
        )


async def pipeline_run(
    work: Path, datafile: Path, lines: int, label: str, *, launchers: int = 1, streaming: str = ""
) -> dict[str, Any]:
    settings = ConnectionSettings()
    name = f"bench{uuid.uuid4().hex[:8]}"
    partitions = f"topic.partitions={launchers}\n" if launchers > 1 else ""
    folder = write_usecase(work, name, datafile, streaming=partitions + streaming)
    run = Run(name, folder, lines, launchers)
    usecase = load_usecase(folder, settings)
    env = dict(os.environ, STREAMER_MODEL_SECRET=SECRET, STREAMER_INFLUX_DB=name)
    probe = HandoffProbe(name)
    follower = asyncio.create_task(probe.follow())
    try:
        async with services(run, env) as processes:
            started = await produce(run, env)
            rows = await read_outputs(usecase.bootstrap_servers, run, processes)
            finished = max(timestamp for _, timestamp in rows) / 1000
            trainer = await wait_trainer(probe, lines, processes, run)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await cleanup(settings, name)
    return figures(label, rows, started, finished, trainer, probe)


async def wait_trainer(probe: HandoffProbe, lines: int, processes: list, run: Run) -> dict:
    """Until a version has learnt every record: when, and the trainer's lag on the way."""
    async with asyncio.timeout(600):
        while not probe.metas or (probe.metas[-1].records_learned or 0) < lines:
            if processes[-1].returncode is not None:
                raise BenchmarkError(f"the trainer of {run.name} died; see {run.log}")
            await asyncio.sleep(0.2)
    lags = [meta.lag_records for meta in probe.metas if meta.lag_records is not None]
    return {
        "done_at": time.time(),
        "versions": len(probe.metas),
        "lag_records_p50": _percentile(lags, 0.5),
        "lag_records_max": max(lags, default=None),
    }


async def cleanup(settings: ConnectionSettings, name: str) -> None:
    redis = connect_redis(settings)
    influx = AioinfluxStore(settings)
    try:
        keys = [key async for key in redis.scan_iter(f"{UseCaseKeys(name).prefix}*")]
        if keys:
            await redis.delete(*keys)
        await influx.query(f'DROP DATABASE "{name}"')
    finally:
        await redis.aclose()
        await influx.close()


def figures(
    label: str,
    rows: list[tuple[Output, int]],
    started: float,
    finished: float,
    trainer: dict,
    probe: HandoffProbe,
) -> dict[str, Any]:
    ordered = sorted(rows, key=lambda row: int(row[0].record_id.rsplit(":", 1)[1]))
    accuracy, macro_f1 = metrics.Accuracy(), metrics.MacroF1()
    for output, _ in ordered:
        accuracy.update(output.targets[0], output.prediction)
        macro_f1.update(output.targets[0], output.prediction)
    staleness = [o.staleness for o, _ in rows if o.staleness is not None]
    latencies = [ts - o.timings.produced for o, ts in rows if o.timings.produced is not None]
    handoff = {
        key: {
            "p50": _percentile([s[key] for s in probe.samples], 0.5),
            "p99": _percentile([s[key] for s in probe.samples], 0.99),
        }
        for key in ("bytes", "seal_ms", "fetch_ms", "load_ms")
    }
    return {
        "mode": label,
        "records": len(rows),
        "records_per_s": round(len(rows) / (finished - started), 1),
        "seconds": round(finished - started, 2),
        "accuracy": round(accuracy.get(), 5),
        "macro_f1": round(macro_f1.get(), 5),
        "unversioned_outputs": sum(o.model_version is None for o, _ in rows),
        "staleness": {"p50": _percentile(staleness, 0.5), "p99": _percentile(staleness, 0.99)},
        "latency_ms": {q: _percentile(latencies, v) for q, v in _QUANTILES.items()},
        "trainer": {
            "versions": trainer["versions"],
            "caught_up_s_after_last_output": round(trainer["done_at"] - finished, 2),
            "lag_records_p50": trainer["lag_records_p50"],
            "lag_records_max": trainer["lag_records_max"],
        },
        "handoff": {"versions_measured": len(probe.samples), **handoff},
    }


_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(float(ordered[min(len(ordered) - 1, int(q * len(ordered)))]), 2)


# ---- the whole benchmark ----------------------------------------------------------------------


async def one_run(lines: list[str], work: Path) -> dict[str, Any]:
    datafile = work / "kdd.csv"
    if not datafile.exists():
        datafile.write_text("".join(lines))
    count = len(lines)
    shipped = load_usecase(write_usecase(work, f"loop{uuid.uuid4().hex[:6]}", datafile))
    river = river_loop(parse_all(lines))
    wrapper = wrapper_loop(lines, shipped)
    fast = "producerType=FAST\n"
    default = await pipeline_run(work, datafile, count, "default", streaming=fast)
    learning = await pipeline_run(
        work, datafile, count, "launcher.learn=true", streaming=fast + "launcher.learn=true\n"
    )
    two = await pipeline_run(work, datafile, count, "2 launchers", launchers=2, streaming=fast)
    # half the default mode's rate, in blocks of 100 ms
    per_block = max(1, int(default["records_per_s"] / 2 / 10))
    paced = await pipeline_run(
        work,
        datafile,
        count,
        f"paced at {per_block * 10:,} records/s",
        streaming=f"producerType=BLOCK\nrecordsPerBlock={per_block}\nproducerTimeInterval=100\n",
    )
    base = river["records_per_s"]
    for result in (wrapper, default, learning, two, paced):
        result["ratio_to_river_loop"] = round(result["records_per_s"] / base, 3)
    return {
        "river_loop": river,
        "wrapper_loop": wrapper,
        "pipeline": {"default": default, "learning_launcher": learning, "two_launchers": two},
        "half_load_latency": {
            "rate": per_block * 10,
            "latency_ms": paced["latency_ms"],
            "staleness": paced["staleness"],
            "accuracy": paced["accuracy"],
        },
        "paced_run": paced,
    }


def median_of(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each number the median of the runs' (lists and text from the first run)."""
    first = runs[0]
    if isinstance(first, dict):
        return {key: median_of([run[key] for run in runs]) for key in first}
    if isinstance(first, int | float) and not isinstance(first, bool):
        values = [run for run in runs if run is not None]
        return round(statistics.median(values), 5) if values else None
    return first


async def main(rows: int | None, repeat: int) -> dict[str, Any]:
    settings = ConnectionSettings()
    source = settings.data_dir / "kdd-cup-99" / "kddcup.data_10_percent.gz"
    with gzip.open(source, "rt") as handle:
        lines = [line for line in handle if line.strip()][:rows]
    work = Path(tempfile.mkdtemp(prefix="streamer-bench-"))
    runs = [await one_run(lines, work) for _ in range(repeat)]
    report = {
        "benchmark": "kdd-cup-99 10% end to end",
        "command": "make bench"
        + (f" BENCH_ARGS='{' '.join(sys.argv[1:])}'" if sys.argv[1:] else ""),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "records": len(lines),
        "repeat": repeat,
        **median_of(runs),
        "runs": runs if repeat > 1 else None,
    }
    out_dir = REPO / ".run" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=None, help="only the first N rows")
    parser.add_argument("--repeat", type=int, default=1, help="runs; the report is their median")
    arguments = parser.parse_args()
    try:
        result = asyncio.run(main(arguments.rows, arguments.repeat))
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))
