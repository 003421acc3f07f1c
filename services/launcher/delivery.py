"""How a launcher batch's outputs and dead letters reach Kafka, and its input offsets commit.

Exactly once (the default, `launcher.transactions=true`): per input partition, the batch's
outputs, its dead letters and the partition's next input offset go into one Kafka transaction,
so readers with `isolation_level=read_committed` see each prediction once, even when a
launcher dies mid-batch and its successor processes the batch again. aiokafka commits offsets
in a transaction without the consumer group's generation (TxnOffsetCommit v0, no KIP-447), so
fencing comes from the transactional id: it is derived from the input partition, one producer
per assigned partition. When a partition moves to another launcher, that launcher's producer
with the same id fences this one: a zombie cannot commit after the rebalance.

At least once (`launcher.transactions=false`): one idempotent producer; the consumer commits
after every send is acknowledged; a replay after a crash writes the same outputs again (same
key), which readers deduplicate by output id.

Outages (the launcher retries `deliver` through shared/retry.py): a failed attempt leaves its
producers in an unknown state (a transaction cut short, an idempotent sequence the restarted
broker no longer knows), so `recover()` drops them before the next attempt. In exactly-once
mode the next attempt opens a producer with the same transactional id, which settles the cut
transaction (aborted, or completed when its commit had reached the coordinator), and then
reads the partition's committed offset: a batch whose commit went through although its answer
was lost is not written again. Partitions already committed by an earlier attempt of the same
batch are skipped.

Records first: the batch's records must be in InfluxDB before its input offsets commit (the
trainer learns from them, and a committed batch is never replayed). `deliver` takes the
writing of the records as `stored` and sends the outputs while it runs, awaiting it only
before the offsets commit: the two sinks' round trips overlap instead of adding up. When the
records take longer than RECORDS_WAIT_S (InfluxDB slow or away), `deliver` raises
RecordsPending without committing; the launcher then waits for the records and delivers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.launcher.batch import BatchResult
from shared.clients.kafka import (
    commit_offsets,
    make_producer,
    send_batched,
    start_client,
    start_transactional,
)
from shared.errors import StreamerError
from shared.records.messages import Rejected
from shared.wire.kafka import DeadLetter, dead_letter_topic, record_id_of

log = logging.getLogger("launcher")

#: A record batch of outputs holds up to this much (a launcher batch is a few thousand outputs
#: of ~350 bytes: a handful of batches instead of a hundred 16 KB ones).
OUTPUT_BATCH_BYTES = 1024 * 1024
STOP_TIMEOUT_S = 10.0
#: Longest wait, with a transaction open, for the batch's records to be in InfluxDB (they
#: take tens of milliseconds when it is up).
RECORDS_WAIT_S = 5.0

#: The writing of a batch's records (to InfluxDB), awaited before its offsets commit.
Stored = asyncio.Future[Any]


class RecordsPending(StreamerError):
    """The batch's records were not stored within RECORDS_WAIT_S: nothing was committed."""


async def records_stored(stored: Stored | None) -> None:
    """Wait for the batch's records to be stored (its error, if it failed), bounded."""
    if stored is None:
        return
    try:
        await asyncio.wait_for(asyncio.shield(stored), RECORDS_WAIT_S)
    except TimeoutError:
        if stored.done():  # the writing itself timed out: its own error
            raise
        raise RecordsPending(
            f"the batch's records were not stored within {RECORDS_WAIT_S:g} s"
        ) from None


class Delivery:
    """Writes a batch's Kafka side and commits its input offsets."""

    def __init__(self, bootstrap: str, usecase: str, output_topic: str, group: str):
        self.bootstrap = bootstrap
        self.usecase = usecase
        self.output_topic = output_topic
        self.group = group
        self.output_partitions = 1

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        """The consumer's partitions after a rebalance."""

    async def recover(self) -> None:
        """After a failed `deliver`: drop the producers it left in an unknown state (the next
        `deliver` makes new ones)."""

    def committed_of(self, result: BatchResult) -> set[TopicPartition]:
        """The input partitions of `result` already committed (by a `deliver` that then
        returned False for another of its partitions)."""
        return set()

    async def deliver(
        self, result: BatchResult, consumer: AIOKafkaConsumer, stored: Stored | None = None
    ) -> bool:
        """Send, wait for `stored` (module docstring), commit; False when the partitions moved
        meanwhile (the batch was not committed: their new owner processes it)."""
        raise NotImplementedError

    async def _send(
        self, producer: AIOKafkaProducer, result: BatchResult, tp: TopicPartition | None
    ) -> list:
        """Send the outputs and dead letters of input partition `tp` (None: all); outputs in
        record batches, one per output partition."""
        by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for source, outputs in result.outputs.items():
            if tp is None or source == tp:
                by_partition[source.partition % self.output_partitions].extend(outputs)
        futures = []
        for partition, records in by_partition.items():
            futures += await send_batched(producer, self.output_topic, partition, records)
        for dead in result.dead:
            message = dead.message
            if tp is None or (message.topic, message.partition) == (tp.topic, tp.partition):
                futures.append(await self._send_dead_letter(producer, dead))
        return futures

    async def _send_dead_letter(self, producer: AIOKafkaProducer, dead: Rejected) -> asyncio.Future:
        message = dead.message
        letter = DeadLetter(
            error=dead.reason,
            source_topic=message.topic,
            source_partition=message.partition,
            source_offset=message.offset,
            usecase=self.usecase,
            record_id=record_id_of(message.headers),
        )
        return await producer.send(
            dead_letter_topic(message.topic),
            message.value or b"",
            key=message.key,
            headers=letter.headers(),
        )

    async def _count_output_partitions(self, producer: AIOKafkaProducer) -> None:
        self.output_partitions = len(await producer.partitions_for(self.output_topic))


