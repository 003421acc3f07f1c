"""The trainer of one use case: retrains from InfluxDB every training.interval ms or on request,
and publishes each model version in Redis (shared/modelstore.py).

Continuous mode (incremental algorithms, the original's `updateModel`): the trainer's model
learns only the points written since its cursor (one position per InfluxDB series, stored in
each version's metadata), so nothing written meanwhile is skipped and nothing is deleted.
Classical mode (batch algorithms) and requested retrains: a fresh model fits the most recent
training.maxdata records (-1: all). One training at a time; CPU work in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientError
from redis.exceptions import RedisError, ResponseError

from shared.algorithms.base import Algorithm
from shared.algorithms.registry import build_algorithm
from shared.clients.influx import AioinfluxStore, InfluxDBError
from shared.clients.redis import check_redis, connect_redis
from shared.config import UseCase
from shared.config.live import LiveConfig
from shared.errors import ServiceUnavailableError
from shared.modelstore import ModelIntegrityError, ModelStore, model_secret
from shared.recordstore import (
    StoredExample,
    examples_from_rows,
    measurement_for,
    progress_measurement,
)

log = logging.getLogger("trainer")

TRANSIENT_ATTEMPTS = 6
TRANSIENT_ERRORS = (
    OSError,
    TimeoutError,
    ClientError,
    RedisError,
    InfluxDBError,
    ServiceUnavailableError,
)
REQUESTS = "train:requests"
GROUP = "trainer"
CHUNK = 20000
#: How many records an incremental training learns between two looks at the stop signal.
STOP_CHECK_EVERY = 500


@dataclass
class TrainerCounters:
    trainings: int = 0
    records_learned: int = 0
    requests: int = 0


class TrainingInterrupted(Exception):
    """A stop arrived during a training: it is abandoned, nothing is published and the cursor
    stays where the last published version left it, so the next start learns those records."""


def series_key(series: tuple[str, str, str]) -> str:
    return "|".join(series)


class Trainer:
    def __init__(self, usecase: UseCase, stop: asyncio.Event):
        self.usecase = usecase
        self.stop = stop
        self.counters = TrainerCounters()
        self.measurement = measurement_for(usecase.name)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"trainer-{usecase.name}")
        self.algorithm: Algorithm | None = None
        self.cursor: dict[str, int] = {}
        self.total_learned = 0
        self.model_version: int | None = None
        self.live = LiveConfig(usecase)
        # the algorithm cannot change at run time: whether it learns incrementally is fixed
        self.incremental = build_algorithm(usecase).incremental
        self.training = False  # a training is under way (reading, learning or publishing)
        # `stop` as the executor thread can read it (an asyncio.Event is the loop's alone)
        self._stopping = threading.Event()

    async def run(self) -> TrainerCounters:
        usecase = self.usecase
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.executor.shutdown, wait=True)
            self.redis = connect_redis(usecase.connections)
            stack.push_async_callback(self.redis.aclose)
            await check_redis(self.redis, usecase.connections.redis_url)
            self.store = ModelStore(self.redis, usecase.name, model_secret(usecase.connections))
            self.influx = AioinfluxStore(usecase.connections)
            stack.push_async_callback(self.influx.close)
            await self.influx.check()
            await self.influx.ensure_database()
            await self._resume()
            await self._ensure_request_group()
            log.info("trainer started", extra={"usecase": usecase.name})
            relay = asyncio.create_task(self._relay_stop(), name="trainer-stop-relay")
            stack.callback(relay.cancel)
            await self._loop()
        log.info("trainer stopped", extra={"usecase": usecase.name, **self.counters.__dict__})
        return self.counters

    async def _resume(self) -> None:
        """Continue from the newest published version: its model and its cursor. A version that
        fails its HMAC check is never unpickled: the trainer starts afresh (from the first
        stored record) and its next version replaces it."""
        try:
            latest = await self.store.load()
        except ModelIntegrityError as error:
            log.error(f"{error}; starting from a fresh model", extra={"usecase": self.usecase.name})
            return
        if latest is not None and latest.algorithm is not None:
            self.algorithm = latest.algorithm
            self.model_version = latest.version
            self.cursor = dict(latest.meta.get("cursor") or {})
            self.total_learned = int(latest.meta.get("records_learned", 0))

    async def _relay_stop(self) -> None:
        await self.stop.wait()
        self._stopping.set()

    async def _ensure_request_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await self.redis.xgroup_create(self.store.key(REQUESTS), GROUP, id="0", mkstream=True)

    def _interval_s(self) -> float | None:
        interval = self.usecase.algs.training_interval
        return interval / 1000 if interval >= 0 else None

    async def _loop(self) -> None:
        interval_s = self._interval_s()
        next_due = time.monotonic() + (interval_s or 0)
        while not self.stop.is_set():
            if await self.live.refresh(self.redis):
                self.usecase = self.live.current
                interval_s = self._interval_s()
                next_due = time.monotonic() + (interval_s or 0)
                log.info(
                    "configuration changed",
                    extra={"usecase": self.usecase.name, "overrides": self.live.overrides},
                )
            streaming = self.usecase.streaming
            wait_s = 1.0 if interval_s is None else max(0.0, next_due - time.monotonic())
            reasons = await self._wait_for_requests(min(wait_s, 1.0))
            if not streaming.online_train:
                continue  # training disabled: requests are acknowledged and ignored
            if reasons:
                await self._train_or_retry(retrain=True, reason=", ".join(reasons))
            elif interval_s is not None and time.monotonic() >= next_due:
                await self._train_or_retry(retrain=False, reason="interval")
                next_due = time.monotonic() + interval_s

    async def _train_or_retry(self, retrain: bool, reason: str) -> None:
        """A service that does not answer skips this training (the cursor did not move, so
        nothing is lost) and is retried with backoff instead of ending the trainer."""
        for attempt in range(1, TRANSIENT_ATTEMPTS + 1):
            try:
                await self.train(retrain=retrain, reason=reason)
                return
            except TrainingInterrupted:
                log.info(
                    "training abandoned at stop: nothing published, the next start learns "
                    "these records",
                    extra={"usecase": self.usecase.name, "version": self.model_version},
                )
                return
            except TRANSIENT_ERRORS as error:
                log.warning(
                    "training failed, retrying",
                    extra={"usecase": self.usecase.name, "attempt": attempt, "error": repr(error)},
                )
                if self.stop.is_set() or attempt == TRANSIENT_ATTEMPTS:
                    raise
                await asyncio.sleep(min(2**attempt, 30))

    async def _wait_for_requests(self, wait_s: float) -> list[str]:
        key = self.store.key(REQUESTS)
        replies = await self.redis.xreadgroup(
            GROUP, "trainer", {key: ">"}, count=100, block=max(1, int(wait_s * 1000))
        )
        reasons, ids = [], []
        for _, entries in replies or []:
            for entry_id, fields in entries:
                ids.append(entry_id)
                reasons.append(fields.get(b"reason", b"request").decode())
        if ids:
            await self.redis.xack(key, GROUP, *ids)
            self.counters.requests += len(ids)
        return reasons

    async def train(self, retrain: bool, reason: str) -> int | None:
        """One training; returns the published version, or None when there was nothing new.
        Raises TrainingInterrupted when a stop arrives before it is published."""
        self.training = True
        try:
            return await self._train(retrain, reason)
        finally:
            self.training = False

    async def _train(self, retrain: bool, reason: str) -> int | None:
        started = time.perf_counter()
        if self.incremental and not retrain:
            examples = await self._new_examples()
            if not examples:
                return None
            if self.algorithm is None:
                self.algorithm = build_algorithm(self.usecase)
            await self._learn(self.algorithm, examples, batch=False)
            self.total_learned += len(examples)
            mode = "continuous"
        else:
            examples = await self._recent_examples()
            if not examples:
                return None
            fresh = build_algorithm(self.usecase)
            await self._learn(fresh, examples, batch=True)
            self.algorithm, self.total_learned = fresh, len(examples)
            mode = "retrain" if retrain else "classical"
        for example in examples:
            key = series_key(example.series)
            self.cursor[key] = max(self.cursor.get(key, -1), example.position)
        seconds = time.perf_counter() - started
        newest = max(example.event_time_ms for example in examples)
        published = await self.store.publish(
            self.algorithm,
            mode=mode,
            reason=reason,
            records_learned=self.total_learned,
            new_records=len(examples),
            training_seconds=round(seconds, 4),
            lag_ms=int(time.time() * 1000) - newest,
            cursor=self.cursor,
        )
        self.model_version = published.version
        self.counters.trainings += 1
        self.counters.records_learned += len(examples)
        log.info(
            "model published",
            extra={
                "usecase": self.usecase.name,
                "version": published.version,
                "mode": mode,
                "records": len(examples),
                "seconds": round(seconds, 3),
            },
        )
        return published.version

    async def _learn(
        self, algorithm: Algorithm, examples: list[StoredExample], batch: bool
    ) -> None:
        """Learn in the executor thread. A model that learns incrementally takes the examples
        in slices (one record each in continuous mode), looking at the stop signal in between;
        a classical refit is one learn_many call and runs to its end."""
        labelled = [example for example in examples if example.y is not None]
        xs = [example.x for example in labelled]
        ys = [example.y for example in labelled]

        def work() -> None:
            if batch and not algorithm.incremental:
                algorithm.learn_many(xs, ys)
                return
            for start in range(0, len(xs), STOP_CHECK_EVERY):
                if self._stopping.is_set():
                    raise TrainingInterrupted
                end = start + STOP_CHECK_EVERY
                if batch:
                    algorithm.learn_many(xs[start:end], ys[start:end])
                else:
                    for x, y in zip(xs[start:end], ys[start:end], strict=True):
                        algorithm.learn_one(x, y)

        await asyncio.get_running_loop().run_in_executor(self.executor, work)

    async def _series(self) -> list[tuple[tuple[str, str, str], int]]:
        """Each series with the offset up to which its points are completely written (the
        launcher's progress points; a series without one has nothing complete yet)."""
        progress = await self.influx.query(
            f'SELECT "offset" FROM "{progress_measurement(self.measurement)}" GROUP BY *'
        )
        complete = {
            (str(row["topic"]), str(row["partition"])): int(row["offset"]) for row in progress
        }
        rows = await self.influx.query(f'SHOW SERIES FROM "{self.measurement}"')
        found = []
        for row in rows:
            parts = dict(part.split("=", 1) for part in str(row["key"]).split(",")[1:])
            topic, partition = parts.get("topic", ""), parts.get("partition", "")
            if (topic, partition) in complete:
                series = (parts.get("source", ""), topic, partition)
                found.append((series, complete[(topic, partition)]))
        return found

    async def _new_examples(self) -> list[StoredExample]:
        """Every complete point after the cursor, in event-time order across series."""
        return await self._examples_after(self.cursor)

    async def _examples_after(self, cursor: dict[str, int]) -> list[StoredExample]:
        """Every complete point after `cursor` (per series; absent: from the first), read in
        pages of CHUNK points, looking at the stop signal between pages."""
        examples: list[StoredExample] = []
        for series, watermark in await self._series():
            position = cursor.get(series_key(series), -1)
            while position < watermark:
                if self._stopping.is_set():
                    raise TrainingInterrupted
                rows = await self.influx.query(
                    f'SELECT * FROM "{self.measurement}" WHERE {_series_filter(series)} '
                    f"AND time > {position} AND time <= {watermark} "
                    f"ORDER BY time ASC LIMIT {CHUNK}"
                )
                examples.extend(examples_from_rows(rows))
                if len(rows) < CHUNK:
                    break
                position = int(rows[-1]["time"])
        examples.sort(key=lambda example: (example.event_time_ms, example.position))
        return examples

    async def _recent_examples(self) -> list[StoredExample]:
        """The most recent training.maxdata complete points (-1: all), oldest first."""
        limit = self.usecase.algs.training_maxdata
        if limit <= 0:
            return await self._examples_after({})
        examples: list[StoredExample] = []
        for series, watermark in await self._series():
            if self._stopping.is_set():
                raise TrainingInterrupted
            rows = await self.influx.query(
                f'SELECT * FROM "{self.measurement}" WHERE {_series_filter(series)} '
                f"AND time <= {watermark} ORDER BY time DESC LIMIT {limit}"
            )
            examples.extend(examples_from_rows(rows))
        examples.sort(key=lambda example: (example.event_time_ms, example.position))
        return examples[-limit:]


def _series_filter(series: tuple[str, str, str]) -> str:
    source, topic, partition = (value.replace("'", "\\'") for value in series)
    return f"\"source\"='{source}' AND \"topic\"='{topic}' AND \"partition\"='{partition}'"


async def request_training(
    redis: Any, usecase: str, reason: str, by: str, **context: str | int
) -> str:
    """Ask the trainer of `usecase` for a retrain (the evaluator's alerts, the API); `context`
    is kept with the request (e.g. how many records the evaluator had scored)."""
    fields = {"reason": reason, "by": by, **{key: str(value) for key, value in context.items()}}
    entry = await redis.xadd(f"streamer:{usecase}:{REQUESTS}", fields)
    return entry.decode() if isinstance(entry, bytes) else str(entry)
