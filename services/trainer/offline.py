"""Offline mode (the original's AlgInvokerMain_offline): train and/or test without Kafka.

Training data: `training.source` (else `datafile`) when SOURCE is `file`, the use case's
InfluxDB measurement when SOURCE is `influx` (read, never wiped). Test data: `datafile`.
The trained model is published in Redis like the trainer's and, with MODEL_PATH, also written
to that file as the same authenticated envelope (binary-safe); a test without training loads
MODEL_PATH when given, else Redis' latest version. Results go to `<usecase>_resultsTrain.csv`
and `<usecase>_resultsTest.csv` (`;`-separated, header `timestamp;<values>;target;output`).
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shared.algorithms.base import Algorithm
from shared.algorithms.registry import build_algorithm
from shared.clients.influx import AioinfluxStore
from shared.clients.redis import check_redis, connect_redis
from shared.config import UseCase
from shared.errors import StreamerError
from shared.metrics.registry import build_usecase_metrics
from shared.modelstore import ModelStore, model_secret, seal, unseal
from shared.records import RecordError, TimeRecord, record_class_for
from shared.wire.influx import RecordsMeasurement

log = logging.getLogger("offline")

Source = Literal["file", "influx"]


@dataclass
class OfflineReport:
    trained_on: int = 0
    tested_on: int = 0
    skipped_lines: int = 0
    model_version: int | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)


def read_records(path: Path, record_class: type[TimeRecord], header: bool) -> tuple[list, int]:
    """Every record of a data file, and the number of lines that did not parse (skipped)."""
    if not path.is_file():
        raise StreamerError(f"data file {path} does not exist")
    opener = gzip.open if path.suffix == ".gz" else open
    records, skipped = [], 0
    source = path.name.split(".")[0]
    with opener(path, "rt", encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if (header and number == 1) or not line.strip():
                continue
            try:
                records.append(record_class.parse(line, source))
            except RecordError as error:
                skipped += 1
                log.warning(
                    "line skipped", extra={"file": str(path), "line": number, "reason": str(error)}
                )
    return records, skipped


def write_results(path: Path, records: list[TimeRecord]) -> None:
    names = list(records[0].values) if records else []
    with path.open("w", newline="") as out:
        writer = csv.writer(out, delimiter=";")
        writer.writerow(["timestamp", *names, "target", "output"])
        for record in records:
            stamp = record.timestamp.isoformat() if record.timestamp else ""
            writer.writerow(
                [
                    stamp,
                    *(record.values.get(name) for name in names),
                    " ".join(record.targets),
                    " ".join(map(str, record.outputs)),
                ]
            )


def score(usecase: UseCase, records: list[TimeRecord]) -> dict[str, float | None]:
    """The use case's evaluation.metrics over the whole test set (None: undefined)."""
    metrics = build_usecase_metrics(usecase)
    for record in records:
        target = record.targets[0] if record.targets else None
        output = record.outputs[0] if record.outputs else None
        for metric in metrics:
            metric.update(target, output)
    return {metric.name: metric.get() for metric in metrics}


async def run_offline(
    usecase: UseCase,
    source: Source,
    train: bool,
    test: bool,
    model_path: Path | None,
    output_dir: Path = Path("."),
) -> OfflineReport:
    report = OfflineReport()
    record_class = record_class_for(usecase)
    secret = model_secret(usecase.connections)
    redis = connect_redis(usecase.connections)
    try:
        await check_redis(redis, usecase.connections.redis_url)
        store = ModelStore(redis, usecase.name, secret)
        algorithm: Algorithm | None = None
        if train:
            algorithm, trained = await _train(usecase, source, record_class, report)
            started = time.perf_counter()
            published = await store.publish(
                algorithm,
                mode="offline",
                reason=f"offline {source}",
                records_learned=len(trained),
                training_seconds=round(time.perf_counter() - started, 4),
            )
            report.model_version = published.version
            if model_path is not None:
                envelope = await asyncio.to_thread(seal, secret, usecase.name, 0, algorithm)
                await asyncio.to_thread(model_path.write_bytes, envelope)
            path = output_dir / f"{usecase.name}_resultsTrain.csv"
            await asyncio.to_thread(write_results, path, trained)
            report.files.append(str(path))
        if test:
            if algorithm is None:
                algorithm = await _load(store, usecase, secret, model_path)
            await _test(usecase, algorithm, record_class, report, output_dir)
    finally:
        await redis.aclose()
    return report


async def _train(usecase, source, record_class, report) -> tuple[Algorithm, list]:
    if source == "file":
        path = usecase.algs.training_source or usecase.streaming.datafile
        if path is None:
            raise StreamerError(f"{usecase.name}: neither training.source nor datafile is set")
        records, report.skipped_lines = await asyncio.to_thread(
            read_records, path, record_class, usecase.streaming.contains_header
        )
        xs = [record.values for record in records]
        ys = [record.targets[0] if record.targets else None for record in records]
    else:
        influx = AioinfluxStore(usecase.connections)
        try:
            await influx.check()
            measurement = RecordsMeasurement(usecase.name)
            stored, _ = await measurement.recent(influx, usecase.algs.training_maxdata)
        finally:
            await influx.close()
        records = []
        for item in stored:
            try:
                record = record_class.parse(item.line, item.series.source)
            except RecordError:
                report.skipped_lines += 1
                continue
            if not record.targets and item.target is not None:
                record.targets = [item.target]
            records.append(record)
        xs = [record.values for record in records]
        ys = [record.targets[0] if record.targets else None for record in records]
    if not records:
        raise StreamerError(f"{usecase.name}: no training data from {source}")
    algorithm = build_algorithm(usecase)
    labelled = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
    await asyncio.to_thread(
        algorithm.learn_many, [x for x, _ in labelled], [y for _, y in labelled]
    )
    report.trained_on = len(labelled)
    return algorithm, records


async def _load(store: ModelStore, usecase: UseCase, secret: bytes, model_path: Path | None):
    if model_path is not None:
        envelope = await asyncio.to_thread(_read_model, model_path)
        return await asyncio.to_thread(unseal, secret, usecase.name, 0, envelope)
    loaded = await store.load()
    if loaded is None or loaded.algorithm is None:
        raise StreamerError(f"{usecase.name}: no model in Redis to test; train first")
    return loaded.algorithm


async def _test(usecase, algorithm: Algorithm, record_class, report, output_dir: Path) -> None:
    if usecase.streaming.datafile is None:
        raise StreamerError(f"{usecase.name}: datafile (the test data) is not set")
    records, skipped = await asyncio.to_thread(
        read_records, usecase.streaming.datafile, record_class, usecase.streaming.contains_header
    )
    report.skipped_lines += skipped
    predictions: list[Any] = await asyncio.to_thread(
        algorithm.predict_many, [record.values for record in records]
    )
    for record, prediction in zip(records, predictions, strict=True):
        record.outputs = [prediction]
    report.tested_on = len(records)
    report.metrics = score(usecase, records)
    path = output_dir / f"{usecase.name}_resultsTest.csv"
    await asyncio.to_thread(write_results, path, records)
    report.files.append(str(path))


def _read_model(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as error:
        raise StreamerError(f"cannot read the model file {path}: {error}") from error
