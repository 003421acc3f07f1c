"""The model being trained, and the one thread that touches it.

A River model is not thread-safe and learns in place, so everything that reads or changes it
(learning a batch, taking an inference snapshot, pickling it) runs in the learner's single
worker thread, one step after the other: a published version is exactly the model after the
records its positions say. The event loop stays free for Kafka and Redis meanwhile.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiokafka.structs import ConsumerRecord

from shared.algorithms.base import Algorithm
from shared.algorithms.contenders import Contenders, RoleError
from shared.algorithms.snapshot import inference_snapshot
from shared.labels import LabelJoin
from shared.modelstore import seal
from shared.prepostprocessors import PrePostProcessor
from shared.records.base import RecordError, TimeRecord
from shared.records.messages import parse_messages
from shared.wire.influx import StoredRecord
from shared.wire.kafka import Label, input_id, partition_key, record_id_of
from shared.wire.store import ROLLBACK

#: Records learnt between two looks at the stop signal during a long training.
STOP_CHECK_EVERY = 500


class TrainingInterrupted(Exception):
    """A stop arrived during a long training: it is abandoned and nothing is published; the
    last checkpoint stays the resume point."""


@dataclass(frozen=True)
class Sealed:
    """A version ready to store: what launchers load, and the full model when checkpointing."""

    envelope: bytes
    checkpoint: bytes | None
    snapshot: bool
    description: dict[str, Any]
    seconds: float


@dataclass(frozen=True)
class Learnt:
    """What one batch taught the model."""

    records: int  # labelled records learnt
    rejected: int  # lines the record class refused (the launcher dead-letters them)
    newest_event_ms: int | None


class Learner:
    """Owns the model and its thread. `stopping` is set when the service stops, so a long
    training can be abandoned between two slices."""

    def __init__(
        self,
        usecase: str,
        secret: bytes,
        record_class: type[TimeRecord],
        processor: PrePostProcessor | None,
        stopping: threading.Event,
    ):
        self.usecase = usecase
        self.secret = secret
        self.record_class = record_class
        self.processor = processor
        self.stopping = stopping
        self.model: Algorithm | None = None
        # labelTopic: records read without their label, waiting for it (and labels that came
        # first); touched in the learner's thread only
        self.waiting: LabelJoin[ConsumerRecord, list[str]] | None = None
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"learner-{usecase}")

    def close(self) -> None:
        self.executor.shutdown(wait=True)

    async def _run(self, work: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, work, *args)

    async def learn_messages(self, messages: Sequence[ConsumerRecord]) -> Learnt:
        """Parse the input messages as the launcher does and learn each labelled record."""
        return await self._run(self._learn_messages, messages)

    def _learn_messages(self, messages: Sequence[ConsumerRecord]) -> Learnt:
        """One learn_many for the labelled records of the batch, in order: a model whose batch
        learning is faster than a loop (MOA hands the batch to its JVM at once) gets it whole;
        every model of a champion and its challengers learns it. With delayed labels, a record
        without its label waits for it (`waiting`); one whose label came first is learnt."""
        parsed = parse_messages(messages, self.record_class, self.processor)
        labelled = [record for record in parsed.records if record.targets]
        waiting = self.waiting
        if waiting is not None:
            now = time.monotonic()
            for message, record in zip(parsed.messages, parsed.records, strict=True):
                if not record.targets:
                    joined = waiting.add_item(_record_id(message), message, now)
                    if joined is not None:
                        labelled.extend(self._labelled([joined]))
        self._learn(labelled)
        newest = max((m.timestamp for m in parsed.messages), default=None)
        return Learnt(len(labelled), len(parsed.rejected), newest)

    async def learn_labels(self, messages: Sequence[ConsumerRecord]) -> Learnt:
        """Labels from labelTopic: learn the records that waited for them."""
        return await self._run(self._learn_labels, messages)

    def _learn_labels(self, messages: Sequence[ConsumerRecord]) -> Learnt:
        waiting = self.waiting
        assert waiting is not None
        now, joined, malformed = time.monotonic(), [], 0
        for message in messages:
            try:
                label = Label.decode(message.value)
            except ValueError:
                malformed += 1
                continue
            pair = waiting.add_label(label.record_id, label.targets, now)
            if pair is not None:
                joined.append(pair)
        labelled = self._labelled(joined)
        self._learn(labelled)
        waiting.expire(now)
        return Learnt(len(labelled), malformed, None)

    def _labelled(self, joined: Sequence[tuple[ConsumerRecord, list[str]]]) -> list[TimeRecord]:
        """The records of the messages that waited, with the targets their labels brought,
        parsed and pre-processed as the launcher did."""
        parsed = parse_messages([message for message, _ in joined], self.record_class, None)
        targets = {id(message): label for message, label in joined}
        for message, record in zip(parsed.messages, parsed.records, strict=True):
            record.targets = list(targets[id(message)])
        if self.processor is not None and parsed.records:
            return list(self.processor.preprocess(parsed.records))
        return parsed.records

    def _learn(self, labelled: Sequence[TimeRecord]) -> None:
        model = self.model
        if model is None:
            raise RuntimeError("the learner has no model")
        if labelled:
            model.learn_many(
                [record.values for record in labelled], [record.targets[0] for record in labelled]
            )

    async def resume_positions(self, read: Mapping[str, int]) -> dict[str, int]:
        """Where a restart must read the input again so that no record waiting for its label
        is lost: per partition, the oldest waiting record's offset (else `read`)."""
        return await self._run(self._resume_positions, dict(read))

    async def early_labels(self) -> dict[str, list[str]]:
        """The labels waiting for their record (read in the model's thread, which changes them)."""
        return await self._run(lambda: self.waiting.early_labels() if self.waiting else {})

    def _resume_positions(self, positions: dict[str, int]) -> dict[str, int]:
        for waiting in (self.waiting.items if self.waiting is not None else {}).values():
            message = waiting.value
            key = partition_key(message.topic, message.partition)
            positions[key] = min(positions.get(key, message.offset), message.offset)
        return positions

    async def change_roles(self, action: str, model: str) -> tuple[str, str]:
        """Promote challenger `model` (PROMOTE) or restore the previous champion (ROLLBACK),
        in the model's thread; returns (the champion now, the one it replaced). RoleError
        when the models' roles do not allow it."""
        return await self._run(self._change_roles, action, model)

    def _change_roles(self, action: str, model: str) -> tuple[str, str]:
        models = self.model
        if not isinstance(models, Contenders):
            raise RoleError(
                "no challengers to promote" if models is not None else "no model trained yet"
            )
        replaced = models.rollback() if action == ROLLBACK else models.promote(model)
        return models.champion, replaced

    async def fit(self, fresh: Algorithm, stored: Sequence[StoredRecord]) -> int:
        """Make `fresh`, trained on `stored` (oldest first), the model; return how many
        labelled records it learnt. Raises TrainingInterrupted on a stop (the model stays)."""
        return await self._run(self._fit, fresh, stored)

    def _fit(self, fresh: Algorithm, stored: Sequence[StoredRecord]) -> int:
        records = self._records(stored)
        xs = [record.values for record in records if record.targets]
        ys = [record.targets[0] for record in records if record.targets]
        if not fresh.incremental:
            fresh.learn_many(xs, ys)
        else:
            for start in range(0, len(xs), STOP_CHECK_EVERY):
                if self.stopping.is_set():
                    raise TrainingInterrupted
                end = start + STOP_CHECK_EVERY
                fresh.learn_many(xs[start:end], ys[start:end])
        self.model = fresh
        return len(xs)

    def _records(self, stored: Sequence[StoredRecord]) -> list[TimeRecord]:
        return parse_stored(stored, self.record_class, self.processor)

    async def seal(self, version: int, checkpoint: bool) -> Sealed:
        """The current model as version `version`: its inference snapshot when it has one
        (else the full model), and the full model too when `checkpoint`."""
        return await self._run(self._seal, version, checkpoint)

    def _seal(self, version: int, checkpoint: bool) -> Sealed:
        model = self.model
        if model is None:
            raise RuntimeError("the learner has no model")
        started = time.perf_counter()
        snapshot = inference_snapshot(model)
        full = None
        if checkpoint or snapshot is None:
            full = seal(self.secret, self.usecase, version, model)
        envelope = full if snapshot is None else seal(self.secret, self.usecase, version, snapshot)
        assert envelope is not None
        return Sealed(
            envelope=envelope,
            checkpoint=full if checkpoint else None,
            snapshot=snapshot is not None,
            description=model.describe(),
            seconds=time.perf_counter() - started,
        )


def parse_stored(
    stored: Sequence[StoredRecord],
    record_class: type[TimeRecord],
    processor: PrePostProcessor | None,
) -> list[TimeRecord]:
    """Stored lines parsed again (and pre-processed) as the launcher did: refits and the
    federated client (services/trainer/federated.py) read InfluxDB this one way."""
    records = []
    for item in stored:
        try:
            record = record_class.parse(item.line, item.series.source)
        except RecordError:
            continue  # the launcher dead-lettered it; never stored normally
        if not record.targets and item.target is not None:
            record.targets = [item.target]
        records.append(record)
    if processor is not None and records:
        records = list(processor.preprocess(records))
    return records


def _record_id(message: ConsumerRecord) -> str:
    """How a label names the record: its `record-id` header (else its input id)."""
    return record_id_of(message.headers) or input_id(
        message.topic, message.partition, message.offset
    )