class AtLeastOnce(Delivery):
    """One idempotent producer; the consumer commits once every send is acknowledged."""

    producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        self.producer = make_producer(self.bootstrap, max_batch_size=OUTPUT_BATCH_BYTES)
        await start_client(self.producer, self.bootstrap)
        await self._count_output_partitions(self.producer)

    async def close(self) -> None:
        if self.producer is not None:
            await _stop_quietly(self.producer)

    async def recover(self) -> None:
        if self.producer is not None:
            await _stop_quietly(self.producer)
            self.producer = None

    async def deliver(
        self, result: BatchResult, consumer: AIOKafkaConsumer, stored: Stored | None = None
    ) -> bool:
        if self.producer is None:
            await self.start()
        assert self.producer is not None
        sent = asyncio.gather(*await self._send(self.producer, result, None))
        try:
            await records_stored(stored)
        finally:
            await sent  # an error of its own wins over the records'
        return await commit_offsets(consumer, result.next_offsets)


class ExactlyOnce(Delivery):
    """One transactional producer per assigned input partition (see the module docstring)."""

    def __init__(self, bootstrap: str, usecase: str, output_topic: str, group: str):
        super().__init__(bootstrap, usecase, output_topic, group)
        self.producers: dict[TopicPartition, AIOKafkaProducer] = {}
        self.partitions: set[TopicPartition] = set()  # assigned to this launcher
        self._unsettled: set[TopicPartition] = set()  # producers dropped by recover()
        self._batch: BatchResult | None = None  # the batch being delivered
        self._committed: set[TopicPartition] = set()  # its partitions committed already

    def transactional_id(self, tp: TopicPartition) -> str:
        return f"streamer-{self.group}-{tp.topic}-{tp.partition}"

    async def start(self) -> None:
        """Producers come with the partitions (`assigned`)."""

    async def close(self) -> None:
        await self._stop(list(self.producers))

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        self.partitions = set(partitions)
        self._unsettled &= self.partitions
        await self._stop([tp for tp in self.producers if tp not in partitions])
        for tp in sorted(partitions - set(self.producers)):
            await self._open(tp)

    async def _open(self, tp: TopicPartition) -> AIOKafkaProducer:
        """A producer of `tp`'s transactional id, registered: that fences this id's previous
        owner and settles its open transaction."""
        producer = make_producer(
            self.bootstrap,
            transactional_id=self.transactional_id(tp),
            max_batch_size=OUTPUT_BATCH_BYTES,
        )
        await start_transactional(producer, self.bootstrap)
        self.producers[tp] = producer
        if len(self.producers) == 1:
            await self._count_output_partitions(producer)
        return producer

    async def _stop(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in list(partitions):
            await _stop_quietly(self.producers.pop(tp))

    async def recover(self) -> None:
        self._unsettled |= set(self.producers)
        await self._stop(list(self.producers))

    def committed_of(self, result: BatchResult) -> set[TopicPartition]:
        return set(self._committed) if result is self._batch else set()

    async def deliver(
        self, result: BatchResult, consumer: AIOKafkaConsumer, stored: Stored | None = None
    ) -> bool:
        if result is not self._batch:
            self._batch, self._committed = result, set()
        for tp, offset in result.next_offsets.items():
            if tp in self._committed:
                continue  # by an earlier attempt of this batch
            if tp not in self.partitions:
                log.warning("partition moved during the batch", extra={"partition": str(tp)})
                return False
            producer = self.producers.get(tp) or await self._open(tp)
            if tp in self._unsettled:  # an attempt was cut: did its commit go through?
                self._unsettled.discard(tp)
                committed = await consumer.committed(tp)
                if committed is not None and committed >= offset:
                    log.info(
                        "the batch was committed by the attempt that failed",
                        extra={"partition": str(tp), "offset": offset},
                    )
                    self._committed.add(tp)
                    continue
            async with producer.transaction():
                await self._send(producer, result, tp)
                await records_stored(stored)
                await producer.send_offsets_to_transaction({tp: offset}, self.group)
            self._committed.add(tp)
        return True


async def _stop_quietly(producer: AIOKafkaProducer) -> None:
    """Stop a producer, bounded: a dead broker can make stop() hang (aiokafka #1101), and a
    fenced or failed producer may refuse to flush; either way it is done with."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(producer.stop(), STOP_TIMEOUT_S)
