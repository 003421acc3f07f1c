"""Kafka producers, consumers and topic setup with the delivery settings the pipeline relies on.

Producers are idempotent with acks=all; every send is awaited under a timeout because an
idempotent aiokafka producer otherwise waits forever on a dead broker (aiokafka #1101).
Consumers never auto-commit: services commit after their side effects succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    CommitFailedError,
    IllegalStateError,
    TopicAlreadyExistsError,
)
from aiokafka.structs import ConsumerRecord, RecordMetadata

from shared.errors import ServiceUnavailableError
from shared.retry import KAFKA, Watch, retrying

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 30.0
# Records up to 8 MiB (a raw line, and its dead letter with headers): the broker's default
# limit is 1 MiB minus a little, which a "1 MB" line plus headers can exceed.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024


async def start_client(
    client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient, bootstrap: str
) -> None:
    """Start a client through the retry policy (shared/retry.py: inside a service, until the
    broker answers or the service stops); the error names the broker."""

    async def start() -> None:
        await client.start()

    try:
        await retrying(KAFKA, f"connecting to {bootstrap}", start)
    except BaseException:
        await _quietly_close(client)
        raise


async def _quietly_close(client: Any) -> None:
    try:
        await asyncio.wait_for(client.stop() if hasattr(client, "stop") else client.close(), 5)
    except Exception:  # the client never started; nothing to flush
        log.debug("closing a client that failed to start", exc_info=True)


def make_producer(bootstrap: str, **options: Any) -> AIOKafkaProducer:
    """An idempotent producer (acks=all); options override the aiokafka defaults."""
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "enable_idempotence": True,
        "acks": "all",
        "linger_ms": 5,
        "max_request_size": MAX_MESSAGE_BYTES,
        "request_timeout_ms": 30000,
    }
    settings.update(options)
    return AIOKafkaProducer(**settings)


async def start_transactional(producer: AIOKafkaProducer, bootstrap: str) -> None:
    """Start a producer made with a `transactional_id` and wait until the broker registered
    it. Registering fences any earlier producer of that id and settles its open transaction
    (committed if it was committing, else aborted), so read_committed readers then see all
    that producer ever committed and nothing more.

    aiokafka registers in the background; an empty transaction waits for it (and ends
    without a request). A broker that cannot register it (e.g. a transaction log needing more
    brokers than there are) would make it wait forever: bounded here.
    """
    await start_client(producer, bootstrap)
    try:
        async with asyncio.timeout(SEND_TIMEOUT_S):
            await producer.begin_transaction()
            await producer.abort_transaction()
    except TimeoutError as error:
        await _quietly_close(producer)
        raise ServiceUnavailableError(
            "Kafka",
            bootstrap,
            f"no transactional producer id within {SEND_TIMEOUT_S:g} s (on a single broker, "
            "transaction.state.log.replication.factor and transaction.state.log.min.isr "
            "must be 1)",
        ) from error


def make_consumer(
    bootstrap: str, group_id: str | None, *topics: str, **options: Any
) -> AIOKafkaConsumer:
    """A consumer that starts at the earliest offset, leaves commits to the caller, and reads
    committed data only (the producer and the launcher write in transactions: what an aborted
    one wrote must never be read)."""
    settings: dict[str, Any] = {
        "bootstrap_servers": bootstrap,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    settings.update(options)
    return AIOKafkaConsumer(*topics, **settings)


async def send(
    producer: AIOKafkaProducer,
    topic: str,
    value: bytes,
    *,
    key: bytes | None = None,
    headers: list[tuple[str, bytes]] | None = None,
    ack_timeout: float = SEND_TIMEOUT_S,
) -> RecordMetadata:
    """Send one message and wait for the broker's acknowledgement, at most `ack_timeout` s."""
    try:
        future = await asyncio.wait_for(
            producer.send(topic, value, key=key, headers=headers), ack_timeout
        )
        return await asyncio.wait_for(future, ack_timeout)
    except TimeoutError as error:
        raise ServiceUnavailableError(
            "Kafka", f"topic {topic!r}", f"no acknowledgement within {ack_timeout:g} s"
        ) from error


async def send_batched(
    producer: AIOKafkaProducer,
    topic: str,
    partition: int,
    records: Iterable[tuple[bytes | None, bytes]],
) -> list[asyncio.Future[Any]]:
    """Send (key, value) records to one partition in as few record batches as they fit (the
    producer's max_batch_size): one send_batch call a batch instead of one send a record, whose
    cost is mostly per call. Returns the batches' delivery futures."""
    futures = []
    batch = producer.create_batch()
    for key, value in records:
        if batch.append(key=key, value=value, timestamp=None) is None:  # full
            batch.close()
            futures.append(await producer.send_batch(batch, topic, partition=partition))
            batch = producer.create_batch()  # an empty batch takes a record of any size
            batch.append(key=key, value=value, timestamp=None)
    if batch.record_count():
        batch.close()  # complete: no need to wait linger.ms
        futures.append(await producer.send_batch(batch, topic, partition=partition))
    return futures


