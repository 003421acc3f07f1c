"""The launcher of one use case: a consumer-group member that turns input records into stored
records and predictions, at least once.

Per micro-batch: take what has arrived (waiting at most readingTimeInterval ms), parse, predict
then learn (worker thread), then write InfluxDB points, outputs and dead letters concurrently,
and commit the offsets only once all three are acknowledged. A crash replays the uncommitted
batch; every sink is keyed by the input record's topic/partition/offset, so a replay overwrites.

The model lives here: an incremental model predicts each record, then learns it (River's
test-then-train), so predictions never wait for a hand-off. The trainer's versions are adopted
at start, after a retrain (alert, request, classical refit), and always for batch models.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError

from services.launcher.batch import BatchResult, DeadLetter, ModelSlot, process_batch
from shared.algorithms.registry import build_algorithm
from shared.clients.influx import AioinfluxStore
from shared.clients.kafka import (
    commit_processed,
    ensure_topics,
    make_consumer,
    make_producer,
    start_client,
)
from shared.clients.redis import check_redis, connect_redis
from shared.config import UseCase
from shared.config.live import LiveConfig
from shared.errors import ServiceUnavailableError
from shared.modelstore import ModelIntegrityError, ModelStore, model_secret
from shared.prepostprocessors import processor_for
from shared.records import record_class_for
from shared.recordstore import measurement_for

log = logging.getLogger("launcher")

MAX_BATCH_RECORDS = 2000
SINK_TIMEOUT_S = 60.0
SINK_ATTEMPTS = 5


@dataclass
class LauncherCounters:
    batches: int = 0
    records: int = 0
    outputs: int = 0
    dead_letters: int = 0
    model_swaps: int = 0
    lag: int = 0  # records in the assigned partitions not processed yet, after the last batch


class _WaitForBatch(ConsumerRebalanceListener):
    """Partitions are given up only between batches, so a batch's commit is never orphaned."""

    def __init__(self, lock: asyncio.Lock):
        self.lock = lock

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        async with self.lock:
            pass

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        log.info("partitions assigned", extra={"partitions": sorted(map(str, assigned))})


