"""The trainer of one use case: the single learner of its model, publishing versions that the
launchers adopt.

Streaming (incremental algorithms, the original's `updateModel`): the trainer reads the input
topics itself (services/trainer/stream.py), learns every record once, in each partition's
order, never before a launcher has predicted it, and publishes a version at least every
`model.publish.interval` ms (and every `model.publish.records` records, when set). A version
records how far it learnt each partition (`positions`), so launchers report each prediction's
staleness, and every `model.checkpoint.interval` ms the full model is stored too: a restarted
trainer resumes from that checkpoint's positions and learns no record twice.

Classical mode (batch algorithms): a fresh model fits the most recent `training.maxdata` records
stored in InfluxDB (-1: all) every `training.interval` ms. Retrain requests (alerts, the API)
are served as `retrain.strategy` says (services/trainer/retrain.py, docs/monitoring.md): by
default a fresh model learns from where the alert's detector located the change (a streaming
model from the input topics, sought back there; a batch model refits on the stored records from
there on); `window` refits on the most recent `training.maxdata` stored records, after which a
streaming model continues from where that window ends.

One trainer per use case is active: it holds a lease in Redis, renewed while it runs; others
wait as standbys, and a version is only published while its trainer holds the lease.

Outages (shared/retry.py): a step that fails because a backing service is away is retried
until it answers (nothing learnt is lost: positions only move with what was learnt); a lease
that expired during a Redis outage is taken again when no other trainer took it meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, overload

from aiohttp import ClientError
from pydantic import ValidationError
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError, ResponseError

from services.trainer.learner import Learner, TrainingInterrupted
from services.trainer.retrain import located_change, since_change_starts
from services.trainer.stream import FETCH_RECORDS, InputStream
from shared.algorithms.contenders import (
    PROMOTION_MODE,
    ROLLBACK_MODE,
    Contenders,
    RoleError,
    base_name,
    reconcile,
    with_retrain_challenger,
)
from shared.algorithms.registry import build_algorithm
from shared.clients.influx import AioinfluxStore, InfluxDBError
from shared.clients.kafka import ensure_topics
from shared.clients.redis import check_redis, connect_redis
from shared.config import RetrainStrategy, UseCase
from shared.config.live import LiveConfig
from shared.errors import ServiceUnavailableError, StreamerError
from shared.heartbeat import this_instance
from shared.labels import LabelJoin
from shared.modelstore import LeaseLostError, ModelIntegrityError, ModelStore, model_secret
from shared.prepostprocessors import processor_for
from shared.records import record_class_for
from shared.retry import INFLUXDB, KAFKA, REDIS, Watch, retrying
from shared.wire.influx import RecordsMeasurement, StoredRecord
from shared.wire.kafka import partition_key
from shared.wire.keys import UseCaseKeys
from shared.wire.store import PROMOTE, REQUESTS_GROUP, RETRAIN, ModelMeta, RetrainRequest

log = logging.getLogger("trainer")

#: What a graceful stop does not wait for (its last publication is best effort).
TRANSIENT_ERRORS = (
    OSError,
    TimeoutError,
    ClientError,
    RedisError,
    InfluxDBError,
    ServiceUnavailableError,
)
#: The trainer lease: seconds it lives without renewal, and how often it is renewed.
LEASE_S = 6.0
RENEW_S = 2.0
#: Longest wait for input records in one step (requests and configuration are looked at
#: between two steps).
STEP_WAIT_MS = 200
#: Least time between two versions published because the model caught up with the launchers.
MIN_PUBLISH_GAP_S = 0.05


@dataclass
class TrainerCounters:
    trainings: int = 0  # versions published
    records_learned: int = 0  # by this process
    requests: int = 0
    lag: int = 0  # records in the input topics the newest version had not learnt
    standby: int = 1  # 1 while another trainer holds the lease
    # labelTopic: labels read, records waiting for theirs, records dropped without one (after
    # label.timeout), labels dropped without their record
    labels: int = 0
    labels_waiting: int = 0
    labels_missing: int = 0
    labels_orphaned: int = 0


class Trainer:
    def __init__(self, usecase: UseCase, stop: asyncio.Event):
        self.usecase = usecase
        self.stop = stop
        self.counters = TrainerCounters()
        self.keys = UseCaseKeys(usecase.name)
        self.measurement = RecordsMeasurement(usecase.name)
        self.live = LiveConfig(usecase)
        # the algorithm cannot change at run time: whether it learns incrementally is fixed
        self.incremental = build_algorithm(usecase).incremental
        self.model_version: int | None = None
        self.total_learned = 0  # by the model's lineage (from its checkpoint on)
        self.training = False  # a refit is under way (reading, learning or publishing)
        # `stop` as the learner thread can read it (an asyncio.Event is the loop's alone)
        self._stopping = threading.Event()
        self._since_publish = 0  # records learnt since the last version
        self._published_at = time.monotonic()  # the first version is due one interval in
        self._checkpoint_at = 0.0
        self._newest_event_ms: int | None = None
        self._demand: dict[str, int] = {}  # waiting launchers: position each one needs
        self._published_positions: dict[str, int] = {}
        self._catch_up_to: dict[str, int] = {}  # positions of the newest version at start
        # a fresh streaming model (since-change, reset): its first version, a retrain, is due
        # once it learnt as far as the model it replaces; (mode, reason) of that version
        self._retrain_due: tuple[str, str] | None = None
        self._served_since: dict[str, int] | None = None  # the change retrained from last
        self._challenged_since: dict[str, int] | None = None  # the change a challenger took
        self._label_positions: dict[str, int] = {}  # labelTopic: where the checkpoint read it
        self._early_labels: dict[str, list[str]] = {}  # and the labels still waiting then

    # ---- lifecycle -------------------------------------------------------------------------

    async def run(self) -> TrainerCounters:
        usecase = self.usecase
        if usecase.streaming.label_topic is not None and not self.incremental:
            raise StreamerError(
                f"{usecase.name}: labelTopic={usecase.streaming.label_topic} needs an algorithm "
                f"that learns record by record: {usecase.algs.algorithm} refits on the stored "
                "records, which come without their labels (delayed labels, docs/pipeline.md)"
            )
        await ensure_topics(
            usecase.bootstrap_servers,
            usecase.streaming.main_topics,
            partitions=usecase.topic_partitions,
        )
        async with contextlib.AsyncExitStack() as stack:
            self.redis = connect_redis(usecase.connections)
            stack.push_async_callback(self.redis.aclose)
            redis_url = usecase.connections.redis_url
            await retrying(REDIS, "connecting", lambda: check_redis(self.redis, redis_url))
            secret = model_secret(usecase.connections)
            self.store = ModelStore(self.redis, usecase.name, secret, keep=usecase.algs.model_keep)
            self.influx = AioinfluxStore(usecase.connections)
            stack.push_async_callback(self.influx.close)
            await retrying(INFLUXDB, "connecting", self.influx.check)
            await retrying(INFLUXDB, "creating the database", self.influx.ensure_database)
            relay = asyncio.create_task(self._relay_stop(), name="trainer-stop-relay")
            stack.callback(relay.cancel)
            if not await self._acquire_lease(stack):
                return self.counters  # stopped while standing by
            self.learner = Learner(
                usecase.name,
                secret,
                record_class_for(usecase),
                processor_for(usecase),
                self._stopping,
            )
            stack.callback(self.learner.close)
            positions = await retrying(REDIS, "loading the checkpoint", self._resume)
            await retrying(REDIS, "creating the request group", self._ensure_request_group)
            self.stream: InputStream | None = None
            self.labels: InputStream | None = None
            if self.incremental:
                self.stream = InputStream(
                    usecase.bootstrap_servers, usecase.streaming.main_topics, positions
                )
                stack.push_async_callback(self.stream.stop)
                await retrying(KAFKA, "reading the input topics", self.stream.start)
                if usecase.streaming.label_topic is not None:
                    await self._read_labels(stack, usecase.streaming.label_topic)
            log.info("trainer started", extra={"usecase": usecase.name})
            await self._loop()
            await self._publish_at_stop()
        log.info("trainer stopped", extra={"usecase": usecase.name, **self.counters.__dict__})
        return self.counters

    async def _read_labels(self, stack: contextlib.AsyncExitStack, topic: str) -> None:
        """labelTopic: records read without their label wait for it in the learner (at most
        label.timeout), learnt when it arrives; labels are read from the checkpoint's
        `label_positions` on."""
        usecase = self.usecase
        await ensure_topics(usecase.bootstrap_servers, [topic], partitions=usecase.topic_partitions)
        self.learner.waiting = LabelJoin(usecase.streaming.label_timeout)
        self.learner.waiting.restore_labels(self._early_labels, time.monotonic())
        self.labels = InputStream(usecase.bootstrap_servers, [topic], self._label_positions)
        stack.push_async_callback(self.labels.stop)
        await retrying(KAFKA, "reading the label topic", self.labels.start)

    async def _relay_stop(self) -> None:
        await self.stop.wait()
        self._stopping.set()

    async def _acquire_lease(self, stack: contextlib.AsyncExitStack) -> bool:
        """Become the use case's active trainer, waiting as a standby while another holds the
        lease; False when stopped first."""
        self.lease = Lock(self.redis, self.keys.trainer_lease, timeout=LEASE_S, thread_local=False)
        announced = False
        while not self.stop.is_set():
            if await retrying(REDIS, "taking the trainer lease", self._try_lease):
                break
            if not announced:
                log.info(
                    "another trainer holds the lease: standing by",
                    extra={"usecase": self.usecase.name},
                )
                announced = True
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), RENEW_S)
        else:
            return False
        self.counters.standby = 0
        renewer = asyncio.create_task(self._renew_lease(), name="trainer-lease")
        stack.callback(renewer.cancel)
        stack.push_async_callback(self._release_lease)
        return True

    async def _try_lease(self) -> bool:
        return bool(await self.lease.acquire(blocking=False, token=this_instance()))

    async def _renew_lease(self) -> None:
        """Keep the lease. Lost (a pause or a Redis outage longer than LEASE_S), it is taken
        again when free and no other trainer published meanwhile; else this trainer stops:
        another one took over, and its next publication would be refused anyway."""
        renewing = Watch(REDIS, "renewing the trainer lease")
        while True:
            await asyncio.sleep(RENEW_S)
            try:
                await renewing.attempt(self.lease.reacquire)
            except LockError:
                if await renewing.attempt(self._retake_lease, default=False):
                    continue
                log.error("trainer lease lost: stopping", extra={"usecase": self.usecase.name})
                self.stop.set()
                return

    async def _retake_lease(self) -> bool:
        """The lease expired: take it again if no other trainer took it and published."""
        # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
        holder: bytes | None = await self.redis.get(self.keys.trainer_lease)  # type: ignore[assignment]
        if holder is not None and holder.decode() == this_instance():
            return True  # taken again already (by the renewer, or by a step)
        if not await self._try_lease():
            return False
        if (await self.store.latest_version() or 0) > (self.model_version or 0):
            await self._release_lease()
            return False
        log.warning(
            "trainer lease expired (Redis away?) and taken again",
            extra={"usecase": self.usecase.name},
        )
        return True

    async def _release_lease(self) -> None:
        with contextlib.suppress(LockError, RedisError, OSError):
            await self.lease.release()

    async def _resume(self) -> dict[str, int]:
        """Continue from the newest checkpoint: its model and its positions. A checkpoint that
        fails its HMAC check is never unpickled: the trainer starts afresh."""
        try:
            checkpoint = await self.store.load_checkpoint()
        except ModelIntegrityError as error:
            log.error(f"{error}; starting from a fresh model", extra={"usecase": self.usecase.name})
            checkpoint = None
        latest = await self.store.latest_version()
        if latest is not None:
            # versions after the checkpoint (a kill): publish again only once past them
            self._catch_up_to = (await self.store.metadata(latest)).get("positions") or {}
        if checkpoint is None or checkpoint.algorithm is None:
            self.learner.model = build_algorithm(self.usecase) if self.incremental else None
            return {}
        self.learner.model, changes = reconcile(checkpoint.algorithm, build_algorithm(self.usecase))
        for change in changes:
            log.warning(f"resuming: {change}", extra={"usecase": self.usecase.name})
        self.model_version = checkpoint.version
        self.total_learned = int(checkpoint.meta.get("records_learned") or 0)
        self._checkpoint_at = self._published_at = time.monotonic()
        self._published_positions = dict(checkpoint.meta.get("positions") or {})
        self._label_positions = dict(checkpoint.meta.get("label_positions") or {})
        # labels read before their record: past label_positions, so kept in the checkpoint
        self._early_labels = dict(checkpoint.meta.get("early_labels") or {})
        # labelTopic: records still waiting for their label at the checkpoint are read again
        return dict(checkpoint.meta.get("resume_positions") or self._published_positions)

    async def _ensure_request_group(self) -> None:
        with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
            await self.redis.xgroup_create(
                self.keys.train_requests, REQUESTS_GROUP, id="0", mkstream=True
            )

    # ---- the loop ----------------------------------------------------------------------------

    async def _loop(self) -> None:
        next_refit = time.monotonic() + self._refit_interval_s(default=0.0)
        configuration = Watch(REDIS, "reading the configuration")
        while not self.stop.is_set():
            if await configuration.attempt(lambda: self.live.refresh(self.redis), default=False):
                self.usecase = self.live.current
                next_refit = time.monotonic() + self._refit_interval_s(default=0.0)
                log.info(
                    "configuration changed",
                    extra={"usecase": self.usecase.name, "overrides": self.live.overrides},
                )
            bound, requests = await retrying(
                REDIS, "reading the launchers' progress", self._progress_and_requests
            )
            if not self.usecase.streaming.online_train:
                await self._idle()
                continue  # training disabled: requests are acknowledged and ignored
            retrains = [request for request in requests if request.action == RETRAIN]
            for change in (request for request in requests if request.action != RETRAIN):
                await self._with_retries(self._change_roles, change)
            if retrains:
                await self._with_retries(self._retrain, retrains, bound)
            elif self.stream is not None:
                await self._with_retries(self._learn_step, bound)
            elif time.monotonic() >= next_refit and self._refit_interval_s() is not None:
                await self._with_retries(
                    self._refit, retrain=False, reason="interval", since=self._served_since
                )
                next_refit = time.monotonic() + (self._refit_interval_s() or 0.0)
            else:
                await self._idle()

    @overload
    def _refit_interval_s(self, default: float) -> float: ...
    @overload
    def _refit_interval_s(self, default: None = None) -> float | None: ...
    def _refit_interval_s(self, default: float | None = None) -> float | None:
        interval = self.usecase.algs.training_interval
        return interval / 1000 if interval >= 0 else default

    async def _idle(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), STEP_WAIT_MS / 1000)

    async def _progress_and_requests(self) -> tuple[dict[str, int], list[RetrainRequest]]:
        """The launchers' progress (the learning bound) and new retrain requests, in one
        round trip."""
        keys = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(keys.launcher_progress)
            pipe.hgetall(keys.launcher_demand)
            pipe.xreadgroup(REQUESTS_GROUP, "trainer", {keys.train_requests: ">"}, count=100)
            progress, demand, replies = await pipe.execute()
        bound = {key.decode(): int(value) for key, value in progress.items()}
        self._demand = {key.decode(): int(value) for key, value in demand.items()}
        requests, ids = [], []
        for _, entries in replies or []:
            for entry_id, fields in entries:
                ids.append(entry_id)
                try:
                    requests.append(RetrainRequest.decode(fields))
                except ValidationError as error:
                    log.error(
                        f"malformed retrain request {entry_id!r} ignored: {error}",
                        extra={"usecase": self.usecase.name},
                    )
        if ids:
            await self.redis.xack(keys.train_requests, REQUESTS_GROUP, *ids)
            self.counters.requests += len(ids)
        return bound, requests

    async def _with_retries(
        self, step: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any
    ) -> None:
        """A step whose backing service (Kafka, Redis or InfluxDB) does not answer is retried
        (shared/retry.py) until it answers or the trainer stops: nothing learnt is lost,
        positions only move with what was learnt."""
        while True:
            try:
                await retrying(
                    None,
                    f"training ({step.__name__})",
                    lambda: step(*args, **kwargs),
                    attempt_timeout=None,
                )
                return
            except TrainingInterrupted:
                log.info(
                    "training abandoned at stop: nothing published, the next start resumes "
                    "from the last checkpoint",
                    extra={"usecase": self.usecase.name, "version": self.model_version},
                )
                return
            except LeaseLostError:  # expired during a Redis outage, or taken over
                if await retrying(REDIS, "taking the trainer lease again", self._retake_lease):
                    continue
                log.error(
                    "trainer lease taken by another trainer: stopping",
                    extra={"usecase": self.usecase.name},
                )
                self.stop.set()
                return

    # ---- streaming -------------------------------------------------------------------------

    async def _learn_step(self, bound: dict[str, int]) -> None:
        """Learn what the launchers have predicted since the last step; publish when due."""
        stream = self.stream
        assert stream is not None
        algs = self.usecase.algs
        room = algs.publish_records - self._since_publish if algs.publish_records > 0 else None
        messages = await stream.next_batch(bound, STEP_WAIT_MS, max(1, room or FETCH_RECORDS))
        if messages:
            learnt = await self.learner.learn_messages(messages)
            self._since_publish += len(messages)
            self.total_learned += learnt.records
            self.counters.records_learned += learnt.records
            if learnt.newest_event_ms is not None:
                self._newest_event_ms = learnt.newest_event_ms
        if self.labels is not None:
            await self._learn_labels(self.labels)
        if self._publication_due(stream.caught_up(bound)):
            mode, reason = self._retrain_due or ("stream", "stream")
            await self._publish(mode=mode, reason=reason, checkpoint=self._retrain_due is not None)
            self._retrain_due = None

    async def _learn_labels(self, labels: InputStream) -> None:
        """The labels arrived since the last step: learn the records that waited for them."""
        messages = await labels.next_batch(None, 0)
        if messages:
            learnt = await self.learner.learn_labels(messages)
            self._since_publish += learnt.records
            self.total_learned += learnt.records
            self.counters.records_learned += learnt.records
            self.counters.labels += len(messages)
        waiting = self.learner.waiting
        if waiting is not None:
            self.counters.labels_waiting = len(waiting.items)
            self.counters.labels_missing = waiting.expired.items
            self.counters.labels_orphaned = waiting.expired.labels

    def _publication_due(self, caught_up: bool) -> bool:
        """Publish on a waiting launcher's demand; when the model learnt everything the
        launchers predicted (the stream runs slower than the trainer: each version is then
        as fresh as a launcher batch), at most every MIN_PUBLISH_GAP_S; else every
        model.publish.interval ms or model.publish.records records."""
        if self._since_publish == 0:
            return False
        if self._meets_demand():
            return True
        since = time.monotonic() - self._published_at
        if self._catch_up_to:
            assert self.stream is not None
            positions = self.stream.positions
            if any(positions.get(key, 0) < end for key, end in self._catch_up_to.items()):
                return False  # the newest version learnt more: catch up first
            self._catch_up_to = {}
        if caught_up and since >= MIN_PUBLISH_GAP_S:
            return True
        algs = self.usecase.algs
        if 0 < algs.publish_records <= self._since_publish:
            return True
        return since * 1000 >= algs.publish_interval

    def _meets_demand(self) -> bool:
        """A launcher waits for a version that learnt up to some position
        (launcher.max.staleness), the last version did not, and the model now does."""
        assert self.stream is not None
        positions, published = self.stream.positions, self._published_positions
        return any(
            published.get(key, 0) < needed <= positions.get(key, 0)
            for key, needed in self._demand.items()
        )

    async def _publish_at_stop(self) -> None:
        """A graceful stop publishes what was learnt since the last version, as a checkpoint,
        so that the next start does not learn it again."""
        if self._since_publish and self.learner.model is not None:
            mode, reason = self._retrain_due or ("stream", "stop")
            with contextlib.suppress(*TRANSIENT_ERRORS, LeaseLostError):
                await self._publish(mode=mode, reason=reason, checkpoint=True)

    async def _publish(self, mode: str, reason: str, checkpoint: bool = False) -> int:
        now = time.monotonic()
        checkpoint = checkpoint or (
            (now - self._checkpoint_at) * 1000 >= self.usecase.algs.checkpoint_interval
        )
        version = await self.store.next_version()
        sealed = await self.learner.seal(version, checkpoint)
        positions = dict(self.stream.positions) if self.stream is not None else {}
        delayed: dict[str, Any] = {}
        if self.labels is not None:
            delayed["label_positions"] = dict(self.labels.positions)
            if sealed.checkpoint is not None:
                delayed["resume_positions"] = await self.learner.resume_positions(positions)
                delayed["early_labels"] = await self.learner.early_labels()
        lag = self.stream.lag() if self.stream is not None else None
        newest = self._newest_event_ms
        meta = ModelMeta.model_validate(
            {
                **sealed.description,
                "version": version,
                "created_at": time.time(),
                "mode": mode,
                "reason": reason,
                "records_learned": self.total_learned,
                "new_records": self._since_publish,
                "training_seconds": round(sealed.seconds, 4),
                "positions": positions,
                **delayed,
                "lag_records": lag,
                "lag_ms": None if newest is None else int(time.time() * 1000) - newest,
                "snapshot": sealed.snapshot,
                "checkpoint": sealed.checkpoint is not None,
                "size_bytes": len(sealed.envelope),
                "seal_seconds": round(sealed.seconds, 4),
            }
        )
        await self.store.put(
            version, sealed.envelope, meta, checkpoint=sealed.checkpoint, lease=self.lease
        )
        self.model_version = version
        self._published_positions = positions
        self._since_publish = 0
        self._published_at = now
        if sealed.checkpoint is not None:
            self._checkpoint_at = now
        self.counters.trainings += 1
        self.counters.lag = lag or 0
        log.debug("model published", extra={"usecase": self.usecase.name, "version": version})
        return version

    # ---- champion and challengers ------------------------------------------------------------

    async def _change_roles(self, request: RetrainRequest) -> None:
        """A promotion or a rollback (the evaluator's rule, the API) is a new version with the
        new roles, checkpointed so that a restart keeps them. One the roles do not allow
        (an unknown model, nothing to roll back to) is logged and dropped."""
        try:
            champion, replaced = await self.learner.change_roles(request.action, request.model)
        except RoleError as error:
            log.warning(
                f"{request.action} refused: {error}",
                extra={"usecase": self.usecase.name, "by": request.by, "model": request.model},
            )
            return
        mode = PROMOTION_MODE if request.action == PROMOTE else ROLLBACK_MODE
        reason = f"{champion} replaces {replaced}: {request.reason}" + (
            f" (by {request.by})" if request.by else ""
        )
        version = await self._publish(mode=mode, reason=reason, checkpoint=True)
        log.info(
            "champion changed",
            extra={"usecase": self.usecase.name, "version": version, "reason": reason},
        )

    # ---- retrains ----------------------------------------------------------------------------

    async def _retrain(self, requests: list[RetrainRequest], bound: dict[str, int]) -> None:
        """Serve the retrain requests read at once, as retrain.strategy says."""
        algs = self.usecase.algs
        strategy = algs.retrain_strategy
        since = located_change(requests)
        if strategy is RetrainStrategy.SINCE_CHANGE and since is None:
            strategy = RetrainStrategy.WINDOW  # no change located (an API request)
        reason = f"{', '.join(request.reason for request in requests)} ({strategy.value})"
        if strategy is RetrainStrategy.CHALLENGER:
            await self._add_retrain_challenger(since, reason)
            return
        if strategy is RetrainStrategy.SINCE_CHANGE and since == self._served_since:
            log.info(
                "retrain request for the change already retrained from: the model learns "
                "from there already",
                extra={"usecase": self.usecase.name, "since": since},
            )
            return
        if strategy is RetrainStrategy.WINDOW:
            self._served_since = None
            await self._refit(retrain=True, reason=reason)
        elif self.stream is None:  # a batch model: a refit on the stored records from there
            self._served_since = since if strategy is RetrainStrategy.SINCE_CHANGE else bound
            await self._refit(retrain=True, reason=reason, since=self._served_since)
        else:
            positions = self.stream.positions
            if strategy is RetrainStrategy.SINCE_CHANGE:
                assert since is not None
                ends = {**positions, **bound}
                starts = since_change_starts(since, ends, algs.retrain_min_records)
            else:
                starts = dict(positions)
            self._served_since = since
            self._learn_afresh_from(starts, reason)

    async def _add_retrain_challenger(self, since: dict[str, int] | None, reason: str) -> None:
        """retrain.strategy=challenger: a fresh model of the champion's algorithm joins as a
        challenger, caught up on the stored records from the located change to what the
        champion learnt (none for a request that locates no change); it then learns every
        record with the others, and the evaluator's promotion rule makes it the champion once
        it beats the champion on the window view. Until then the launchers keep the
        champion's predictions: no alert can make things worse than not retraining."""
        if since is not None and since == self._challenged_since:
            log.info(
                "retrain request for the change a challenger learns from already",
                extra={"usecase": self.usecase.name, "since": since},
            )
            return
        current = self.learner.model
        if current is None:  # a batch model before its first refit: no champion to challenge
            log.info(
                "retrain request before the first model: no champion to challenge yet",
                extra={"usecase": self.usecase.name, "since": since},
            )
            return
        self._challenged_since = since
        built = build_algorithm(self.usecase)
        if isinstance(built, Contenders):
            champion = current.champion if isinstance(current, Contenders) else built.champion
            fresh = built.models.get(base_name(champion), built.leader)
        else:
            fresh = built
        window: list[StoredRecord] = []
        if since is not None:
            stored, _ = await self._stored_records(since)
            learnt = self.stream.positions if self.stream is not None else None
            window = [record for record in stored if _learnt_by(record, learnt)]
        await self.learner.fit(fresh, window)  # the fresh model alone, off the event loop
        self.learner.model, name = with_retrain_challenger(current, fresh)
        version = await self._publish(mode="retrain", reason=f"{reason}: {name}", checkpoint=True)
        log.info(
            "retrain challenger added",
            extra={
                "usecase": self.usecase.name,
                "version": version,
                "challenger": name,
                "records": len(window),
                "since": since,
            },
        )

    def _learn_afresh_from(self, starts: dict[str, int], reason: str) -> None:
        """A fresh streaming model that learns the input from `starts` on (the stream is sought
        there) and goes on as records arrive. Its first version is published, as a retrain and a
        checkpoint, once it learnt as far as the model it replaces: the launchers never adopt
        a version that learnt less."""
        stream = self.stream
        assert stream is not None
        replaced = dict(stream.positions)
        stream.seek(starts)
        fresh = build_algorithm(self.usecase)
        if isinstance(fresh, Contenders):  # fresh models, the champion they had
            fresh.with_roles_of(self.learner.model)
        self.learner.model = fresh
        self.total_learned = 0
        self._since_publish = 0
        self._catch_up_to = replaced
        self._retrain_due = ("retrain", reason)
        log.info(
            "retrain: a fresh model learns from the located change on",
            extra={
                "usecase": self.usecase.name,
                "reason": reason,
                "from": starts,
                "replaced_at": replaced,
            },
        )

    # ---- refits from InfluxDB ----------------------------------------------------------------

    async def _refit(self, retrain: bool, reason: str, since: dict[str, int] | None = None) -> None:
        """A fresh model on the most recent training.maxdata stored records (with `since`:
        those from there on, at least retrain.min-records); a streaming model then continues
        from where they end."""
        self.training = True
        started = time.perf_counter()
        try:
            window, ends = await self._stored_records(since)
            if not window:
                return
            fresh = build_algorithm(self.usecase)
            if isinstance(fresh, Contenders):  # fresh models, the champion they had
                fresh.with_roles_of(self.learner.model)
            learnt = await self.learner.fit(fresh, window)
            if self.stream is not None:
                self.stream.seek(ends)
                self._retrain_due = None  # this version replaces a fresh model catching up
            self.total_learned = learnt
            self._since_publish = len(window)
            self._newest_event_ms = max(record.event_time_ms for record in window)
            mode = "retrain" if retrain else "classical"
            version = await self._publish(mode=mode, reason=reason, checkpoint=True)
            log.info(
                "model refitted",
                extra={
                    "usecase": self.usecase.name,
                    "version": version,
                    "mode": mode,
                    "records": learnt,
                    "seconds": round(time.perf_counter() - started, 3),
                },
            )
        finally:
            self.training = False

    async def _stored_records(
        self, since: dict[str, int] | None
    ) -> tuple[list[StoredRecord], dict[str, int]]:
        """What a refit learns from InfluxDB, and where it ends per input partition."""
        algs = self.usecase.algs
        window, ends = await self.measurement.recent(
            self.influx, algs.training_maxdata, self._check_stop, since=since
        )
        if since is not None and len(window) < algs.retrain_min_records:
            window, ends = await self.measurement.recent(
                self.influx, algs.retrain_min_records, self._check_stop
            )
        return window, ends

    def _check_stop(self) -> None:
        if self._stopping.is_set():
            raise TrainingInterrupted


def _learnt_by(record: StoredRecord, positions: dict[str, int] | None) -> bool:
    """Whether the streaming champion learnt a stored record already (its offset is below the
    stream's position in its partition); every stored record for a batch model."""
    if positions is None:
        return True
    series = record.series
    return record.offset < positions.get(partition_key(series.topic, series.partition), 0)
