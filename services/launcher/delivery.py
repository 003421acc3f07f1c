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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.launcher.batch import BatchResult
from shared.clients.kafka import commit_processed, make_producer, send_batched, start_client
from shared.records.messages import Rejected
from shared.wire.kafka import DeadLetter, dead_letter_topic, record_id_of

log = logging.getLogger("launcher")

#: A record batch of outputs holds up to this much (a launcher batch is a few thousand outputs
#: of ~350 bytes: a handful of batches instead of a hundred 16 KB ones).
OUTPUT_BATCH_BYTES = 1024 * 1024


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

    async def deliver(self, result: BatchResult, consumer: AIOKafkaConsumer) -> bool:
        """Send and commit; False when the partitions moved meanwhile (the batch was not
        committed: their new owner processes it)."""
        raise NotImplementedError

    async def _send(
        self, producer: AIOKafkaProducer, result: BatchResult, tp: TopicPartition | None
    ) -> list:
        """Send the outputs and dead letters of input partition `tp` (None: all); outputs in
        record batches, one per output partition."""
        by_partition: dict[int, list[tuple[bytes, bytes]]] = defaultdict(list)
        for key, value, source in result.outputs:
            if tp is None or source == tp:
                by_partition[source.partition % self.output_partitions].append((key, value))
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

    async def start(self) -> None:
        self.producer = make_producer(self.bootstrap, max_batch_size=OUTPUT_BATCH_BYTES)
        await start_client(self.producer, self.bootstrap)
        await self._count_output_partitions(self.producer)

    async def close(self) -> None:
        await self.producer.stop()

    async def deliver(self, result: BatchResult, consumer: AIOKafkaConsumer) -> bool:
        await asyncio.gather(*await self._send(self.producer, result, None))
        return await commit_processed(consumer, result.messages)


class ExactlyOnce(Delivery):
    """One transactional producer per assigned input partition (see the module docstring)."""

    def __init__(self, bootstrap: str, usecase: str, output_topic: str, group: str):
        super().__init__(bootstrap, usecase, output_topic, group)
        self.producers: dict[TopicPartition, AIOKafkaProducer] = {}

    def transactional_id(self, tp: TopicPartition) -> str:
        return f"streamer-{self.group}-{tp.topic}-{tp.partition}"

    async def start(self) -> None:
        """Producers come with the partitions (`assigned`)."""

    async def close(self) -> None:
        await self._stop(list(self.producers))

    async def assigned(self, partitions: set[TopicPartition]) -> None:
        await self._stop([tp for tp in self.producers if tp not in partitions])
        for tp in sorted(partitions - set(self.producers)):
            producer = make_producer(
                self.bootstrap,
                transactional_id=self.transactional_id(tp),
                max_batch_size=OUTPUT_BATCH_BYTES,
            )
            await start_client(producer, self.bootstrap)  # fences this id's previous owner
            self.producers[tp] = producer
            if len(self.producers) == 1:
                await self._count_output_partitions(producer)

    async def _stop(self, partitions: Iterable[TopicPartition]) -> None:
        for tp in list(partitions):
            producer = self.producers.pop(tp)
            with contextlib.suppress(Exception):  # a fenced producer may refuse to flush
                await asyncio.wait_for(producer.stop(), 10)

    async def deliver(self, result: BatchResult, consumer: AIOKafkaConsumer) -> bool:
        next_offsets: dict[TopicPartition, int] = defaultdict(int)
        for message in result.messages:
            tp = TopicPartition(message.topic, message.partition)
            next_offsets[tp] = max(next_offsets[tp], message.offset + 1)
        for tp, offset in next_offsets.items():
            producer = self.producers.get(tp)
            if producer is None:
                log.warning("partition moved during the batch", extra={"partition": str(tp)})
                return False
            async with producer.transaction():
                await self._send(producer, result, tp)
                await producer.send_offsets_to_transaction({tp: offset}, self.group)
        return True