async def ensure_topics(
    bootstrap: str, topics: Iterable[str], partitions: int = 1, replication: int = 1
) -> None:
    """Create the topics that do not exist yet (idempotent), accepting records of up to
    MAX_MESSAGE_BYTES; through the retry policy while the broker is away."""
    wanted = list(dict.fromkeys(topics))

    async def create() -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [
                NewTopic(
                    name,
                    num_partitions=partitions,
                    replication_factor=replication,
                    topic_configs={"max.message.bytes": str(MAX_MESSAGE_BYTES)},
                )
                for name in wanted
                if name not in existing
            ]
            if missing:
                # Another service may create them concurrently: that is what we wanted anyway.
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(missing)
        finally:
            await _quietly_close(admin)

    await retrying(KAFKA, f"creating topics at {bootstrap}", create)


async def partitions_of(admin: AIOKafkaAdminClient, topics: Iterable[str]) -> dict[str, list[int]]:
    """The partition numbers of each existing topic (absent: the topic does not exist)."""
    found: dict[str, list[int]] = {}
    for topic in await admin.describe_topics(list(topics)):
        if topic["error_code"] == 0:
            found[topic["topic"]] = sorted(p["partition"] for p in topic["partitions"])
    return found


async def commit_processed(consumer: AIOKafkaConsumer, messages: Iterable[ConsumerRecord]) -> bool:
    """Commit the offsets after `messages` (processed and written by the caller). False when
    the group moved the partitions meanwhile: the new owner replays them, and the services'
    sinks are keyed by record id, so the replay overwrites instead of duplicating."""
    offsets: dict[TopicPartition, int] = {}
    for message in messages:
        tp = TopicPartition(message.topic, message.partition)
        offsets[tp] = max(offsets.get(tp, 0), message.offset + 1)
    return await commit_offsets(consumer, offsets)


async def commit_offsets(consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, int]) -> bool:
    """Commit `offsets` (each partition's next offset to read); False as commit_processed."""
    try:
        await consumer.commit(offsets)
    except (CommitFailedError, IllegalStateError) as error:
        log.warning("commit refused after a rebalance", extra={"error": str(error)})
        return False
    return True


class ConsumerStalledError(RuntimeError):
    """A consumer stopped fetching although its partitions hold records beyond its position:
    its owner recreates it (ConsumerWatch)."""


class ConsumerWatch:
    """What a consumer's getmany() does not say.

    While the broker is away, aiokafka's fetcher retries in the background and getmany()
    simply returns nothing; after a broker restart, consumers have been seen to stop fetching
    for good (aiokafka #612, #1037, #847). So between empty fetches, at most every `every_s`,
    the watch asks the broker for the end offsets of the consumer's (unpaused) partitions: no
    answer is an outage, reported like any other (shared/retry.py); records beyond the
    consumer's position that no fetch returned for `stall_s` make `check()` raise
    ConsumerStalledError, and the owner recreates the consumer.
    """

    def __init__(
        self, consumer: AIOKafkaConsumer, what: str, every_s: float = 5.0, stall_s: float = 60.0
    ):
        self.consumer = consumer
        self.every_s = every_s
        self.stall_s = stall_s
        self.outage = Watch(KAFKA, what)
        self._progress = self._checked = asyncio.get_running_loop().time()

    def fetched(self, count: int) -> None:
        """Call after each fetch with how many messages it returned."""
        if count:
            self._progress = asyncio.get_running_loop().time()

    async def check(self) -> None:
        """After an empty fetch: look, if it is time (see the class docstring)."""
        now = asyncio.get_running_loop().time()
        if now - self._checked < self.every_s:
            return
        self._checked = now
        consumer = self.consumer
        partitions = [tp for tp in consumer.assignment() if tp not in consumer.paused()]
        if not partitions:
            self._progress = now
            return

        async def behind() -> bool:
            async with asyncio.timeout(self.every_s * 2):
                ends = await consumer.end_offsets(partitions)
                positions = [await consumer.position(tp) for tp in partitions]
            return any(
                ends[tp] > position for tp, position in zip(partitions, positions, strict=True)
            )

        lagging = await self.outage.attempt(behind, default=None)
        if not lagging:  # nothing left to read, or no answer (an outage, not a stall)
            self._progress = now
        elif now - self._progress > self.stall_s:
            self._progress = now
            raise ConsumerStalledError(
                f"no record fetched for {self.stall_s:g} s although "
                f"{', '.join(map(str, partitions))} hold more"
            )
