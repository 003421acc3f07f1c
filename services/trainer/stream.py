"""The trainer's view of the input topics: every partition, read in order from the positions the
model has learnt up to, never past what the launchers have predicted.

Partitions are assigned by hand (no consumer group): there is one active trainer per use case
(its lease), the positions come from the model's own metadata, and a restart seeks to them at
once instead of waiting for a group rebalance. A record is handed out for learning only once a
launcher predicted it (`launcher:progress` in Redis), so no prediction is ever made by a model
that already learnt that record. Records fetched beyond that bound wait in a per-partition
buffer, their partition paused, until the launchers catch up.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import ConsumerRecord

from shared.clients.kafka import (
    ConsumerStalledError,
    ConsumerWatch,
    make_consumer,
    partitions_of,
    start_client,
)
from shared.wire.kafka import partition_key

log = logging.getLogger("trainer")

FETCH_RECORDS = 2000
#: How often new partitions of the input topics are looked for.
REFRESH_PARTITIONS_S = 10.0


class InputStream:
    """The input topics' partitions for one learner. `positions` (`<topic>/<partition>` -> the
    next offset to learn) are this object's, updated as records are handed out."""

    def __init__(self, bootstrap: str, topics: list[str], positions: Mapping[str, int]):
        self.bootstrap = bootstrap
        self.topics = topics
        self.positions: dict[str, int] = dict(positions)
        self._pending: dict[TopicPartition, deque[ConsumerRecord]] = {}
        self._paused: set[TopicPartition] = set()
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._partitions_checked = 0.0

    async def start(self) -> None:
        """Connect and assign; may be called again after a failure (it starts afresh)."""
        await self.stop()
        self._pending.clear()
        self._paused.clear()
        self._admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await start_client(self._admin, self.bootstrap)
        consumer = make_consumer(self.bootstrap, None, max_partition_fetch_bytes=4 * 1024 * 1024)
        await start_client(consumer, self.bootstrap)
        self._consumer = consumer
        self._watch = ConsumerWatch(consumer, "reading the input topics")
        await self._assign_new_partitions(force=True)

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._admin is not None:
            await self._admin.close()
            self._admin = None

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("InputStream.start() was not called")
        return self._consumer

    async def _assign_new_partitions(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._partitions_checked < REFRESH_PARTITIONS_S:
            return
        self._partitions_checked = now
        consumer = self.consumer
        assert self._admin is not None
        wanted = {
            TopicPartition(topic, partition)
            for topic, partitions in (await partitions_of(self._admin, self.topics)).items()
            for partition in partitions
        }
        current = consumer.assignment()
        if wanted <= current:
            return
        consumer.assign(sorted(wanted | current))
        for tp in wanted - current:
            position = self.positions.get(partition_key(tp.topic, tp.partition))
            if position is None:
                await consumer.seek_to_beginning(tp)
                self.positions[partition_key(tp.topic, tp.partition)] = await consumer.position(tp)
            else:
                consumer.seek(tp, position)
        log.info("input partitions assigned", extra={"partitions": sorted(map(str, wanted))})

    def seek(self, positions: Mapping[str, int]) -> None:
        """Continue from `positions` (after a retrain): what was fetched beyond is dropped."""
        consumer = self.consumer
        self.positions.update(positions)
        self._pending.clear()
        for tp in consumer.assignment():
            position = self.positions.get(partition_key(tp.topic, tp.partition))
            if position is not None:
                consumer.seek(tp, position)
        if self._paused:
            consumer.resume(*self._paused)
            self._paused.clear()

    async def next_batch(
        self, bound: Mapping[str, int] | None, wait_ms: int, limit: int = FETCH_RECORDS
    ) -> list[ConsumerRecord]:
        """At most `limit` records ready to learn, in each partition's order: fetched, and
        below `bound` (the launchers' progress: `<topic>/<partition>` -> the first offset not
        predicted yet; None: no bound, for labelTopic). Waits at most `wait_ms` for records
        when none is ready."""
        await self._assign_new_partitions()
        ready = self._release(bound, limit)
        if not ready:
            fetched = await self.consumer.getmany(timeout_ms=wait_ms, max_records=FETCH_RECORDS)
            for tp, messages in fetched.items():
                self._pending.setdefault(tp, deque()).extend(messages)
            self._watch.fetched(len(fetched))
            if not fetched:
                try:
                    await self._watch.check()
                except ConsumerStalledError as error:  # aiokafka #612: a new one is made
                    log.warning(f"consumer stuck, recreated: {error}")
                    await self.start()
            ready = self._release(bound, limit)
        for message in ready:
            self.positions[partition_key(message.topic, message.partition)] = message.offset + 1
        return ready

    def _release(self, bound: Mapping[str, int] | None, limit: int) -> list[ConsumerRecord]:
        """Take at most `limit` pending records below the bound; pause the partitions whose
        records must wait (fetching more of them now would only fill memory)."""
        consumer = self.consumer
        ready: list[ConsumerRecord] = []
        for tp, queue in self._pending.items():
            key = partition_key(tp.topic, tp.partition)
            below = math.inf if bound is None else bound.get(key, 0)
            while queue and queue[0].offset < below and len(ready) < limit:
                ready.append(queue.popleft())
            if queue and tp not in self._paused:
                consumer.pause(tp)
                self._paused.add(tp)
            elif not queue and tp in self._paused:
                consumer.resume(tp)
                self._paused.discard(tp)
        return ready

    def caught_up(self, bound: Mapping[str, int]) -> bool:
        """Everything the launchers predicted (`bound`) is learnt."""
        return all(self.positions.get(key, 0) >= offset for key, offset in bound.items())

    def lag(self) -> int:
        """Records in the input topics that have not been learnt (as far as the fetches saw)."""
        consumer, lag = self.consumer, 0
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            position = self.positions.get(partition_key(tp.topic, tp.partition))
            if highwater is not None and position is not None:
                lag += max(0, highwater - position)
        return lag
