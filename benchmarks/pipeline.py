"""Benchmark: the KDD Cup 99 10% file through the pipeline, against River's own loop on the same
rows, in one run (`make bench`; services started, STREAMER_* set).

Figures, each run on the same rows:
- River's own loop: plain `river` objects on records parsed beforehand, nothing of ours in
  the timed loop (predict_one, metric updates, learn_one); and the wrapper loop (our parsing
  and algorithm wrapper, test-then-train in one process);
- the pipeline, as fast as it goes (producer FAST): the default mode (launchers predict, the
  trainer learns), the same with `launcher.transactions=false` (at least once: the cost of
  exactly-once, `launcher_transactions_cost`), `launcher.learn=true`, and two launchers on two
  partitions: records/s end
  to end and the ratio to River's loop, prequential accuracy and macro-F1, staleness p50/p99,
  trainer lag, model hand-off (bytes, seal, fetch and load ms over every version published);
- produce-to-prediction latency p50/p95/p99 at half the default mode's measured rate (a paced
  replay);
- champion and challenger: River's tree as champion, MOA's Hoeffding tree as challenger
  (`challengers=moa.HoeffdingTree`), launchers, trainer and evaluator: the pipeline's records/s
  with one challenger, and each model's accuracy as the leaderboard reports it (the evaluator's
  cumulative view, read back from InfluxDB) against the same plain loops: River's, and MOA's
  own loop in Java (capymoa's prequential evaluation on an ARFF file of the same rows);
- MOA alone (`algorithm=moa.HoeffdingTree`): the trainer learns each fetched batch with one
  learn_many handed to the JVM; by default (launchers predict) and with `launcher.learn=true`
  (the launcher test-then-trains each batch in one predict_learn_many): records/s against
  River's plain loop, accuracy against MOA's own loop. Their hand-off probe fetches versions
  without unpickling them (a JVM of its own in this process would take a core from the run).

It fails (exit 1) on a timeout, a missing or duplicated output, or a service that dies, rather
than report stale figures. `--repeat 3` reports the median of three runs (every run is kept in
the report); `--runs moa,moa-learning` runs only those (RUNS lists them; the paced run needs
the default one). The JSON report goes to .run/bench/ and is printed as the last line.
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
from collections.abc import AsyncIterator, Sequence
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
from shared.wire.influx import LeaderboardMeasurement
from shared.wire.kafka import Output
from shared.wire.keys import UseCaseKeys, heartbeat_pattern
from shared.wire.store import Fields, ModelMeta

REPO = Path(__file__).resolve().parents[1]
SECRET = "benchmark-secret"
SHIPPED = REPO / "usecases" / "kdd-cup-99"
#: The tree every loop and the pipeline use (usecases/kdd-cup-99/algs.props).
TREE_PARAMS: dict[str, Any] = {"grace_period": 200, "max_depth": 20}
RUN_TIMEOUT_S = 1800
#: The pipeline runs, in order (`--runs` picks some).
RUNS = (
    "default",
    "no-transactions",
    "learning",
    "two",
    "paced",
    "challenger",
    "moa",
    "moa-learning",
)
MOA_TREE = "moa.HoeffdingTree"
#: MOA's tree alone, and as the challenger of River's (the shipped algs.props' champion).
MOA_ALGS = f"algorithm={MOA_TREE}\n"
CHALLENGER_ALGS = f"challengers={MOA_TREE}\n"


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


def moa_loop(parsed: list[tuple[dict, str]], work: Path) -> dict[str, Any]:
    """MOA's own test-then-train loop in Java on the same rows (an ARFF file listing nominal
    values in order of appearance, as our schema indexes them): benchmarks/moa.py."""
    from benchmarks.moa import moa_own_loop, write_arff

    arff = write_arff(parsed, work / "kdd.arff")
    return moa_own_loop(arff, len(parsed))


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
    evaluator: bool = False  # the leaderboard of a run with challengers is the evaluator's
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
    if algs.startswith("algorithm="):  # another champion: the shipped one's lines go
        shipped = "".join(
            line for line in shipped.splitlines(keepends=True) if not line.startswith("algorithm")
        )
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
    if run.evaluator:
        processes.append(await start_service("evaluate", run, env))
    processes.append(await start_service("train", run, env))  # last: wait_trainer watches it
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
                evaluators = sum(beat.service == "evaluator" for beat in mine)
                if launchers >= run.launchers and trainers >= 1 and evaluators >= run.evaluator:
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
    # kept undecoded until the run is over: this reader shares the machine with the pipeline,
    # and decoding every output as it comes took a fifth of a core from it
    raw: list[tuple[bytes, int]] = []
    seen: set[bytes] = set()  # output keys: one per input record (a replay repeats its key)

    def take(batch: dict) -> None:
        for messages in batch.values():
            for message in messages:
                raw.append((message.value, message.timestamp))
                seen.add(message.key)

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
    rows = [(Output.decode(value), timestamp) for value, timestamp in raw]
    if len({output.record_id for output, _ in rows}) != run.lines:
        raise BenchmarkError(f"{run.name}: outputs do not cover {run.lines:,} distinct records")
    if len(rows) != run.lines:
        raise BenchmarkError(f"{run.name}: {len(rows) - run.lines} duplicate outputs")
    return rows


class HandoffProbe:
    """Does what a launcher does with every version the trainer publishes (fetch it, verify
    and unpickle it) and times it."""

    def __init__(self, usecase: str, load: bool = True):
        self.usecase = usecase
        self.load = load  # False: fetch only (a MOA model would start a JVM in this process)
        self.keys = UseCaseKeys(usecase)
        self.samples: list[dict[str, float]] = []
        self.metas: list[ModelMeta] = []

    async def follow(self) -> None:
        redis = connect_redis(ConnectionSettings())
        last = "0"
        try:
            while True:
                # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
                replies: list[tuple[bytes, list[tuple[bytes, Fields]]]] | None = await redis.xread(  # type: ignore[assignment]
                    {self.keys.models: last}, count=100, block=1000
                )
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
        if self.load:
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
    work: Path,
    datafile: Path,
    lines: int,
    label: str,
    *,
    launchers: int = 1,
    streaming: str = "",
    algs: str = "",
    evaluator: bool = False,
    load_versions: bool = True,
) -> dict[str, Any]:
    settings = ConnectionSettings()
    name = f"bench{uuid.uuid4().hex[:8]}"
    partitions = f"topic.partitions={launchers}\n" if launchers > 1 else ""
    folder = write_usecase(work, name, datafile, streaming=partitions + streaming, algs=algs)
    run = Run(name, folder, lines, launchers, evaluator)
    usecase = load_usecase(folder, settings)
    env = dict(os.environ, STREAMER_MODEL_SECRET=SECRET, STREAMER_INFLUX_DB=name)
    probe = HandoffProbe(name, load=load_versions)
    follower = asyncio.create_task(probe.follow())
    board = None
    try:
        async with services(run, env) as processes:
            started = await produce(run, env)
            rows = await read_outputs(usecase.bootstrap_servers, run, processes)
            finished = max(timestamp for _, timestamp in rows) / 1000
            trainer = await wait_trainer(probe, lines, processes, run)
            if evaluator:
                ranked = sum(output.champion is not None for output, _ in rows)
                board = await wait_leaderboard(settings, run, ranked, processes)
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        await cleanup(settings, name)
    result = figures(label, rows, started, finished, trainer, probe)
    if board is not None:
        result["leaderboard"] = board
    return result


async def wait_leaderboard(
    settings: ConnectionSettings, run: Run, ranked: int, processes: list
) -> dict[str, Any]:
    """Each model's accuracy and macro-F1 as the leaderboard reports them (the evaluator's
    cumulative view, in InfluxDB), once it covers the `ranked` outputs that name a champion
    (those predicted before the first version have no model)."""
    influx = AioinfluxStore(settings.model_copy(update={"influx_db": run.name}))
    board = LeaderboardMeasurement(run.name)
    try:
        async with asyncio.timeout(600):
            while True:
                if any(p.returncode is not None for p in processes):
                    raise BenchmarkError(f"a service of {run.name} died; see {run.log}")
                scores = [s for s in await board.latest(influx, "cumulative") if s.pairs]
                by_model: dict[str, dict[str, Any]] = {}
                for score in scores:
                    row = by_model.setdefault(score.model, {"role": score.role})
                    row["records"] = score.pairs
                    row[score.metric] = None if score.value is None else round(score.value, 5)
                if len(by_model) > 1 and all(row["records"] >= ranked for row in by_model.values()):
                    return by_model
                await asyncio.sleep(1)
    except TimeoutError as error:
        raise BenchmarkError(f"{run.name}: the leaderboard never covered {ranked:,}") from error
    finally:
        await influx.close()


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


def _percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(float(ordered[min(len(ordered) - 1, int(q * len(ordered)))]), 2)


# ---- the whole benchmark ----------------------------------------------------------------------


async def one_run(lines: list[str], work: Path, runs: tuple[str, ...] = RUNS) -> dict[str, Any]:
    datafile = work / "kdd.csv"
    if not datafile.exists():
        datafile.write_text("".join(lines))
    count = len(lines)
    shipped = load_usecase(write_usecase(work, f"loop{uuid.uuid4().hex[:6]}", datafile))
    parsed = parse_all(lines)
    river = river_loop(parsed)
    wrapper = wrapper_loop(lines, shipped)
    fast = "producerType=FAST\n"
    pipeline: dict[str, Any] = {}
    report: dict[str, Any] = {"river_loop": river, "wrapper_loop": wrapper}
    if "default" in runs:
        pipeline["default"] = await pipeline_run(work, datafile, count, "default", streaming=fast)
    if "no-transactions" in runs:  # at-least-once launchers: what exactly-once costs
        pipeline["no_transactions"] = await pipeline_run(
            work, datafile, count, "launcher.transactions=false",
            streaming=fast + "launcher.transactions=false\n",
        )  # fmt: skip
    if "learning" in runs:
        pipeline["learning_launcher"] = await pipeline_run(
            work, datafile, count, "launcher.learn=true", streaming=fast + "launcher.learn=true\n"
        )
    if "two" in runs:
        pipeline["two_launchers"] = await pipeline_run(
            work, datafile, count, "2 launchers", launchers=2, streaming=fast
        )
    if "paced" in runs and "default" in pipeline:
        # half the default mode's rate, in blocks of 100 ms
        per_block = max(1, int(pipeline["default"]["records_per_s"] / 2 / 10))
        paced = await pipeline_run(
            work,
            datafile,
            count,
            f"paced at {per_block * 10:,} records/s",
            streaming=f"producerType=BLOCK\nrecordsPerBlock={per_block}\n"
            "producerTimeInterval=100\n",
        )
        report["half_load_latency"] = {
            "rate": per_block * 10,
            "latency_ms": paced["latency_ms"],
            "staleness": paced["staleness"],
            "accuracy": paced["accuracy"],
        }
        report["paced_run"] = paced
    if {"challenger", "moa", "moa-learning"} & set(runs):
        report["moa_loop"] = moa_loop(parsed, work)
    if "challenger" in runs:
        pipeline["champion_and_challenger"] = await pipeline_run(
            work, datafile, count, f"champion {shipped.algs.algorithm}, challenger {MOA_TREE}",
            streaming=fast, algs=CHALLENGER_ALGS, evaluator=True, load_versions=False,
        )  # fmt: skip
    if "moa" in runs:
        pipeline["moa"] = await pipeline_run(
            work, datafile, count, f"{MOA_TREE} alone", streaming=fast, algs=MOA_ALGS,
            load_versions=False,
        )  # fmt: skip
    if "moa-learning" in runs:
        pipeline["moa_learning_launcher"] = await pipeline_run(
            work, datafile, count, f"{MOA_TREE} alone, launcher.learn=true",
            streaming=fast + "launcher.learn=true\n", algs=MOA_ALGS, load_versions=False,
        )  # fmt: skip
    base = river["records_per_s"]
    for result in (wrapper, *pipeline.values(), report.get("paced_run")):
        if result is not None:
            result["ratio_to_river_loop"] = round(result["records_per_s"] / base, 3)
    if "default" in pipeline and "no_transactions" in pipeline:
        with_them = pipeline["default"]["records_per_s"]
        without = pipeline["no_transactions"]["records_per_s"]
        report["launcher_transactions_cost"] = round(1 - with_them / without, 3)
    moa = report.get("moa_loop")
    for key in ("moa", "moa_learning_launcher"):
        if key in pipeline and moa is not None:
            points = 100 * (pipeline[key]["accuracy"] - moa["accuracy"])
            pipeline[key]["accuracy_minus_moa_loop_points"] = round(points, 3)
    board = pipeline.get("champion_and_challenger", {}).get("leaderboard")
    if board is not None and moa is not None:
        report["leaderboard_against_loops"] = {
            "champion (River tree)": _against(board, shipped.algs.algorithm, river["accuracy"]),
            "challenger (MOA tree)": _against(board, MOA_TREE, moa["accuracy"]),
        }
    report["pipeline"] = pipeline
    return report


def _against(board: dict[str, Any], model: str, loop_accuracy: float) -> dict[str, Any]:
    """A model's leaderboard accuracy next to its plain loop's, in points."""
    accuracy = board.get(model, {}).get("accuracy")
    return {
        "leaderboard_accuracy": accuracy,
        "plain_loop_accuracy": loop_accuracy,
        "minus_loop_points": None
        if accuracy is None
        else round(100 * (accuracy - loop_accuracy), 3),
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


async def main(rows: int | None, repeat: int, runs: tuple[str, ...] = RUNS) -> dict[str, Any]:
    settings = ConnectionSettings()
    source = settings.data_dir / "kdd-cup-99" / "kddcup.data_10_percent.gz"
    with gzip.open(source, "rt") as handle:
        lines = [line for line in handle if line.strip()][:rows]
    work = Path(tempfile.mkdtemp(prefix="streamer-bench-"))
    results = [await one_run(lines, work, runs) for _ in range(repeat)]
    report = {
        "benchmark": "kdd-cup-99 10% end to end",
        "command": "make bench"
        + (f" BENCH_ARGS='{' '.join(sys.argv[1:])}'" if sys.argv[1:] else ""),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "load_average_after": [round(load, 2) for load in os.getloadavg()],
        },
        "records": len(lines),
        "repeat": repeat,
        **median_of(results),
        "runs": results if repeat > 1 else None,
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
    parser.add_argument(
        "--runs", default=",".join(RUNS), help=f"comma-separated, of: {', '.join(RUNS)}"
    )
    arguments = parser.parse_args()
    chosen = tuple(name.strip() for name in arguments.runs.split(",") if name.strip())
    unknown = sorted(set(chosen) - set(RUNS))
    if unknown:
        parser.error(f"unknown run {unknown[0]!r}; runs: {', '.join(RUNS)}")
    try:
        result = asyncio.run(main(arguments.rows, arguments.repeat, chosen))
    except BenchmarkError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps(result))
