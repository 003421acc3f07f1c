"""Replay one use case's lines into its topics at the pace of its producerType.

Lines are packed into record batches per topic (one partition per block, round-robin when the
topic has several), and only count as sent once the broker committed them, within a timeout:
a dead broker is an error, never a hang, and the counters never claim a record the broker
does not have.

Restart-safe, even after a SIGKILL, without sending a line twice: the producer is
transactional (one transactional id per use case and source, which also fences a zombie
producer of the same source) and sends one block per transaction (FAST: one group of chunks,
pipelined inside it), strictly one transaction after the other. So the committed content of
all partitions of all topics is always a prefix of the block sequence, and a restart continues
after the highest line of the committed tails (services/producer/position.py). Why not:
- a position written to Redis after each acknowledgement: a kill between the acknowledgement
  and the write sends that block again;
- the tails of a non-transactional topic: with blocks round-robin over partitions and several
  in flight, each partition's tail does not say which blocks of the other partitions were
  lost; and reading what landed cannot be exact anyway, since a produce request of the killed
  process may still be appended after the restart looked (nothing fences it). Registering the
  transactional id settles the predecessor's open transaction before the tails are read.
The cost: a commit per block, and FAST pauses its pipeline at each commit (benchmarks/producer.py
measures it; the figures are in docs/pipeline.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    KafkaError,
    MessageSizeTooLargeError,
    ProducerFenced,
    RecordTooLargeError,
)
from aiokafka.partitioner import DefaultPartitioner
from redis.asyncio import Redis

from services.producer.labels import ProducerLabels
from services.producer.pacing import (
    GroupOf,
    TimestampPacer,
    block_wait,
    blocks,
    blocks_by_group,
    parse_timestamp_ms,
    record_limit,
)
from services.producer.position import FROM_START, Resume
from services.producer.progress import Tracker
from services.producer.source import Line, LineSource
from shared.clients.kafka import MAX_MESSAGE_BYTES, SEND_TIMEOUT_S
from shared.config import ProducerType, UseCase
from shared.config.live import LiveConfig
from shared.config.models import StreamingConfig
from shared.errors import ServiceUnavailableError, StreamerError
from shared.retry import REDIS, Watch, is_transient
from shared.wire.kafka import RECORD_ID_HEADER

log = logging.getLogger("producer")

Headers = list[tuple[str, bytes]]
FAST_CHUNK = 1000  # FAST: lines enqueued before yielding to the loop
FAST_CHUNKS_IN_FLIGHT = 4  # FAST: chunks sent while the oldest one's acks come back
FAST_CHUNKS_PER_TRANSACTION = 20  # FAST: chunks committed together (a commit stalls the pipe)
FAST_BATCH_BYTES = 512 * 1024  # FAST without batch.size: fewer, larger produce requests
ABORT_TIMEOUT_S = 5.0
TIMESTAMP_ACK_EVERY = 1000  # TIMESTAMP: most due records sent before their acks are awaited


class Sent(NamedTuple):
    """One record batch handed to the producer: which lines, where, and its delivery."""

    topic: str
    lines: list[Line]
    future: asyncio.Future[Any]


class ProducerError(StreamerError):
    """A use case could not be replayed; the message names the use case and the culprit."""


@dataclass
class ProducerStats:
    """What one use case's replay did (the summary log line, tests and benchmarks read it).

    `blocks` counts acknowledged batches: blocks in BLOCK/BLOCKBYGROUP, chunks in FAST,
    groups of records acknowledged together in TIMESTAMP.
    """

    usecase: str
    source: str
    mode: str
    topics: tuple[str, ...]
    records_sent: int = 0
    resumed_after: int = 0  # the last line an earlier run had committed (0: from the start)
    blank_lines: int = 0
    blocks: int = 0
    bad_timestamps: int = 0
    invalid_utf8: int = 0
    elapsed_s: float = 0.0
    outcome: str = "not started"  # end of file | maxBlocks reached | stopped | failed | cancelled

    @property
    def records_per_s(self) -> float:
        return self.records_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def _after(self) -> str:
        return f" after line {self.resumed_after:,}" if self.resumed_after else ""

    def summary(self) -> str:
        return (
            f"{self.usecase}: {self.records_sent:,} records of {self.source} sent to "
            f"{', '.join(self.topics)}{self._after} in {self.elapsed_s:.1f} s "
            f"({self.records_per_s:,.0f}/s), "
            f"{self.blocks:,} blocks, {self.blank_lines:,} blank lines skipped; {self.outcome}"
        )

    def fields(self) -> dict[str, Any]:
        values = asdict(self)
        values["topics"] = list(self.topics)
        values["elapsed_s"] = round(self.elapsed_s, 3)
        values["records_per_s"] = round(self.records_per_s, 1)
        return values


@dataclass
class Plan:
    """A use case checked and ready before anything connects: its file is open and readable."""

    usecase: UseCase
    source: LineSource
    name: str
    column: GroupOf | None = None  # the group / timestamp column, for the modes that need it
    topics: tuple[str, ...] = field(default=())
    resume: Resume = FROM_START  # where the topics end: set once they were read
    labels: ProducerLabels | None = None  # label.delay: the labels held back

    @property
    def config(self) -> StreamingConfig:
        return self.usecase.streaming


class Replay:
    """Sends one plan's lines to its topics, paced by the use case's producerType."""

    def __init__(
        self,
        plan: Plan,
        producer: AIOKafkaProducer,
        stop: asyncio.Event,
        stats: ProducerStats,
        tracker: Tracker,
        clock: Callable[[], float] = time.monotonic,
        live: LiveConfig | None = None,
        redis: Redis | None = None,
    ) -> None:
        self.plan = plan
        self.producer = producer
        self.stop = stop
        self.stats = stats
        self.tracker = tracker
        self.clock = clock
        self.key = plan.name.encode()
        self.config = plan.config
        self.live = live
        self.redis = redis
        self._limit_done = 0.0  # fraction of maxBlocks done, for the progress bar
        # Redis away: pacing changes wait (the replay goes on)
        self._configuration = Watch(REDIS, "reading the pacing configuration")
        self._partitions: dict[str, Iterator[int]] = {}

    async def run(self) -> None:
        mode = self.config.producer_type
        source = self.plan.source
        size = self._records_per_block
        if mode is ProducerType.BLOCK:
            await self._blocks(blocks(source, size))
        elif mode is ProducerType.BLOCKBYGROUP:
            assert self.plan.column is not None
            await self._blocks(blocks_by_group(source, size, self.plan.column))
        elif mode is ProducerType.TIMESTAMP:
            await self._timestamps()
        else:
            await self._fast()
        if self.plan.labels is not None and self.stats.outcome == "end of file":
            await self._release_labels(self.plan.labels)
        self.tracker.update(self.stats.records_sent, self._fraction(), force=True)

    async def _release_labels(self, labels: ProducerLabels) -> None:
        """The file ended: the labels still held go out, each when due (a delay in time) or
        all at once (in records: River reveals them all at the end of the stream)."""
        if labels.held.delay.records is not None:
            await self._send_labels(labels.drain())
            return
        while len(labels.held):
            wait = labels.held.seconds_to_next(self.clock())
            if await self._sleep(wait or 0.0):
                self.stats.outcome = "stopped"  # a restart holds them again
                return
            await self._send_labels(labels.due(self.clock()))

    async def _send_labels(self, label_lines: list[Line]) -> None:
        """Labels alone, in a transaction of their own."""
        labels = self.plan.labels
        if not label_lines or labels is None:
            return
        sent: list[Sent] = []
        await self._begin()
        try:
            headers = self._headers(label_lines)
            await self._enqueue_to(labels.topic, label_lines, headers, sent)
            await self._acknowledged(sent)
            await self._commit([label_lines])
        except BaseException:
            _forget(sent)
            await self._abort()
            raise

    # -- pacing modes ----------------------------------------------------------------------

    def _records_per_block(self) -> int:
        return self.config.records_per_block

    async def _follow(self) -> None:
        """Pacing changed at run time (recordsPerBlock, producerTimeInterval, maxBlocks)
        applies from the next block."""
        live, redis = self.live, self.redis
        if live is None or redis is None:
            return
        if await self._configuration.attempt(lambda: live.refresh(redis), default=False):
            self.config = live.current.streaming
            log.info(
                f"{self.stats.usecase}: pacing changed",
                extra={"usecase": self.stats.usecase, "overrides": live.overrides},
            )

    async def _blocks(self, cut: Iterator[list[Line]]) -> None:
        """One block every producerTimeInterval ms (from the previous block's start), each
        acknowledged before the next starts, at most maxBlocks."""
        previous_start: float | None = None
        for block in cut:
            max_blocks = self.config.max_blocks
            if 0 <= max_blocks <= self.stats.blocks:
                break  # the block read is not sent: maxBlocks reached (it may have been lowered)
            interval_s = self.config.producer_time_interval / 1000.0
            if await self._pause(block_wait(previous_start, interval_s, self.clock())):
                self.stats.outcome = "stopped"  # the block read is not sent, nor counted
                return
            previous_start = self.clock()
            if max_blocks > 0:
                self._limit_done = (self.stats.blocks + 1) / max_blocks
            await self._send(block)
            await self._follow()
        max_blocks = self.config.max_blocks
        reached = max_blocks >= 0 and self.stats.blocks >= max_blocks
        self.stats.outcome = "maxBlocks reached" if reached else "end of file"

    async def _timestamps(self) -> None:
        """Each record waits its original gap to the previous one, (Δt + epsilonne) / scale.

        The gaps add up on a schedule from the first record. Records already due are sent
        together, acknowledged before each wait and every TIMESTAMP_ACK_EVERY records.
        """
        assert self.plan.column is not None
        column = self.plan.column
        pacer = TimestampPacer(self.config.epsilonne, self.config.scale)
        limit = record_limit(self.config.max_blocks, self.config.records_per_block)
        due: list[Line] = []
        start: float | None = None
        self.stats.outcome = "end of file"
        for read, line in enumerate(self.plan.source, start=1):
            timestamp = parse_timestamp_ms(column(line.value))
            if timestamp is None:
                self._bad_timestamp(line)
            at = pacer.due_ms(timestamp) / 1000.0
            start = self.clock() if start is None else start
            if start + at > self.clock() and due:
                await self._send(due)
                due = []
            if await self._pause(start + at - self.clock()):
                self.stats.outcome = "stopped"
                break
            due.append(line)
            if len(due) >= TIMESTAMP_ACK_EVERY:
                await self._send(due)
                due = []
            if limit is not None and read >= limit:
                self.stats.outcome = "maxBlocks reached"
                break
        if due:
            await self._send(due)

    async def _fast(self) -> None:
        """No pacing: chunks of lines go out while earlier chunks' acknowledgements come back,
        FAST_CHUNKS_PER_TRANSACTION chunks per transaction."""
        chunks = self._fast_chunks()
        while await self._transact(itertools.islice(chunks, FAST_CHUNKS_PER_TRANSACTION)):
            self.tracker.update(self.stats.records_sent, self._fraction())

    def _fast_chunks(self) -> Iterator[list[Line]]:
        """FAST's chunks of lines, up to maxBlocks x recordsPerBlock lines; none after a stop."""
        limit = record_limit(self.config.max_blocks, self.config.records_per_block)
        read = 0
        self.stats.outcome = "end of file"
        while True:
            if self.stop.is_set():
                self.stats.outcome = "stopped"
                return
            wanted = FAST_CHUNK if limit is None else min(FAST_CHUNK, limit - read)
            if wanted <= 0:
                self.stats.outcome = "maxBlocks reached"
                return
            chunk = self.plan.source.read(wanted)
            if not chunk:
                return
            read += len(chunk)
            yield chunk

    # -- sending ---------------------------------------------------------------------------

    async def _send(self, lines: list[Line]) -> None:
        """Send one block to every topic, in a transaction of its own."""
        await self._transact([lines])
        self.tracker.update(self.stats.records_sent, self._fraction())

    async def _transact(self, chunks: Iterable[list[Line]]) -> int:
        """Send the chunks in one transaction, each to the next partition of every topic, up
        to FAST_CHUNKS_IN_FLIGHT of them unacknowledged; commit once all are acknowledged.
        Only then do their lines count as sent. Returns how many chunks were committed."""
        in_flight: deque[list[Sent]] = deque()
        done: list[list[Line]] = []
        try:
            for chunk in chunks:
                if not done:
                    await self._begin()
                done.append(chunk)
                in_flight.append(await self._enqueue(chunk))
                if len(in_flight) >= FAST_CHUNKS_IN_FLIGHT:
                    await self._acknowledged(in_flight.popleft())
                else:
                    await asyncio.sleep(0)  # let the sender and the signal handlers run
            while in_flight:
                await self._acknowledged(in_flight.popleft())
            if done:
                await self._commit(done)
        except BaseException:
            for sent in in_flight:
                _forget(sent)
            if done:
                await self._abort()
            raise
        self.stats.records_sent += sum(len(chunk) for chunk in done)
        self.stats.blocks += len(done)
        return len(done)

    async def _begin(self) -> None:
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await self.producer.begin_transaction()
        except TimeoutError as error:
            reason = f"no transactional producer id within {SEND_TIMEOUT_S:g} s"
            raise self._unavailable(reason) from error

    async def _commit(self, chunks: list[list[Line]]) -> None:
        lines = [chunks[0][0], chunks[-1][-1]]
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                await self.producer.commit_transaction()
        except TimeoutError as error:
            raise self._unavailable(
                f"no commit within {SEND_TIMEOUT_S:g} s for lines "
                f"{lines[0].number}-{lines[-1].number}"
            ) from error
        except KafkaError as error:
            raise self._failed(lines, None, error) from error

    async def _abort(self) -> None:
        """After a failure, best effort and bounded: abort the open transaction once the
        batches in flight settled (aborting before them would let a late batch open a
        transaction nobody ends); else the broker aborts it after its transaction timeout,
        and a restarted producer at once."""
        try:
            async with asyncio.timeout(ABORT_TIMEOUT_S):
                await self.producer.flush()
                await self.producer.abort_transaction()
        except Exception:  # already failing: the first error is the one to report
            log.debug(f"{self.stats.usecase}: transaction not aborted", exc_info=True)

    async def _partition(self, topic: str) -> int:
        """Where the next block goes. One partition: the file's order is the topic's order.
        Several (launchers scaled out share them): blocks go round-robin, starting where the
        default partitioner (murmur2, as the Java client) puts our constant key, or after the
        partition of the last block a previous run committed; each partition keeps the file's
        order."""
        if topic not in self._partitions:
            available = sorted(await self.producer.partitions_for(topic))
            first = self.plan.resume.next_partition.get(topic)
            if first not in available:  # not a restart: where the partitioner puts our key
                first = DefaultPartitioner()(self.key, available, available)
            start = available.index(first)
            self._partitions[topic] = itertools.cycle(available[start:] + available[:start])
        return next(self._partitions[topic])

    async def _enqueue(self, lines: list[Line]) -> list[Sent]:
        """Pack the lines into record batches, per topic, and hand them to the producer.

        Batches skip aiokafka's per-message future and partitioner (the costliest part of a
        send); each batch holds at most `max_batch_size` bytes, a larger line goes alone.
        """
        sent: list[Sent] = []
        labels = self.plan.labels
        due: list[Line] = []
        if labels is not None:  # the lines go without their labels; the labels due go along
            lines, due = labels.send(lines, self.clock())
        headers = self._headers(lines)
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                for topic in self.plan.topics:
                    await self._enqueue_to(topic, lines, headers, sent)
                if labels is not None and due:
                    await self._enqueue_to(labels.topic, due, self._headers(due), sent)
        except BaseException as error:
            _forget(sent)
            if isinstance(error, TimeoutError):
                reason = f"the producer took no new record within {SEND_TIMEOUT_S:g} s"
                raise self._unavailable(reason) from error
            if isinstance(error, KafkaError):
                raise self._failed(lines, None, error) from error
            raise
        return sent

    def _headers(self, lines: list[Line]) -> list[Headers]:
        return [[(RECORD_ID_HEADER, b"%s:%d" % (self.key, line.number))] for line in lines]

    async def _enqueue_to(
        self, topic: str, lines: list[Line], headers: list[Headers], sent: list[Sent]
    ) -> None:
        partition = await self._partition(topic)
        key, first = self.key, 0
        batch = self.producer.create_batch()
        for index, (line, line_headers) in enumerate(zip(lines, headers, strict=True)):
            if len(line.value) > MAX_MESSAGE_BYTES:
                raise self._refused(
                    [line],
                    topic,
                    MessageSizeTooLargeError(
                        f"larger than the producer's limit of {MAX_MESSAGE_BYTES:,} bytes"
                    ),
                )
            if batch.append(key=key, value=line.value, timestamp=None, headers=line_headers):
                continue
            batch.close()  # full: no linger
            future = await self.producer.send_batch(batch, topic, partition=partition)
            sent.append(Sent(topic, lines[first:index], future))
            first = index
            batch = self.producer.create_batch()  # an empty batch takes a record of any size
            batch.append(key=key, value=line.value, timestamp=None, headers=line_headers)
        batch.close()  # complete: ready to go without waiting linger.ms
        future = await self.producer.send_batch(batch, topic, partition=partition)
        sent.append(Sent(topic, lines[first:], future))

    async def _acknowledged(self, sent: list[Sent]) -> None:
        """Wait (bounded) until the broker acknowledged every batch."""
        try:
            async with asyncio.timeout(SEND_TIMEOUT_S):
                results = await asyncio.gather(*(s.future for s in sent), return_exceptions=True)
        except TimeoutError as error:
            _forget(sent)
            first, last = sent[0].lines[0].number, sent[-1].lines[-1].number
            raise self._unavailable(
                f"no acknowledgement within {SEND_TIMEOUT_S:g} s for lines {first}-{last}"
            ) from error
        for batch, result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                raise self._failed(batch.lines, batch.topic, result) from result

    # -- helpers ---------------------------------------------------------------------------

    async def _pause(self, seconds: float) -> bool:
        """Wait between two sends, sending the labels that fall due meanwhile (a delay in
        time: on time, not with the next block); True when we must stop."""
        labels = self.plan.labels
        end = self.clock() + seconds
        while labels is not None:
            due_in = labels.held.seconds_to_next(self.clock())
            if due_in is None or self.clock() + due_in >= end:
                break
            if await self._sleep(due_in):
                return True
            await self._send_labels(labels.due(self.clock()))
        return await self._sleep(end - self.clock())

    async def _sleep(self, seconds: float) -> bool:
        """Wait, unless a stop is requested meanwhile; True when we must stop."""
        if self.stop.is_set():
            return True
        if seconds <= 0:
            return False
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        return self.stop.is_set()

    def _fraction(self) -> float:
        return max(self.plan.source.fraction_read(), self._limit_done)

    def _bad_timestamp(self, line: Line) -> None:
        self.stats.bad_timestamps += 1
        if self.stats.bad_timestamps == 1:
            log.warning(
                f"{self.stats.usecase}: line {line.number}: the first field is no timestamp "
                "(ISO-8601 or epoch ms); such lines are sent without waiting, further ones only "
                "counted",
                extra={"usecase": self.stats.usecase, "line": line.number},
            )

    def _unavailable(self, reason: str) -> ServiceUnavailableError:
        return ServiceUnavailableError(
            "Kafka",
            f"{self.plan.usecase.bootstrap_servers} (use case {self.stats.usecase})",
            reason,
        )

    def _failed(
        self, lines: list[Line], topic: str | None, error: BaseException
    ) -> ServiceUnavailableError | ProducerError:
        """A broker away (retried by the service, shared/retry.py), or a refusal."""
        if is_transient(error):
            first, last = lines[0].number, lines[-1].number
            return self._unavailable(f"lines {first}-{last}: {type(error).__name__}: {error}")
        return self._refused(lines, topic, error)

    def _refused(self, lines: list[Line], topic: str | None, error: BaseException) -> ProducerError:
        where = f"topic {topic}" if topic else ", ".join(self.plan.topics)
        first, last = lines[0].number, lines[-1].number
        which = f"line {first}" if first == last else f"lines {first}-{last}"
        hint = ""
        if isinstance(error, ProducerFenced):
            hint = (
                " (another producer of this use case and source started: it took over, this "
                "one stops)"
            )
        elif isinstance(error, MessageSizeTooLargeError | RecordTooLargeError):
            biggest = max(len(line.value) for line in lines)
            hint = (
                f" (largest line: {biggest:,} bytes; the broker's message.max.bytes, or the "
                "topic's max.message.bytes, must allow it)"
            )
        return ProducerError(
            f"{self.stats.usecase}: Kafka refused {which} of {self.plan.config.datafile} for "
            f"{where}: {type(error).__name__}: {error}{hint}"
        )


def _forget(sent: list[Sent]) -> None:
    """Abandoned batches: mark their outcome as seen, so asyncio does not warn about it later."""
    for batch in sent:
        batch.future.add_done_callback(_retrieve)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()
