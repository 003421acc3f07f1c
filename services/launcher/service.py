"""The launcher of one use case: a consumer-group member that turns input records into stored
records and predictions, each output once (services/launcher/delivery.py).

Per micro-batch: take what has arrived (waiting at most readingTimeInterval ms), parse, predict
(worker thread), then write the InfluxDB points while sending the outputs and dead letters,
commit the input offsets once both are written, and say in Redis how far it predicted each
partition (the trainer learns nothing a launcher has not predicted yet). A batch's sinks are
written while the next batch is fetched and processed (one batch in flight at most): the
network round trips of one overlap the CPU work of the other, which measured a third of a
batch's time when they took turns. A crash replays the uncommitted batches; every sink is
keyed by the input record's topic/partition/offset, so a replay overwrites.

Outages (shared/retry.py): a batch's sinks are retried until they are written, whatever the
outage's length (a rebalance waits for the batch in flight: none is orphaned); Redis look-ups
that the next batch repeats are skipped while Redis is away; the outage is in the heartbeat.

Launchers predict; the trainer learns (services/trainer). Each new model version is loaded in
the background from the moment it is published (the launcher watches the versions' stream;
fetch and unpickle off the event loop) and adopted between two batches, so any
number of launchers predict with versions of one shared model. `launcher.learn=true` makes a
single launcher learn test-then-train itself (no staleness), adopting the trainer's versions
only at start and after a retrain.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import ProducerFenced
from aiokafka.structs import ConsumerRecord

from services.launcher.batch import BatchResult, ServingModel, process_batch
from services.launcher.delivery import (
    AtLeastOnce,
    Delivery,
    ExactlyOnce,
    RecordsPending,
    Stored,
)
from shared.algorithms.contenders import PROMOTION_MODE, ROLLBACK_MODE, Contenders
from shared.algorithms.registry import build_algorithm
from shared.clients.influx import AioinfluxStore
from shared.clients.kafka import (
    ConsumerStalledError,
    ConsumerWatch,
    ensure_topics,
    make_consumer,
    start_client,
)
from shared.clients.redis import check_redis, connect_redis
from shared.config import UseCase
from shared.config.live import LiveConfig
from shared.modelstore import ModelIntegrityError, ModelStore, ModelVersion, model_secret
from shared.prepostprocessors import processor_for
from shared.records import record_class_for
from shared.retry import INFLUXDB, KAFKA, REDIS, Watch, is_transient, retrying
from shared.wire.influx import RecordsMeasurement
from shared.wire.kafka import dead_letter_topic, partition_key
from shared.wire.keys import UseCaseKeys

log = logging.getLogger("launcher")

MAX_BATCH_RECORDS = 2000
#: Longest wait for a version within launcher.max.staleness while none is published.
STALENESS_WAIT_S = 10.0
#: The same before the first version: a trainer may still be starting on a busy machine (or
#: none runs: then the launcher predicts without a model until one comes).
FIRST_VERSION_WAIT_S = 30.0
#: One wait for the next publication (the model's latest version is checked in between).
VERSION_WAIT_MS = 200
#: One blocking read of the published versions' stream (below the Redis socket timeout).
VERSION_WATCH_MS = 1000
#: Pause after the versions' stream could not be read (Redis away: the outage is reported).
VERSION_WATCH_RETRY_S = 1.0
#: Bound of one attempt at writing a batch's sinks (a hung client counts as a failure).
SINK_TIMEOUT_S = 60.0


@dataclass
class LauncherCounters:
    batches: int = 0
    records: int = 0
    outputs: int = 0
    dead_letters: int = 0
    model_swaps: int = 0
    lag: int = 0  # records in the assigned partitions not processed yet, after the last batch
    staleness: int = 0  # the largest staleness of the last batch's predictions
    model_load_ms: float = 0.0  # fetch and unpickle time of the last version adopted


class _WaitForBatch(ConsumerRebalanceListener):
    """Partitions are given up only between batches, once the batch in flight is committed
    (`settle`), so a batch's commit is never orphaned; the delivery learns the new assignment
    (its transactional producers follow it)."""

    def __init__(
        self, lock: asyncio.Lock, delivery: Delivery, settle: Callable[[], Awaitable[bool]]
    ):
        self.lock = lock
        self.delivery = delivery
        self.settle = settle

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            await self.settle()

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(map(str, assigned))})
        async with self.lock:
            await self.delivery.assigned(set(assigned))


class Launcher:
    """One use case's launcher. `run()` until `stop` is set, then drain and commit."""

    def __init__(self, usecase: UseCase, stop: asyncio.Event):
        self.usecase = usecase
        self.stop = stop
        self.counters = LauncherCounters()
        self.record_class = record_class_for(usecase)
        self.processor = processor_for(usecase)
        self.measurement = RecordsMeasurement(usecase.name)
        self.keys = UseCaseKeys(usecase.name)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"launcher-{usecase.name}")
        self.batch_lock = asyncio.Lock()
        # the sinks of the last batch processed, written while the next one is processed
        self._in_flight: asyncio.Task[tuple[BatchResult, bool]] | None = None
        self.refused: set[int] = set()  # model versions that failed their HMAC check
        self.model = ServingModel(None, None)
        self._apply_switches()
        self._loading: asyncio.Task[ModelVersion | None] | None = None
        self._examined = 0  # the newest version looked at (adopted or not)
        self._published = 0  # the newest version seen published (maybe not looked at yet)
        # (the version,) at which waiting for a fresher one stopped: a tuple, since that
        # version may be None (no version at all, no trainer running)
        self._gave_up_at: tuple[int | None] | None = None
        self._roles: dict | None = None  # a change of champion a learning launcher follows
        # the algorithm cannot change at run time: whether it learns incrementally is fixed
        self.incremental = build_algorithm(usecase).incremental

    @property
    def model_version(self) -> int | None:
        return self.model.version

    def _apply_switches(self) -> None:
        streaming = self.usecase.streaming
        self.model.learn = streaming.launcher_learn and streaming.online_train
        self.model.predict = streaming.online_inference
        self.model.probabilities = streaming.output_probabilities

    async def run(self) -> LauncherCounters:
        usecase, streaming = self.usecase, self.usecase.streaming
        bootstrap = usecase.bootstrap_servers
        dlq_topics = [dead_letter_topic(topic) for topic in streaming.main_topics]
        await ensure_topics(
            bootstrap,
            [*streaming.main_topics, streaming.output_topic, *dlq_topics],
            partitions=usecase.topic_partitions,
        )
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.executor.shutdown, wait=True)
            redis = connect_redis(usecase.connections)
            stack.push_async_callback(redis.aclose)
            await retrying(
                REDIS, "connecting", lambda: check_redis(redis, usecase.connections.redis_url)
            )
            self.redis = redis
            self.live = LiveConfig(usecase)
            self.store = ModelStore(redis, usecase.name, model_secret(usecase.connections))
            influx = AioinfluxStore(usecase.connections)
            stack.push_async_callback(influx.close)
            await retrying(INFLUXDB, "connecting", influx.check)
            await retrying(INFLUXDB, "creating the database", influx.ensure_database)
            self.influx = influx
            self._redis_lookups = Watch(REDIS, "looking for model versions and configuration")
            await retrying(REDIS, "loading the newest model version", self._adopt_initial_model)
            stack.push_async_callback(self._cancel_loading)
            watcher = asyncio.create_task(self._watch_versions(), name="launcher-version-watch")
            stack.push_async_callback(_cancel, watcher)

            kind = ExactlyOnce if streaming.launcher_transactions else AtLeastOnce
            self.delivery = kind(bootstrap, usecase.name, streaming.output_topic, usecase.group_id)
            await self.delivery.start()
            stack.push_async_callback(self.delivery.close)
            log.info("launcher started", extra={"usecase": usecase.name, "group": usecase.group_id})
            while not self.stop.is_set():
                consumer = make_consumer(
                    bootstrap,
                    usecase.group_id,
                    max_poll_records=streaming.max_poll_records or MAX_BATCH_RECORDS,
                    **_consumer_tuning(usecase),
                )
                listener = _WaitForBatch(
                    self.batch_lock, self.delivery, functools.partial(self._settle, consumer)
                )
                consumer.subscribe(streaming.main_topics, listener=listener)
                await start_client(consumer, bootstrap)
                try:
                    await self._consume(consumer)
                except ConsumerStalledError as error:  # aiokafka #612: a new one is made
                    log.warning(f"consumer stuck, recreated: {error}")
                finally:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(consumer.stop(), SINK_TIMEOUT_S)
        log.info("launcher stopped", extra={"usecase": usecase.name, **self.counters.__dict__})
        return self.counters

    async def _consume(self, consumer: AIOKafkaConsumer) -> None:
        wait_ms = max(self.usecase.streaming.reading_time_interval, 1)
        stop_wait = asyncio.ensure_future(self.stop.wait())
        watch = ConsumerWatch(consumer, "reading the input topics")
        try:
            while not self.stop.is_set():
                fetch = asyncio.ensure_future(consumer.getmany(timeout_ms=wait_ms))
                await asyncio.wait({fetch, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():  # stopping: nothing fetched is lost, it was not committed
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await fetch
                    break
                self._swap_if_loaded()
                self._apply_switches()  # run-time overrides (_follow_config), between batches
                batch = fetch.result()
                messages = [m for partition in batch.values() for m in partition]
                watch.fetched(len(messages))
                if messages:
                    async with self.batch_lock:
                        messages = await self._within_staleness(consumer, messages)
                        await self._handle(consumer, messages)
                else:
                    async with self.batch_lock:
                        await self._settle(consumer)  # idle: the last batch is written now
                    await watch.check()
                    await self._look_up()
            async with self.batch_lock:
                await self._settle(consumer)  # stopping: the last batch is written, committed
        finally:
            stop_wait.cancel()
            await self._abandon_in_flight()

    async def _look_up(self) -> None:
        """After every fetch, busy (while the worker processes the batch) or idle: a stream
        that never pauses must not keep an old version (one Redis GET; a version is loaded in
        the background), and the run-time configuration is followed."""
        await self._redis_lookups.attempt(self._look_for_new_version)
        await self._redis_lookups.attempt(self._follow_config)

    async def _within_staleness(
        self, consumer: AIOKafkaConsumer, messages: list[ConsumerRecord]
    ) -> list[ConsumerRecord]:
        """The messages the serving version may predict: those it is at most
        launcher.max.staleness records behind on (a prefix of each partition's messages; the
        rest is fetched again later). When none qualifies, ask the trainer for a version that
        far (`launcher:demand`) and wait for it; a trainer that publishes nothing for
        STALENESS_WAIT_S (down, or not learning) no longer holds predictions back."""
        bound = self.usecase.streaming.launcher_max_staleness
        if bound < 0 or self.model.learn or not self.incremental:
            return messages  # a batch model's versions come with its refits, not on demand
        if self._gave_up_at == (self.model.version,):
            return messages  # the trainer publishes nothing: wait again once it does
        waited_since = time.monotonic()
        wait_s = STALENESS_WAIT_S if self.model.version is not None else FIRST_VERSION_WAIT_S
        while not self.stop.is_set():
            allowed: list[ConsumerRecord] = []
            held: dict[TopicPartition, int] = {}
            for message in messages:
                tp = TopicPartition(message.topic, message.partition)
                stale = self.model.staleness(message.topic, message.partition, message.offset)
                if tp in held or (stale is not None and stale > bound):
                    held.setdefault(tp, message.offset)
                elif stale is None and message.offset > bound:
                    held.setdefault(tp, message.offset)  # no version yet: as if none learnt
                else:
                    allowed.append(message)
            if allowed or not held:
                for tp, offset in held.items():
                    consumer.seek(tp, offset)
                return allowed
            if time.monotonic() - waited_since > wait_s:
                log.warning(
                    "no model version within launcher.max.staleness: predicting with the "
                    "current one until the trainer publishes again",
                    extra={"usecase": self.usecase.name, "waited_s": wait_s},
                )
                self._gave_up_at = (self.model.version,)
                return messages
            # ask for half a bound of room beyond the first waiting record: the trainer then
            # publishes once per half bound, not once per record
            demand = {
                partition_key(tp.topic, tp.partition): offset - bound // 2
                for tp, offset in held.items()
            }
            await retrying(
                REDIS,
                "asking for a fresher model version",
                functools.partial(self._ask_and_wait, demand),
            )
        return []

    async def _ask_and_wait(self, demand: dict[str, int]) -> None:
        # redis-py takes fields as an invariant dict of its own unions: a dict[str, int] is fine
        await self.redis.hset(self.keys.launcher_demand, mapping=demand)  # type: ignore[arg-type]
        await self._wait_for_version()

    async def _wait_for_version(self) -> None:
        """Adopt the newest version now, or wait (briefly) for the next publication."""
        latest = await self.store.latest_version()
        if latest is not None and latest > (self.model.version or 0):
            self._adopt(await self._load(latest))
            return
        await self.store.next_publication("$", VERSION_WAIT_MS)

    async def _handle(self, consumer: AIOKafkaConsumer, messages: list) -> None:
        """Process the batch (in the worker thread) while the previous one's sinks are written
        (on the event loop), then start writing this one's: the CPU work of a batch and the
        I/O of the one before overlap, one batch ahead at most. When the previous batch was
        not committed, this one is dropped and both are fetched again."""
        if not messages:
            return
        consumed_ms = int(time.time() * 1000)
        processing = asyncio.get_running_loop().run_in_executor(
            self.executor,
            process_batch,
            self.usecase.name,
            self.measurement,
            messages,
            self.record_class,
            self.model,
            self.processor,
            consumed_ms,
        )
        try:
            await self._look_up()  # the worker does not wait for these round trips
        finally:
            result: BatchResult = await processing
        if not await self._settle(consumer, then=result):
            return
        self._in_flight = asyncio.create_task(self._deliver(result, consumer))
        self.counters.lag = await _lag(consumer, self.counters.lag)

    async def _deliver(
        self, result: BatchResult, consumer: AIOKafkaConsumer
    ) -> tuple[BatchResult, bool]:
        """Write the batch's sinks and report the progress; False: it was not committed."""
        if not await self._write_sinks(result, consumer):
            return result, False
        await retrying(
            REDIS, "reporting progress", lambda: self._report_progress(result.next_offsets)
        )
        counters = self.counters
        counters.batches += 1
        counters.records += len(result.messages)
        counters.outputs += result.output_count()
        counters.dead_letters += len(result.dead)
        counters.staleness = max(result.staleness, default=0)
        return result, True

    async def _settle(self, consumer: AIOKafkaConsumer, then: BatchResult | None = None) -> bool:
        """Wait until the batch in flight is written. When it was not committed (its
        partitions moved meanwhile), it is fetched again from its first offsets in the
        partitions still here, and so is `then` (a batch processed after it, dropped)."""
        task, self._in_flight = self._in_flight, None
        if task is None:
            return True
        result, committed = await task
        if committed:
            return True
        if then is not None:
            self._rewind(consumer, then)
        self._rewind(consumer, result)  # last: its offsets come first where both have some
        await self._redis_lookups.attempt(self._look_for_new_version)
        return False

    async def _abandon_in_flight(self) -> None:
        """Leaving on an error: a batch still being written is waited for; an error of its own
        is logged (the one leaving wins). What it did not commit is fetched again by the next
        consumer of its partitions."""
        task, self._in_flight = self._in_flight, None
        if task is None:
            return
        try:
            await task
        except Exception:
            log.exception(
                "the batch in flight was not written", extra={"usecase": self.usecase.name}
            )

    def _rewind(self, consumer: AIOKafkaConsumer, result: BatchResult) -> None:
        """A batch that was not committed is fetched again from its first offsets, in the
        partitions still assigned here (the others' new owner processes it)."""
        first: dict[TopicPartition, int] = {}
        for message in result.messages:
            tp = TopicPartition(message.topic, message.partition)
            first[tp] = min(first.get(tp, message.offset), message.offset)
        done = self.delivery.committed_of(result)
        for tp, offset in first.items():
            if tp in consumer.assignment() and tp not in done:
                consumer.seek(tp, offset)

    async def _report_progress(self, next_offsets: dict[TopicPartition, int]) -> None:
        """Say how far this launcher predicted (the trainer's learning bound), and look for a
        newer model version, in one round trip."""
        progress = {
            partition_key(tp.topic, tp.partition): offset for tp, offset in next_offsets.items()
        }
        async with self.redis.pipeline(transaction=False) as pipe:
            # redis-py takes fields as an invariant dict of its own unions: a dict[str, int] is fine
            pipe.hset(self.keys.launcher_progress, mapping=progress)  # type: ignore[arg-type]
            pipe.get(self.keys.model_latest)
            _, latest = await pipe.execute()
        self._start_loading(int(latest) if latest is not None else None)

    async def _write_sinks(self, result: BatchResult, consumer: AIOKafkaConsumer) -> bool:
        """The records to InfluxDB (idempotent by key) while the outputs and dead letters are
        sent; the input offsets commit once both are written (services/launcher/delivery.py),
        each retried until written (shared/retry.py; the delivery recovers its producers
        between two attempts). False when the partitions moved meanwhile (the batch is not
        committed: their new owner processes it)."""

        async def write_records() -> None:
            await self.influx.write_lines(result.influx_lines)
            await self.influx.write_lines(result.progress_lines)

        stored = asyncio.create_task(
            retrying(
                INFLUXDB,
                "writing a batch's records",
                write_records,
                attempt_timeout=SINK_TIMEOUT_S,
            )
        )
        try:
            try:
                committed = await self._deliver_outputs(result, consumer, stored)
            except RecordsPending:  # InfluxDB slow or away: the outputs wait for the records
                await stored
                committed = await self._deliver_outputs(result, consumer, None)
            await stored  # written: every commit waited for it
            return committed
        finally:
            if not stored.done():  # the delivery failed: the batch is fetched again
                await _cancel(stored)
            elif not stored.cancelled():
                stored.exception()  # retrieved: the delivery's own error is the one raised

    async def _deliver_outputs(
        self, result: BatchResult, consumer: AIOKafkaConsumer, stored: Stored | None
    ) -> bool:
        async def recover(error: BaseException) -> None:
            await self.delivery.recover()

        try:
            return await retrying(
                KAFKA,
                "writing a batch's outputs and committing its offsets",
                lambda: self.delivery.deliver(result, consumer, stored),
                attempt_timeout=SINK_TIMEOUT_S,
                before_retry=recover,
            )
        except ProducerFenced:
            log.warning("fenced: another launcher owns the partition now")
            await self.delivery.recover()
            return False

    async def _follow_config(self) -> None:
        """Run-time overrides (online.train / online.inference) apply from the next batch
        (`_apply_switches` before it: the worker may be processing one now)."""
        if await self.live.refresh(self.redis):
            self.usecase = self.live.current
            log.info(
                "configuration changed",
                extra={"usecase": self.usecase.name, "overrides": self.live.overrides},
            )

    # ---- model versions ---------------------------------------------------------------------

    async def _adopt_initial_model(self) -> None:
        """Start from the newest version (waiting for none: a fresh model predicts nothing
        until the trainer publishes, or learns here in learning mode)."""
        latest = await self.store.latest_version()
        if latest is not None:
            self._adopt(await self._load(latest))
        if self.model.algorithm is None and self.model.learn:
            self.model.algorithm = build_algorithm(self.usecase)

    async def _look_for_new_version(self) -> None:
        self._start_loading(await self.store.latest_version())

    async def _watch_versions(self) -> None:
        """Start loading each version the moment it is published (a blocking read of the
        versions' stream), so that the next batch adopts it. With only the look after every
        fetch, a batch was taken 56-408 ms after its version had been replaced (0-1 ms with
        this: tests/integration/test_scale_out.py). Those looks remain, so a watch that fails
        costs freshness, never a version."""
        watch = Watch(REDIS, "waiting for model versions")
        last_seen: bytes | str = "$"  # from now on: the look at start covered the past
        while not self.stop.is_set():
            try:
                published = await watch.attempt(
                    functools.partial(self.store.next_publication, last_seen, VERSION_WATCH_MS),
                    _UNREAD,
                )
            except Exception:
                log.exception(
                    "watching model versions stopped", extra={"usecase": self.usecase.name}
                )
                return
            if published is _UNREAD:  # Redis away: the outage is reported
                await asyncio.sleep(VERSION_WATCH_RETRY_S)
            elif published is not None:
                last_seen = published
                await self._redis_lookups.attempt(self._look_for_new_version)

    def _start_loading(self, latest: int | None) -> None:
        if latest is None or latest <= self._examined or latest in self.refused:
            return
        if self._loading is not None and not self._loading.done():
            self._published = max(self._published, latest)  # loaded once this one is swapped
            return
        self._loading = asyncio.create_task(self._load(latest), name="launcher-model-load")

    async def _load(self, version: int) -> ModelVersion | None:
        """Fetch and verify a version (unpickled in a thread); None when it should not replace
        the live model (learning mode keeps its own model except after a retrain)."""
        self._examined = max(self._examined, version)
        if self.model.learn and self.model.algorithm is not None:
            meta = await self.store.metadata(version)
            if meta.get("mode") != "retrain" and self.model.algorithm.incremental:
                if meta.get("mode") in (PROMOTION_MODE, ROLLBACK_MODE):
                    self._roles = meta  # applied between two batches (_swap_if_loaded)
                return None  # this launcher's own model is fresher
        started = time.perf_counter()
        try:
            loaded = await self.store.load(version)
        except ModelIntegrityError as error:
            # never unpickled; keep predicting with the live model and say so once
            self.refused.add(version)
            log.error(str(error), extra={"usecase": self.usecase.name, "version": version})
            return None
        self.counters.model_load_ms = round((time.perf_counter() - started) * 1000, 2)
        return loaded

    def _swap_if_loaded(self) -> None:
        """Between two batches: adopt the version loaded in the background, if any (or, when
        learning here, only its change of champion)."""
        self._follow_roles()
        task = self._loading
        if task is None or not task.done():
            return
        self._loading = None
        if task.cancelled() or task.exception() is not None:
            error = None if task.cancelled() else task.exception()
            self._examined = self.model.version or 0  # look again at the next batch
            log.warning(
                "model load failed", extra={"usecase": self.usecase.name, "error": repr(error)}
            )
            return
        self._adopt(task.result())
        self._start_loading(self._published)  # published while that one was loading

    def _adopt(self, loaded: ModelVersion | None) -> None:
        if loaded is None or loaded.algorithm is None:
            return
        if self.model.version is not None and loaded.version < self.model.version:
            return
        self.model.algorithm, self.model.version = loaded.algorithm, loaded.version
        self.model.positions = dict(loaded.meta.get("positions") or {})
        self.counters.model_swaps += 1
        # a streaming model publishes about once a second: only other versions are news
        level = logging.DEBUG if loaded.meta.get("mode") == "stream" else logging.INFO
        log.log(
            level,
            "model adopted",
            extra={
                "usecase": self.usecase.name,
                "version": loaded.version,
                "mode": loaded.meta.get("mode"),
            },
        )

    def _follow_roles(self) -> None:
        """A learning launcher keeps its own models, fresher than the trainer's, but takes a
        promotion's or rollback's roles: its outputs then carry the new champion's
        predictions."""
        meta, self._roles = self._roles, None
        models = self.model.algorithm
        if meta is None or not isinstance(models, Contenders):
            return
        champion, previous = meta.get("champion"), meta.get("previous_champion")
        if champion in models.models and champion != models.champion:
            models.champion = champion
            models.previous = previous if previous in models.models else None
            log.info(
                "champion changed",
                extra={"usecase": self.usecase.name, "champion": champion, "mode": meta["mode"]},
            )

    async def _cancel_loading(self) -> None:
        if self._loading is not None:
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._loading


#: What the versions' watch gets from a read that failed (None: one that found nothing new).
_UNREAD = object()


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _lag(consumer: AIOKafkaConsumer, previous: int) -> int:
    """Records behind the high watermark in the assigned partitions (0 when unknown; the
    previous figure while the broker does not answer)."""
    lag = 0
    try:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is not None:
                lag += max(0, highwater - await consumer.position(tp))
    except Exception as error:
        if not is_transient(error):
            raise
        return previous
    return lag


def _consumer_tuning(usecase: UseCase) -> dict[str, int]:
    streaming = usecase.streaming
    tuning = {
        "session_timeout_ms": streaming.session_timeout_ms,
        "fetch_min_bytes": streaming.fetch_min_bytes,
        "max_partition_fetch_bytes": streaming.max_partition_fetch_bytes,
        "max_poll_interval_ms": streaming.max_poll_interval_ms,
    }
    return {key: value for key, value in tuning.items() if value is not None}