class Launcher:
    """One use case's launcher. `run()` until `stop` is set, then drain and commit."""

    def __init__(self, usecase: UseCase, stop: asyncio.Event):
        self.usecase = usecase
        self.stop = stop
        self.counters = LauncherCounters()
        self.record_class = record_class_for(usecase)
        self.processor = processor_for(usecase)
        self.measurement = measurement_for(usecase.name)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"launcher-{usecase.name}")
        self.batch_lock = asyncio.Lock()
        self.refused: set[int] = set()  # model versions that failed their HMAC check
        streaming = usecase.streaming
        self.model = ModelSlot(
            None, None, learn=streaming.online_train, predict=streaming.online_inference
        )

    @property
    def model_version(self) -> int | None:
        return self.model.version

    async def run(self) -> LauncherCounters:
        usecase, streaming = self.usecase, self.usecase.streaming
        bootstrap = usecase.bootstrap_servers
        dlq_topics = [f"{topic}.dlq" for topic in streaming.main_topics]
        await ensure_topics(
            bootstrap,
            [*streaming.main_topics, streaming.output_topic, *dlq_topics],
            partitions=usecase.topic_partitions,
        )
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.executor.shutdown, wait=True)
            redis = connect_redis(usecase.connections)
            stack.push_async_callback(redis.aclose)
            await check_redis(redis, usecase.connections.redis_url)
            self.redis = redis
            self.live = LiveConfig(usecase)
            self.store = ModelStore(redis, usecase.name, model_secret(usecase.connections))
            influx = AioinfluxStore(usecase.connections)
            stack.push_async_callback(influx.close)
            await influx.check()
            await influx.ensure_database()
            self.influx = influx
            await self._adopt_model(initial=True)

            self.producer = make_producer(bootstrap)
            await start_client(self.producer, bootstrap)
            stack.push_async_callback(self.producer.stop)
            consumer = make_consumer(
                bootstrap,
                usecase.group_id,
                max_poll_records=streaming.max_poll_records or MAX_BATCH_RECORDS,
                **_consumer_tuning(usecase),
            )
            consumer.subscribe(streaming.main_topics, listener=_WaitForBatch(self.batch_lock))
            await start_client(consumer, bootstrap)
            stack.push_async_callback(consumer.stop)
            log.info("launcher started", extra={"usecase": usecase.name, "group": usecase.group_id})
            await self._consume(consumer)
        log.info("launcher stopped", extra={"usecase": usecase.name, **self.counters.__dict__})
        return self.counters

    async def _consume(self, consumer) -> None:
        wait_ms = max(self.usecase.streaming.reading_time_interval, 1)
        stop_wait = asyncio.ensure_future(self.stop.wait())
        try:
            while not self.stop.is_set():
                fetch = asyncio.ensure_future(consumer.getmany(timeout_ms=wait_ms))
                await asyncio.wait({fetch, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():  # stopping: nothing fetched is lost, it was not committed
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await fetch
                    break
                batch = fetch.result()
                messages = [m for partition in batch.values() for m in partition]
                if messages:
                    async with self.batch_lock:
                        await self._handle(consumer, messages)
                await self._follow_config()
                await self._adopt_model()
        finally:
            stop_wait.cancel()

    async def _handle(self, consumer, messages) -> None:
        consumed_ms = int(time.time() * 1000)
        result: BatchResult = await asyncio.get_running_loop().run_in_executor(
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
        await self._write_sinks(result)
        await commit_processed(consumer, messages)
        self.counters.lag = await _lag(consumer)
        counters = self.counters
        counters.batches += 1
        counters.records += len(messages)
        counters.outputs += len(result.outputs)
        counters.dead_letters += len(result.dead)

    async def _write_sinks(self, result: BatchResult) -> None:
        """InfluxDB, outputs and dead letters, retried with backoff; raise if they stay down."""
        delay = 0.5
        for attempt in range(1, SINK_ATTEMPTS + 1):
            try:
                async with asyncio.timeout(SINK_TIMEOUT_S):
                    await asyncio.gather(
                        self.influx.write_lines(result.influx_lines),
                        self._send_all(result),
                    )
                    await self.influx.write_lines(result.progress_lines)
                return
            except (TimeoutError, KafkaError, OSError, ServiceUnavailableError) as error:
                if attempt == SINK_ATTEMPTS:
                    raise ServiceUnavailableError(
                        "sinks",
                        self.usecase.name,
                        f"batch not written after {attempt} tries: {error}",
                    ) from error
                log.warning(
                    "sink write failed, retrying",
                    extra={"usecase": self.usecase.name, "attempt": attempt, "error": str(error)},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)

    async def _send_all(self, result: BatchResult) -> None:
        topic = self.usecase.streaming.output_topic
        futures = [await self.producer.send(topic, value, key=key) for key, value in result.outputs]
        futures += [await self._send_dead_letter(dead) for dead in result.dead]
        await asyncio.gather(*futures)

    async def _send_dead_letter(self, dead: DeadLetter):
        message = dead.message
        headers = [
            ("error", dead.reason.encode()),
            ("source-topic", message.topic.encode()),
            ("source-partition", str(message.partition).encode()),
            ("source-offset", str(message.offset).encode()),
            ("usecase", self.usecase.name.encode()),
            *[(key, value) for key, value in message.headers or () if key == "record-id"],
        ]
        return await self.producer.send(
            f"{message.topic}.dlq", message.value or b"", key=message.key, headers=headers
        )

    async def _follow_config(self) -> None:
        """Run-time overrides (online.train / online.inference) apply from the next batch."""
        if await self.live.refresh(self.redis):
            self.usecase = self.live.current
            self.model.learn = self.usecase.streaming.online_train
            self.model.predict = self.usecase.streaming.online_inference
            log.info(
                "configuration changed",
                extra={"usecase": self.usecase.name, "overrides": self.live.overrides},
            )

    async def _adopt_model(self, initial: bool = False) -> None:
        """Swap to the trainer's newest version when it should replace the live model."""
        latest = await self.store.latest_version()
        current = self.model.version
        if latest is None or latest == current:
            if initial and self.model.algorithm is None:
                self.model.algorithm = build_algorithm(self.usecase)
            return
        meta = await self.store.metadata(latest)
        live_is_fresher = (
            not initial
            and self.model.algorithm is not None
            and self.model.learn
            and self.model.algorithm.incremental
            and meta.get("mode") != "retrain"
        )
        if live_is_fresher:
            return
        if latest in self.refused:
            return
        try:
            loaded = await self.store.load(latest)
        except ModelIntegrityError as error:
            # never unpickled; keep predicting with the live model and say so once
            self.refused.add(latest)
            log.error(str(error), extra={"usecase": self.usecase.name, "version": latest})
            if self.model.algorithm is None:
                self.model.algorithm = build_algorithm(self.usecase)
            return
        if loaded is None:
            return
        self.model.algorithm, self.model.version = loaded.algorithm, loaded.version
        self.counters.model_swaps += 1
        log.info(
            "model adopted",
            extra={
                "usecase": self.usecase.name,
                "version": loaded.version,
                "mode": meta.get("mode"),
            },
        )


async def _lag(consumer) -> int:
    """Records behind the high watermark in the assigned partitions (0 when unknown)."""
    lag = 0
    for tp in consumer.assignment():
        highwater = consumer.highwater(tp)
        if highwater is not None:
            lag += max(0, highwater - await consumer.position(tp))
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
