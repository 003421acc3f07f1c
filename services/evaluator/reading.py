"""How the evaluator reads outputTopic: committed outputs only (the launcher writes them in
transactions), every partition assigned to itself from its checkpoint's offsets rather than
from its consumer group's (checkpoint.py says why), batches of at most `max.poll.records`, and,
after a crash, exactly the messages of the evaluation that was cut short.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from services.evaluator.checkpoint import Pending

log = logging.getLogger("evaluator")

#: Longest wait for the messages of an evaluation being replayed (they were read before, so
#: they are there unless retention removed them meanwhile).
REPLAY_WAIT_S = 30.0


class OutputReader:
    """Batches of outputTopic messages for one evaluator."""

    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        topic: str,
        *,
        max_records: int,
        wait_ms: int,
        stop: asyncio.Event,
    ):
        self.consumer = consumer
        self.topic = topic
        self.max_records = max_records
        self.wait_ms = wait_ms
        self.stop = stop
        self.carry: list[ConsumerRecord] = []  # read beyond a replayed evaluation

    async def assign(self, partitions: Iterable[int], offsets: dict[int, int]) -> None:
        """Every partition, each from its offset in `offsets` (or from its beginning)."""
        assigned = [TopicPartition(self.topic, number) for number in sorted(partitions)]
        self.consumer.assign(assigned)
        fresh = [tp for tp in assigned if tp.partition not in offsets]
        if fresh:
            await self.consumer.seek_to_beginning(*fresh)
        for tp in assigned:
            if tp.partition in offsets:
                self.consumer.seek(tp, offsets[tp.partition])

    async def next_batch(self) -> list[ConsumerRecord]:
        """What arrived within the batch wait, at most `max_records`; what a replay read beyond
        its evaluation comes first."""
        if self.carry:  # a prefix keeps each partition's offsets contiguous
            batch = self.carry[: self.max_records]
            self.carry = self.carry[self.max_records :]
            return batch
        fetched = await self.consumer.getmany(timeout_ms=self.wait_ms, max_records=self.max_records)
        return [message for part in fetched.values() for message in part]

    async def replay(self, pending: Pending) -> list[ConsumerRecord]:
        """The messages of the evaluation a previous evaluator was killed in: up to its last
        offset in each partition (what is read beyond waits for the next batch). Empty when
        stopped meanwhile (the next start replays it)."""
        wanted: list[ConsumerRecord] = []
        remaining = dict(pending.ends)
        give_up = time.monotonic() + REPLAY_WAIT_S
        while remaining:
            if self.stop.is_set():
                self.carry = []
                return []
            fetched = await self.consumer.getmany(
                timeout_ms=self.wait_ms, max_records=self.max_records
            )
            for part in fetched.values():
                for message in part:
                    if message.offset <= pending.ends.get(message.partition, -1):
                        wanted.append(message)
                    else:
                        self.carry.append(message)
            for partition, last in list(remaining.items()):
                if await self.consumer.position(TopicPartition(self.topic, partition)) > last:
                    del remaining[partition]
            if remaining and time.monotonic() > give_up:
                log.warning(
                    "outputs of the evaluation to replay are missing: scoring what is left",
                    extra={"topic": self.topic, "missing": remaining},
                )
                break
        return wanted
