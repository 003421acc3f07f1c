"""Benchmark: the whole KDD Cup 99 10% file through producer -> launcher (+ trainer), as fast as
it goes, against River's own test-then-train loop on the same rows in the same run.

Run with `make bench` (services started, STREAMER_* set). Writes a JSON report under
.run/bench/ and prints it as the last line. Figures: records/s end to end and for the raw loop,
produce-to-output latency percentiles, trainer lag, model hand-off bytes and ms, prequential
accuracy and macro-F1 of the pipeline and of the raw loop.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from river import metrics

from shared.algorithms.registry import build_algorithm
from shared.clients.kafka import make_consumer, start_client
from shared.clients.redis import connect_redis
from shared.config import ConnectionSettings, load_usecase
from shared.modelstore import ModelStore, unseal
from shared.records import KDDClassificationRecord

REPO = Path(__file__).resolve().parents[1]
SECRET = "benchmark-secret"


def raw_loop(lines: list[str], usecase) -> dict:
    """River's test-then-train loop, through the same algorithm wrapper as the pipeline."""
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
    seconds = time.perf_counter() - started
    return {
        "records": len(lines),
        "seconds": round(seconds, 2),
        "records_per_s": round(len(lines) / seconds, 1),
        "accuracy": round(accuracy.get(), 5),
        "macro_f1": round(macro_f1.get(), 5),
    }


async def collect(bootstrap: str, topic: str, expected: int, wait_s: float) -> list[tuple]:
    consumer = make_consumer(bootstrap, None, topic, max_partition_fetch_bytes=8 * 1024 * 1024)
    await start_client(consumer, bootstrap)
    rows: list[tuple] = []
    seen: set[str] = set()
    try:
        async with asyncio.timeout(wait_s):
            while len(seen) < expected:
                batch = await consumer.getmany(timeout_ms=1000, max_records=20000)
                for messages in batch.values():
                    for message in messages:
                        output = json.loads(message.value)
                        if output["record_id"] in seen:
                            continue
                        seen.add(output["record_id"])
                        rows.append(
                            (
                                int(output["record_id"].rsplit(":", 1)[1]),
                                output["targets"][0],
                                output["prediction"],
                                output["timings"]["produced"],
                                message.timestamp,
                            )
                        )
    finally:
        await consumer.stop()
    return rows


def percentile(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=1000)[int(q * 1000) - 1], 1)


async def main(rows_limit: int | None) -> dict:
    settings = ConnectionSettings()
    data_dir = settings.data_dir
    source = data_dir / "kdd-cup-99" / "kddcup.data_10_percent.gz"
    with gzip.open(source, "rt") as handle:
        lines = [line for line in handle if line.strip()]
    if rows_limit:
        lines = lines[:rows_limit]
    name = f"bench{uuid.uuid4().hex[:8]}"
    work = Path(tempfile.mkdtemp(prefix="streamer-bench-"))
    datafile = work / "kdd.csv"
    datafile.write_text("".join(lines))
    folder = work / name
    folder.mkdir()
    shipped = REPO / "usecases" / "kdd-cup-99"
    (folder / "streaming.props").write_text(
        f"mainTopic={name}\noutputTopic={name}.outputs\nproblem.type=KDDClassification\n"
        f"datafile={datafile}\nproducerType=FAST\nreadingTimeInterval=100\n"
    )
    (folder / "algs.props").write_text((shipped / "algs.props").read_text())
    usecase = load_usecase(folder, settings)

    raw = raw_loop(lines, usecase)

    env = dict(os.environ, STREAMER_MODEL_SECRET=SECRET, STREAMER_INFLUX_DB=name)
    log = work / "services.log"
    processes = []
    with log.open("ab") as out:

        async def start(command: str) -> asyncio.subprocess.Process:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "services.cli",
                command,
                str(folder),
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

        try:
            processes = [await start("launch"), await start("train")]
            await asyncio.sleep(3)  # both have joined / connected before the clock starts
            started = time.time()
            producer = await start("produce")
            if await producer.wait() != 0:
                raise RuntimeError(f"the producer failed; see {log}")
            produced_s = time.time() - started
            outputs = await collect(usecase.bootstrap_servers, f"{name}.outputs", len(lines), 1800)
            finished = max(row[4] for row in outputs) / 1000
            trainer_done = await wait_trainer(settings, name, len(lines), 600)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                await asyncio.wait_for(process.wait(), 60)

    outputs.sort()
    accuracy, macro_f1 = metrics.Accuracy(), metrics.MacroF1()
    for _, target, prediction, _, _ in outputs:
        accuracy.update(target, prediction)
        macro_f1.update(target, prediction)
    latencies = [row[4] - row[3] for row in outputs]
    handoff = trainer_done["handoff"]
    report = {
        "benchmark": "kdd-cup-99 10% end to end",
        "records": len(lines),
        "pipeline": {
            "records_per_s": round(len(outputs) / (finished - started), 1),
            "seconds": round(finished - started, 2),
            "producer_seconds": round(produced_s, 2),
            "outputs": len(outputs),
            "latency_ms": {
                "p50": percentile(latencies, 0.50),
                "p95": percentile(latencies, 0.95),
                "p99": percentile(latencies, 0.99),
            },
            "accuracy": round(accuracy.get(), 5),
            "macro_f1": round(macro_f1.get(), 5),
        },
        "raw_river_loop": raw,
        "trainer": {
            "versions": trainer_done["versions"],
            "lag_ms_last": trainer_done["lag_ms"],
            "caught_up_s_after_last_output": round(trainer_done["at"] - finished, 2),
        },
        "model_handoff": handoff,
        "ratio_pipeline_to_raw": round(
            (len(outputs) / (finished - started)) / raw["records_per_s"], 3
        ),
    }
    out_dir = REPO / ".run" / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"pipeline-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=2))
    return report


async def wait_trainer(settings: ConnectionSettings, name: str, rows: int, wait_s: float) -> dict:
    """Wait until the trainer has learned every row; measure the hand-off of its last model."""
    redis = connect_redis(settings)
    store = ModelStore(redis, name, SECRET.encode())
    try:
        deadline = time.time() + wait_s
        while True:
            versions = await store.versions()
            if (versions and versions[-1]["records_learned"] >= rows) or time.time() > deadline:
                break
            await asyncio.sleep(1)
        last = versions[-1]
        started = time.perf_counter()
        envelope = await redis.get(store.key(f"model:{last['version']}"))
        fetched = time.perf_counter()
        unseal(SECRET.encode(), name, last["version"], envelope)
        loaded = time.perf_counter()
        return {
            "at": time.time(),
            "versions": len(versions),
            "lag_ms": last.get("lag_ms"),
            "handoff": {
                "bytes": len(envelope),
                "publish_seal_ms": round(last["seal_seconds"] * 1000, 1),
                "fetch_ms": round((fetched - started) * 1000, 1),
                "load_ms": round((loaded - fetched) * 1000, 1),
                "records_learned": last["records_learned"],
            },
        }
    finally:
        await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=None, help="only the first N rows")
    report = asyncio.run(main(parser.parse_args().rows))
    print(json.dumps(report))
