"""The CPU side of one launcher batch, as plain functions (no I/O): parse each message with the
use case's record class, run the model (test, then train), and encode what the sinks receive.

Runs in the launcher's worker thread so the event loop keeps serving Kafka heartbeats.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import ConsumerRecord

from shared.algorithms.base import Algorithm
from shared.prepostprocessors import PrePostProcessor
from shared.records.base import RecordError, TimeRecord
from shared.recordstore import progress_point, record_point

RECORD_ID_HEADER = "record-id"


@dataclass
class DeadLetter:
    """A message that could not be parsed, with the reason, bound for `<topic>.dlq`."""

    message: ConsumerRecord
    reason: str


@dataclass
class BatchResult:
    """What the sinks must write before the batch's offsets can be committed."""

    influx_lines: list[str] = field(default_factory=list)
    outputs: list[tuple[bytes, bytes]] = field(default_factory=list)  # (key, JSON value)
    dead: list[DeadLetter] = field(default_factory=list)
    # (prediction, first target) of each processed record, for progress counters and tests
    scored: list[tuple[Any, Any]] = field(default_factory=list)
    # written after influx_lines succeeded: the trainer reads records up to these offsets
    progress_lines: list[str] = field(default_factory=list)


@dataclass
class ModelSlot:
    """The launcher's live model: what predicts, whether it learns, and its base version."""

    algorithm: Algorithm | None
    version: int | None
    learn: bool
    predict: bool


def record_id_of(message: ConsumerRecord) -> str:
    for key, value in message.headers or ():
        if key == RECORD_ID_HEADER:
            return value.decode("utf-8", "replace")
    return f"{message.topic}/{message.partition}/{message.offset}"


def process_batch(
    usecase: str,
    measurement: str,
    messages: Sequence[ConsumerRecord],
    record_class: type[TimeRecord],
    model: ModelSlot,
    processor: PrePostProcessor | None,
    consumed_ms: int,
) -> BatchResult:
    """Parse, (pre-process), predict then learn each record, (post-process), encode sinks."""
    result = BatchResult()
    records: list[TimeRecord] = []
    origins: list[ConsumerRecord] = []
    for message in messages:
        try:
            line = (message.value or b"").decode("utf-8")
            source = (message.key or b"").decode("utf-8", "replace")
            records.append(record_class.parse(line, source))
            origins.append(message)
        except UnicodeDecodeError:
            result.dead.append(DeadLetter(message, "not UTF-8 text"))
        except RecordError as error:
            result.dead.append(DeadLetter(message, str(error)))
    if processor is not None and records:
        records = list(processor.preprocess(records))
        if len(records) != len(origins):
            raise RuntimeError("a pre-processor must return one record per input record")
    for record, prediction in zip(records, _run_model(model, records), strict=True):
        record.outputs = [prediction]
    if processor is not None and records:
        records = list(processor.postprocess(records))
    predicted_ms = int(time.time() * 1000)
    for record, message in zip(records, origins, strict=True):
        record_id = record_id_of(message)
        event_time = int(record.timestamp.timestamp() * 1000) if record.timestamp else None
        event_time = event_time or message.timestamp
        output_id = f"{message.topic}/{message.partition}/{message.offset}"
        prediction = record.outputs[0] if record.outputs else None
        result.influx_lines.append(
            record_point(
                measurement,
                record,
                topic=message.topic,
                partition=message.partition,
                offset=message.offset,
                event_time_ms=event_time,
                record_id=record_id,
            )
        )
        value = {
            "id": output_id,
            "record_id": record_id,
            "usecase": usecase,
            "source": record.source,
            "event_time": event_time,
            "prediction": _jsonable(prediction),
            "targets": record.targets,
            "model_version": model.version,
            "timings": {
                "produced": message.timestamp,
                "consumed": consumed_ms,
                "predicted": predicted_ms,
            },
        }
        result.outputs.append((output_id.encode(), json.dumps(value).encode()))
        result.scored.append((prediction, record.targets[0] if record.targets else None))
    last: dict[tuple[str, int], int] = {}
    for message in messages:
        key = (message.topic, message.partition)
        last[key] = max(last.get(key, -1), message.offset)
    result.progress_lines = [
        progress_point(measurement, topic, partition, offset)
        for (topic, partition), offset in last.items()
    ]
    return result


def _run_model(model: ModelSlot, records: Sequence[TimeRecord]) -> list[Any]:
    """Test-then-train record by record for an incremental model that learns here; otherwise
    one `predict_many` for the batch (an external algorithm runs its script once per batch)."""
    algorithm = model.algorithm
    if algorithm is None:
        return [None] * len(records)
    if model.learn and algorithm.incremental:
        predictions = []
        for record in records:
            x = record.values
            predictions.append(algorithm.predict_one(x) if model.predict else None)
            if record.targets:
                algorithm.learn_one(x, record.targets[0])
        return predictions
    if not model.predict or not records:
        return [None] * len(records)
    targets = [record.targets[0] if record.targets else None for record in records]
    return algorithm.predict_many([record.values for record in records], targets)


def _jsonable(value: Any) -> Any:
    """Predictions as JSON: numpy scalars and other exotic types become plain values."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)
