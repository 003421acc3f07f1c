"""The CPU side of one launcher batch, as plain functions (no I/O): parse each message with the
use case's record class, predict with the serving model (and learn, when the launcher learns),
and encode what the sinks receive.

Runs in the launcher's worker thread so the event loop keeps serving Kafka heartbeats.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import ConsumerRecord, TopicPartition

from shared.algorithms.base import Algorithm
from shared.algorithms.contenders import Contenders
from shared.prepostprocessors import PrePostProcessor
from shared.records.base import TimeRecord
from shared.records.messages import Rejected, parse_messages
from shared.wire.influx import RecordsMeasurement
from shared.wire.kafka import (
    Output,
    Probabilities,
    input_id,
    partition_key,
    record_id_of,
)


@dataclass
class BatchResult:
    """What the sinks must write before the batch's offsets can be committed."""

    influx_lines: list[str] = field(default_factory=list)
    # per input partition, the key and value of each output, in order (they go to the output
    # partition of the same number): grouped here, off the event loop
    outputs: dict[TopicPartition, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    dead: list[Rejected] = field(default_factory=list)
    # (prediction, first target) of each processed record, for progress counters and tests
    scored: list[tuple[Any, Any]] = field(default_factory=list)
    # written after influx_lines succeeded: the trainer's refits read records up to these
    progress_lines: list[str] = field(default_factory=list)
    # per input partition, the offset after the batch's last message (what is committed)
    next_offsets: dict[TopicPartition, int] = field(default_factory=dict)
    staleness: list[int] = field(default_factory=list)
    messages: Sequence[ConsumerRecord] = ()  # the batch

    def output_count(self) -> int:
        return sum(map(len, self.outputs.values()))


@dataclass
class ServingModel:
    """The launcher's model: what predicts, which version it is, how far that version learnt
    each input partition (its `positions`), and whether it also learns here."""

    algorithm: Algorithm | None
    version: int | None
    positions: dict[str, int] = field(default_factory=dict)
    learn: bool = False
    predict: bool = True
    probabilities: int = 0  # output.probabilities: the k most probable classes published

    def staleness(self, topic: str, partition: int, offset: int) -> int | None:
        """Records of the partition before `offset` that this model has not learnt."""
        if self.algorithm is None:
            return None
        return max(0, offset - self.positions.get(partition_key(topic, partition), 0))


def process_batch(
    usecase: str,
    measurement: RecordsMeasurement,
    messages: Sequence[ConsumerRecord],
    record_class: type[TimeRecord],
    model: ServingModel,
    processor: PrePostProcessor | None,
    consumed_ms: int,
) -> BatchResult:
    """Parse, (pre-process), predict (then learn, in learning mode), (post-process), encode."""
    parsed = parse_messages(messages, record_class, processor)
    result = BatchResult(dead=parsed.rejected, messages=messages)
    records = parsed.records
    predicted = _run_model(model, records, parsed.messages)
    if processor is not None and records:
        records = list(processor.postprocess(records))
    predicted_ms = int(time.time() * 1000)
    point = measurement.point
    encode = Output.encode_fields
    challengers, probabilities = predicted.challengers, predicted.probabilities
    challenger_probabilities = predicted.challenger_probabilities
    for index, (record, message, line, stale) in enumerate(
        zip(records, parsed.messages, parsed.lines, predicted.staleness, strict=True)
    ):
        topic, partition, offset = message.topic, message.partition, message.offset
        # a TopicPartition is a tuple: found by (topic, partition), made once per partition
        partition_outputs = result.outputs.get((topic, partition))
        if partition_outputs is None:
            partition_outputs = result.outputs[TopicPartition(topic, partition)] = []
        output_id = input_id(topic, partition, offset)
        record_id = record_id_of(message.headers) or output_id
        event_time = int(record.timestamp.timestamp() * 1000) if record.timestamp else None
        event_time = event_time or message.timestamp
        prediction = _jsonable(record.outputs[0]) if record.outputs else None
        targets = record.targets
        target = targets[0] if targets else None
        source = record.source
        result.influx_lines.append(
            point(
                line,
                source=source,
                topic=topic,
                partition=partition,
                offset=offset,
                event_time_ms=event_time,
                record_id=record_id,
                target=target,
            )
        )
        output = encode(
            id=output_id,
            record_id=record_id,
            usecase=usecase,
            source=source,
            event_time=event_time,
            prediction=prediction,
            champion=predicted.champion,
            challengers={
                name: _jsonable(predictions[index]) for name, predictions in challengers.items()
            }
            if challengers
            else {},
            probabilities=probabilities[index] if probabilities else None,
            challenger_probabilities={
                name: shares
                for name, distributions in challenger_probabilities.items()
                if (shares := distributions[index]) is not None
            }
            if challenger_probabilities
            else {},
            targets=[*targets],  # list[JsonValue] from list[str]
            model_version=model.version,
            staleness=stale,
            produced=message.timestamp,
            consumed=consumed_ms,
            predicted=predicted_ms,
        )
        partition_outputs.append((output_id.encode(), output))
        result.scored.append((prediction, target))
        if stale is not None:
            result.staleness.append(stale)
    last: dict[tuple[str, int], int] = {}
    for message in messages:
        key = (message.topic, message.partition)
        last[key] = max(last.get(key, -1), message.offset)
    result.progress_lines = [
        measurement.progress_point(topic, partition, offset)
        for (topic, partition), offset in last.items()
    ]
    result.next_offsets = {
        TopicPartition(topic, partition): offset + 1 for (topic, partition), offset in last.items()
    }
    return result


@dataclass
class Predicted:
    """What the model said of a batch: each record's staleness, the champion's name (with
    challengers) and each challenger's predictions (its name -> one per record)."""

    staleness: list[int | None]
    champion: str | None = None
    challengers: dict[str, list[Any]] = field(default_factory=dict)
    # output.probabilities > 0, predict-only: each record's bounded class probabilities
    probabilities: list[Probabilities | None] = field(default_factory=list)
    challenger_probabilities: dict[str, list[Probabilities | None]] = field(default_factory=dict)


def _run_model(
    model: ServingModel, records: Sequence[TimeRecord], messages: Sequence[ConsumerRecord]
) -> Predicted:
    """Set each record's prediction; say each one's staleness and the challengers'.

    Predict-only (the default): one `predict_many` for the batch (an external algorithm runs
    its script once per batch, not per record; MOA crosses into its JVM once). Learning here
    (launcher.learn=true, an incremental model): test-then-train, each record predicted just
    before it is learned (River's progressive validation), in one `predict_learn_many`."""
    algorithm = model.algorithm
    learning = algorithm is not None and model.learn and algorithm.incremental
    staleness = _staleness(model, messages, advance=learning)
    if algorithm is None or not records or not (model.predict or learning):
        return Predicted(staleness)
    xs = [record.values for record in records]
    ys = [record.targets[0] if record.targets else None for record in records]
    if isinstance(algorithm, Contenders):
        every = (
            algorithm.predict_learn_all(xs, ys, model.predict)
            if learning
            else algorithm.predict_all(xs, ys)
        )
        predictions = every.pop(algorithm.champion)
        predicted = Predicted(staleness, algorithm.champion, every if model.predict else {})
    elif learning and not model.predict:
        labelled = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        algorithm.learn_many([x for x, _ in labelled], [y for _, y in labelled])
        predictions, predicted = [], Predicted(staleness)
    else:
        learnt = algorithm.predict_learn_many(xs, ys) if learning else None
        predictions = learnt if learnt is not None else algorithm.predict_many(xs, ys)
        predicted = Predicted(staleness)
    if model.predict and not learning and model.probabilities > 0:
        _add_probabilities(predicted, algorithm, xs, predictions, model.probabilities)
    for index, record in enumerate(records):
        record.outputs = [predictions[index] if model.predict else None]
    return predicted


def _add_probabilities(
    predicted: Predicted,
    algorithm: Algorithm,
    xs: Sequence[dict],
    predictions: Sequence[Any],
    k: int,
) -> None:
    """Each model's bounded class probabilities (the top k and the predicted class), one batch
    call per model. A learning launcher publishes none: its test-then-train loop predicts each
    record just before learning it, and probabilities taken after the batch would not be the
    ones of its predictions."""
    if isinstance(algorithm, Contenders):
        every = algorithm.predict_proba_all(xs)
        predicted.probabilities = _bounded(every.pop(algorithm.champion), predictions, k)
        predicted.challenger_probabilities = {
            name: _bounded(distributions, predicted.challengers[name], k)
            for name, distributions in every.items()
            if name in predicted.challengers
        }
    else:
        predicted.probabilities = _bounded(algorithm.predict_proba_many(xs), predictions, k)


def _bounded(
    distributions: Sequence[dict | None], predictions: Sequence[Any], k: int
) -> list[Probabilities | None]:
    return [
        Probabilities.bounded(distribution, prediction, k)
        for distribution, prediction in zip(distributions, predictions, strict=True)
    ]


def _staleness(
    model: ServingModel, messages: Sequence[ConsumerRecord], advance: bool
) -> list[int | None]:
    """Each message's staleness; `advance`: the model learns them in this order (learning
    mode), so each one's position moves past it once it is counted."""
    staleness = []
    for message in messages:
        staleness.append(model.staleness(message.topic, message.partition, message.offset))
        if advance:
            model.positions[partition_key(message.topic, message.partition)] = message.offset + 1
    return staleness


def _jsonable(value: Any) -> Any:
    """Predictions as JSON: numpy scalars and other exotic types become plain values."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    item = getattr(value, "item", None)
    return item() if callable(item) else str(value)
