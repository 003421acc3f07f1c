"""The evaluator of one use case: scores the predictions of outputTopic, watches the metrics
with the use case's detector, asks the trainer for a retrain while an alert is active (at most
once per alert.cooldown), and writes metrics, detections, alerts, model versions and a sample
of predictions to Elasticsearch (visualization=true), metrics to InfluxDB and the original's
log files. A message of outputTopic that is no valid output goes to `<outputTopic>.dlq` with
the reason, and is counted.

Outages (shared/retry.py): each write of an evaluation (write-ahead, dead letters, InfluxDB,
checkpoint) is retried until it succeeds, in order, so a scored evaluation is never scored
twice nor left half-written; look-ups that the next turn repeats are skipped while Redis is
away; Elasticsearch documents wait in the sink's buffer.

This module only orchestrates one evaluation: read (reading.py), write ahead, score
(scoring.py, in a worker thread), dead letters, alerts and retrain requests, InfluxDB,
Elasticsearch documents (documents.py), checkpoint (checkpoint.py says how a killed
evaluator ends with exactly the values of one that never stopped), then the group's offsets.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from services.evaluator import documents
from services.evaluator.checkpoint import (
    CheckpointStore,
    EvaluatorCounters,
    EvaluatorState,
    Pending,
    settings_of,
)
from services.evaluator.labels import DelayedLabels
from services.evaluator.leaderboard import PromotionRule
from services.evaluator.logfiles import UseCaseLogs
from services.evaluator.origins import change_origin
from services.evaluator.reading import OutputReader
from services.evaluator.scoring import (
    EvaluationResult,
    Scorer,
    Span,
    in_order,
    records_per_second,
)
from shared.clients.influx import AioinfluxStore
from shared.clients.kafka import (
    ConsumerStalledError,
    ConsumerWatch,
    commit_processed,
    ensure_topics,
    make_consumer,
    make_producer,
    send,
    start_client,
)
from shared.clients.redis import check_redis, connect_redis
from shared.config import UseCase
from shared.config.live import LiveConfig
from shared.metrics.evaluation import VIEWS
from shared.metrics.registry import build_metric, usecase_metric_set
from shared.modelstore import ModelIntegrityError
from shared.monitoring.detection import ChangeKind
from shared.monitoring.factory import build_detector
from shared.retry import INFLUXDB, KAFKA, REDIS, Watch, retrying
from shared.sinks.elastic import ElasticSink
from shared.wire.influx import (
    LeaderboardMeasurement,
    MetricsMeasurement,
    ReliabilityMeasurement,
)
from shared.wire.kafka import DeadLetter, dead_letter_topic, record_id_of
from shared.wire.keys import UseCaseKeys
from shared.wire.store import PROMOTE, Fields, ModelMeta, RetrainRequest

log = logging.getLogger("evaluator")

REGRESSION_HINTS = ("mae", "mse", "rmse", "r2", "mape", "cmapss")
#: Outputs per evaluation unless max.poll.records says otherwise.
MAX_RECORDS = 20000
#: Longest wait for Elasticsearch before a checkpoint (documents of checkpointed evaluations
#: are then written; beyond it the sink backs off and the evaluator no longer waits).
DRAIN_S = 2.0
#: Model versions read from the `models` stream at a time.
MODELS_PAGE = 100


class Evaluator:
    def __init__(self, usecase: UseCase, stop: asyncio.Event, logs_root: Path = Path("logs")):
        self.usecase = usecase
        self.stop = stop
        self.keys = UseCaseKeys(usecase.name)
        self.measurement = MetricsMeasurement(usecase.name)
        self.live = LiveConfig(usecase)
        self.logs = UseCaseLogs(logs_root, usecase.name)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"evaluator-{usecase.name}")
        self.scorer = self._scorer(usecase)
        self.state = EvaluatorState(settings_of(usecase), self.scorer.views, self.scorer.progress)
        self.state.sample.seed(usecase.name)
        self.elastic: ElasticSink | None = None  # when visualization=true
        self.pending: Pending | None = None  # an evaluation to replay exactly
        # the batch wait; readingTimeInterval cannot change at run time
        self.wait_ms = max(usecase.streaming.reading_time_interval, 200)
        self.sealable = True  # False once the state failed to pickle (said once)
        self.label_reader: OutputReader | None = None  # labelTopic

    @property
    def counters(self) -> EvaluatorCounters:
        return self.state.counters

    @staticmethod
    def _scorer(usecase: UseCase) -> Scorer:
        """Metrics and detector of the use case's (current) configuration."""
        algs, monitoring = usecase.algs, usecase.monitoring
        metric_set = usecase_metric_set(usecase)
        detector = build_detector(monitoring, usecase.name) if monitoring else None
        monitored = {
            name: build_metric(name, algs.classes_number, usecase.folder).name
            for name in (monitoring.metrics if monitoring and detector else [])
        }
        metrics = metric_set.templates
        regression = any(metric.name.startswith(REGRESSION_HINTS) for metric in metrics)
        view = monitoring.view if monitoring else "batch"
        topic = usecase.streaming.output_topic
        scorer = Scorer(metric_set, detector, monitored, view, regression, topic)
        scorer.promotion = PromotionRule.of(usecase, metric_set)
        return scorer

    @property
    def cooldown_ms(self) -> int:
        return self.usecase.monitoring.alert_cooldown if self.usecase.monitoring else 60000

    def _configure(self, usecase: UseCase) -> bool:
        """Use `usecase`'s settings; True when they start the views and the detector afresh
        (their state belongs to the old settings); progress and counters go on."""
        self.usecase = usecase
        settings = settings_of(usecase)
        if settings == self.state.settings:
            return False
        progress = self.scorer.progress
        self.scorer = self._scorer(usecase)
        self.scorer.progress = progress
        self.state.settings, self.state.views = settings, self.scorer.views
        self.state.alert_active = False
        self.state.detection_offsets.clear()
        return True

    async def _follow_config(self) -> None:
        """Run-time overrides (shared.config.live)."""
        if not await self.live.refresh(self.redis):
            return
        self._configure(self.live.current)
        self.logs.write("infoLog", f"configuration changed: {self.live.overrides}")
        log.info(
            "configuration changed", extra={"usecase": self.usecase.name, **self.live.overrides}
        )

    async def run(self) -> EvaluatorCounters:
        usecase, streaming = self.usecase, self.usecase.streaming
        bootstrap = usecase.bootstrap_servers
        output_topic = streaming.output_topic
        await ensure_topics(
            bootstrap,
            [output_topic, dead_letter_topic(output_topic)],
            partitions=usecase.topic_partitions,
        )
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.logs.close)
            stack.callback(self.executor.shutdown, wait=True)
            self.redis = connect_redis(usecase.connections)
            stack.push_async_callback(self.redis.aclose)
            redis_url = usecase.connections.redis_url
            await retrying(REDIS, "connecting", lambda: check_redis(self.redis, redis_url))
            self.influx = AioinfluxStore(usecase.connections)
            stack.push_async_callback(self.influx.close)
            await retrying(INFLUXDB, "connecting", self.influx.check)
            await retrying(INFLUXDB, "creating the database", self.influx.ensure_database)
            self.redis_lookups = Watch(REDIS, "looking for model versions and configuration")
            self.committing = Watch(KAFKA, "committing the group's offsets")
            if streaming.visualization:
                # buffers and retries on its own: an Elasticsearch outage never stops scoring
                self.elastic = ElasticSink.connect(usecase.connections)
                await self.elastic.start()
                stack.push_async_callback(self.elastic.close)
            await retrying(
                REDIS,
                "reading the configuration",
                lambda: self.live.refresh(self.redis, force=True),
            )
            self._configure(self.live.current)
            await retrying(REDIS, "claiming the checkpoint", self._resume)
            producer = make_producer(bootstrap)  # dead letters
            await start_client(producer, bootstrap)
            stack.push_async_callback(producer.stop)
            consumer = make_consumer(
                bootstrap, f"streamer-evaluator-{usecase.name}", isolation_level="read_committed"
            )
            await start_client(consumer, bootstrap)
            self.consumers = [consumer]  # the last one is in use (_recreate_consumer)
            stack.push_async_callback(lambda: self.consumers[-1].stop())
            reader = OutputReader(
                consumer,
                output_topic,
                max_records=streaming.max_poll_records or MAX_RECORDS,
                wait_ms=self.wait_ms,
                stop=self.stop,
            )
            partitions = await retrying(
                KAFKA, "reading the output topic", lambda: producer.partitions_for(output_topic)
            )
            await reader.assign(partitions, self.state.offsets)
            if streaming.label_topic is not None:
                await self._read_labels(stack, producer, streaming.label_topic)
            log.info(
                "evaluator started",
                extra={"usecase": usecase.name, "evaluation": self.scorer.index},
            )
            await self._consume(reader, producer)
        log.info("evaluator stopped", extra={"usecase": usecase.name, **self.counters.__dict__})
        return self.counters

    async def _read_labels(
        self, stack: contextlib.AsyncExitStack, producer: AIOKafkaProducer, topic: str
    ) -> None:
        """labelTopic: outputs wait for their label, read by a consumer of its own from where
        the checkpoint's state says (the join and its offsets are part of the state)."""
        usecase = self.usecase
        bootstrap = usecase.bootstrap_servers
        await ensure_topics(bootstrap, [topic], partitions=usecase.topic_partitions)
        timeout = usecase.streaming.label_timeout
        progress = self.scorer.progress
        if progress.labels is None:
            progress.labels = DelayedLabels.waiting_at_most(timeout)
        progress.labels.join.timeout = timeout
        consumer = make_consumer(bootstrap, None, isolation_level="read_committed")
        await start_client(consumer, bootstrap)
        stack.push_async_callback(consumer.stop)
        self.label_reader = OutputReader(
            consumer,
            topic,
            max_records=self.usecase.streaming.max_poll_records or MAX_RECORDS,
            wait_ms=0,
            stop=self.stop,
        )
        partitions = await retrying(
            KAFKA, "reading the label topic", lambda: producer.partitions_for(topic)
        )
        await self.label_reader.assign(partitions, progress.labels.offsets)

    # ---- restart ---------------------------------------------------------------------------

    async def _resume(self) -> None:
        """Take the checkpoint over and continue from the state it holds, if any."""
        secret = self.usecase.connections.model_secret
        key = secret.get_secret_value().encode() if secret and secret.get_secret_value() else None
        self.checkpoints = CheckpointStore(self.redis, self.usecase.name, key)
        if key is None:
            log.warning(
                "STREAMER_MODEL_SECRET is not set: no checkpoint (a restarted evaluator scores "
                "outputTopic again from its beginning)",
                extra={"usecase": self.usecase.name},
            )
        claimed = await self.checkpoints.claim()
        if claimed is None:
            return
        evaluation, sealed, pending = claimed
        loop = asyncio.get_running_loop()
        try:
            saved = await loop.run_in_executor(
                self.executor, self.checkpoints.unseal, evaluation, sealed
            )
        except (ModelIntegrityError, ValueError, TypeError, AttributeError, ImportError) as error:
            log.warning(
                "the checkpoint cannot be used: scoring outputTopic again from its beginning",
                extra={"usecase": self.usecase.name, "error": f"{type(error).__name__}: {error}"},
            )
            return
        fresh_views = self.scorer.views
        self.state = saved
        self.scorer.progress = saved.progress
        if saved.settings == settings_of(self.usecase):
            self.scorer.views = saved.views
        else:
            log.warning(
                "metrics or monitoring settings changed since the checkpoint: their views and "
                "the detector start afresh",
                extra={"usecase": self.usecase.name},
            )
            saved.settings, saved.views = settings_of(self.usecase), fresh_views
            saved.alert_active = False
            saved.detection_offsets.clear()
        if pending is not None and pending.evaluation == saved.progress.index + 1:
            self.pending = pending
        log.info(
            "resumed from the checkpoint",
            extra={
                "usecase": self.usecase.name,
                "evaluation": saved.progress.index,
                "offsets": saved.offsets,
                "replaying": self.pending is not None,
            },
        )

    # ---- reading ---------------------------------------------------------------------------

    async def _consume(self, reader: OutputReader, producer: AIOKafkaProducer) -> None:
        watch = ConsumerWatch(reader.consumer, "reading the output topic")
        while not self.stop.is_set():
            if self.pending is not None:
                messages = await reader.replay(self.pending)
            else:
                messages = await reader.next_batch()
            labels = await self.label_reader.next_batch() if self.label_reader else []
            watch.fetched(len(messages))
            if not messages:
                try:
                    await watch.check()
                except ConsumerStalledError as error:  # aiokafka #612: a new one is made
                    log.warning(f"consumer stuck, recreated: {error}")
                    await self._recreate_consumer(reader)
                    watch = ConsumerWatch(reader.consumer, "reading the output topic")
            await self.redis_lookups.attempt(self._follow_config)
            await self.redis_lookups.attempt(self._index_new_models)
            if messages or labels:
                await self._evaluate(reader.consumer, producer, messages, labels)

    async def _recreate_consumer(self, reader: OutputReader) -> None:
        """A new consumer, at the offsets after the last evaluation (the checkpoint's)."""
        old = reader.consumer
        partitions = sorted(tp.partition for tp in old.assignment())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(old.stop(), 10)
        consumer = make_consumer(
            self.usecase.bootstrap_servers,
            f"streamer-evaluator-{self.usecase.name}",
            isolation_level="read_committed",
        )
        await start_client(consumer, self.usecase.bootstrap_servers)
        self.consumers.append(consumer)
        reader.consumer, reader.carry = consumer, []
        await reader.assign(partitions, self.state.offsets)

    # ---- one evaluation --------------------------------------------------------------------

    async def _evaluate(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        messages: list[ConsumerRecord],
        labels: list[ConsumerRecord] | None = None,
    ) -> None:
        messages = in_order(messages)
        pending = self.pending
        if pending is None:
            span = Span.of(self.usecase.streaming.output_topic, messages)
            pending = Pending(self.scorer.index + 1, int(time.time() * 1000), span.ends)
            await retrying(
                REDIS, "announcing an evaluation", lambda: self.checkpoints.announce(pending)
            )
        self.pending = None
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            self.executor, self.scorer.evaluate, messages, pending.time_ms, labels or []
        )
        await self._dead_letters(producer, result)
        started_at = self._track_detections(result)
        requests = self._react(result) + self._promote(result)
        await self._write(result, started_at)
        state = self.state
        state.offsets.update(result.span.next_offsets())
        counters = state.counters
        counters.evaluations += 1
        counters.outputs += len(result.outputs)
        counters.duplicates += result.duplicates
        counters.malformed += result.malformed
        self._count_labels(result)
        sealed = await self._seal()
        if self.elastic is not None:
            await self.elastic.drain(DRAIN_S)
        await retrying(
            REDIS,
            "saving the checkpoint",
            lambda: self.checkpoints.save(result.index, sealed, requests),
        )
        # informative only (the checkpoint says where to resume): the next commit covers it
        if messages:
            await self.committing.attempt(lambda: commit_processed(consumer, messages))

    def _count_labels(self, result: EvaluationResult) -> None:
        """labelTopic: the join's totals in the counters (heartbeat, /health); a drop is
        logged."""
        delayed = self.scorer.progress.labels
        if delayed is None:
            return
        join, counters = delayed.join, self.state.counters
        counters.labels, counters.labels_joined = delayed.read, join.joined
        counters.labels_missing, counters.labels_orphaned = join.expired.items, join.expired.labels
        counters.labels_waiting = len(join.items)
        counters.labels_malformed = delayed.malformed
        expired = result.expired
        if expired is not None and (expired.items or expired.labels):
            log.warning(
                f"{expired.items} outputs got no label within label.timeout={join.timeout}, "
                f"{expired.labels} labels found no output: dropped",
                extra={
                    "usecase": self.usecase.name,
                    "labels_missing": join.expired.items,
                    "labels_orphaned": join.expired.labels,
                },
            )

    async def _seal(self) -> bytes | None:
        """The signed state, or None when there is no checkpoint to write."""
        if not self.checkpoints.enabled:
            return None
        loop = asyncio.get_running_loop()
        try:
            sealed = await loop.run_in_executor(self.executor, self.checkpoints.seal, self.state)
        except Exception as error:  # e.g. a metric of metrics.py that does not pickle
            if self.sealable:
                log.error(
                    "the evaluator state cannot be checkpointed: a restart will score "
                    "outputTopic again from its beginning",
                    extra={
                        "usecase": self.usecase.name,
                        "error": f"{type(error).__name__}: {error}",
                    },
                )
            self.sealable = False
            return None
        self.sealable = True
        return sealed

    async def _dead_letters(self, producer: AIOKafkaProducer, result: EvaluationResult) -> None:
        """Messages that are no valid output, with the reason, to `<outputTopic>.dlq`."""
        if not result.rejected:
            return
        topic = dead_letter_topic(self.usecase.streaming.output_topic)
        for rejected in result.rejected:
            message = rejected.message
            letter = DeadLetter(
                error=rejected.reason,
                source_topic=message.topic,
                source_partition=message.partition,
                source_offset=message.offset,
                usecase=self.usecase.name,
                record_id=record_id_of(message.headers),
            )
            await retrying(
                KAFKA,
                "sending dead letters",
                functools.partial(
                    send,
                    producer,
                    topic,
                    message.value or b"",
                    key=message.key,
                    headers=letter.headers(),
                ),
            )
        first = result.rejected[0]
        self.logs.write(
            "errorLog",
            f"({result.index}) {result.malformed} malformed outputs sent to {topic}; first, at "
            f"{first.message.partition}:{first.message.offset}: {first.reason}",
            logging.ERROR,
        )

    def _track_detections(self, result: EvaluationResult) -> list[Span]:
        """Where each changed detection started (its identity in Elasticsearch): the
        evaluation that reports it started, remembered until it stops."""
        started_at = []
        offsets = self.state.detection_offsets
        for change in result.changes:
            detection_id = change.detection.id
            if change.kind is ChangeKind.STARTED:
                offsets[detection_id] = result.span.text
            text = offsets.get(detection_id, result.span.text)  # unknown: started here
            if change.kind is ChangeKind.STOPPED:
                offsets.pop(detection_id, None)
            started_at.append(Span.parse(result.span.topic, text))
        return started_at

    def _react(self, result: EvaluationResult) -> list[RetrainRequest]:
        """Alerts start/stop; while one is active, ask for a retrain at most once a cooldown
        (returned: it is written with the checkpoint)."""
        detector, state = self.scorer.detector, self.state
        if detector is None:
            return []
        for change in result.changes:
            detection = change.detection
            text = (
                f"({result.index}) detection {change.kind.value}: {detection.metric} "
                f"[start={detection.start}, stop={detection.stop}, touched={detection.touched}] "
                f"magnitude={detection.magnitude:.4g}"
            )
            self.logs.write("infoLog", text)
        active = detector.alert
        metrics = sorted(detector.ongoing())
        if active != state.alert_active:
            state.alert_active = active
            status = "started" if active else "stopped"
            state.counters.alerts += int(active)
            self.logs.write("infoLog", f"({result.index}) ALERT {status}: {', '.join(metrics)}")
            log.warning(f"alert {status}", extra={"usecase": self.usecase.name, "metrics": metrics})
        request = None
        last = state.last_request_ms
        cooled = last is None or result.time_ms - last >= self.cooldown_ms
        if active and cooled and self.usecase.streaming.online_train:
            origin = change_origin(detector)
            since = self.scorer.views.origins.since(origin) if origin is not None else {}
            request = RetrainRequest(
                reason=f"alert: {', '.join(metrics)}",
                by="evaluator",
                since=since or None,
                change_evaluation=origin,
                evaluation=result.index,
                records_scored=self.scorer.records,
            )
            state.last_request_ms = result.time_ms
            state.counters.retrain_requests += 1
            self.logs.write(
                "infoLog",
                f"({result.index}) retrain requested; change located at evaluation {origin}, "
                f"input positions {since}",
            )
        if self.elastic is not None and (
            request is not None
            or any(change.kind is not ChangeKind.UPDATED for change in result.changes)
        ):
            self.elastic.add(
                "alerts",
                None,
                documents.alert_document(
                    self.usecase.name,
                    result,
                    active=active,
                    metrics=metrics,
                    retrain_requested=request is not None,
                    detection_ids=[d.id for d in detector.ongoing().values()],
                ),
            )
        return [request] if request is not None else []

    def _promote(self, result: EvaluationResult) -> list[RetrainRequest]:
        """The promotion the rule decided, as a request to the trainer (written with the
        checkpoint, so a replayed evaluation does not ask twice)."""
        promotion = result.promotion
        if promotion is None:
            return []
        self.logs.write(
            "infoLog",
            f"({result.index}) promotion of {promotion.model} requested: {promotion.reason}",
        )
        log.info(
            "promotion requested",
            extra={
                "usecase": self.usecase.name,
                "model": promotion.model,
                "reason": promotion.reason,
            },
        )
        return [
            RetrainRequest(
                reason=promotion.reason,
                by="evaluator",
                action=PROMOTE,
                model=promotion.model,
                evaluation=result.index,
            )
        ]

    async def _write(self, result: EvaluationResult, started_at: list[Span]) -> None:
        points = []
        for view in VIEWS:
            for metric, value in result.views.get(view, {}).items():
                self.logs.write("metricsLog", f"({result.index}) [{view}] {metric} = {_fmt(value)}")
                if value is not None:
                    points.append(
                        self.measurement.point(view, metric, value, result.index, result.time_ms)
                    )
        points += self._leaderboard_points(result) + self._reliability_points(result)
        await retrying(INFLUXDB, "writing metrics", lambda: self.influx.write_lines(points))
        first_window_s = self.wait_ms / 1000
        rate = records_per_second(
            len(result.outputs), result.time_ms, self.state.previous_batch_ms, first_window_s
        )
        self.state.previous_batch_ms = result.time_ms
        if self.elastic is not None:
            self._index(result, rate, started_at)

    def _leaderboard_points(self, result: EvaluationResult) -> list[str]:
        """With challengers: each model's values, every view (undefined ones too: their pairs
        and the model's role still say where it stands)."""
        standing = result.standing
        if standing is None:
            return []
        measurement = LeaderboardMeasurement(self.usecase.name)
        return [
            measurement.point(
                model, view, metric, value,
                pairs=standing.pairs[model][view], role=standing.role(model),
                evaluation=result.index, time_ms=result.time_ms,
            )
            for model, views in standing.values.items()
            for view in VIEWS
            for metric, value in views.get(view, {}).items()
        ]  # fmt: skip

    def _reliability_points(self, result: EvaluationResult) -> list[str]:
        """The calibration metrics' reliability tables, one point per non-empty bin."""
        measurement = ReliabilityMeasurement(self.usecase.name)
        return [
            measurement.point(view, metric, row, result.index, result.time_ms)
            for view in VIEWS
            for metric, rows in result.tables.get(view, {}).items()
            for row in rows
        ]

    def _index(
        self, result: EvaluationResult, records_per_s: float, started_at: list[Span]
    ) -> None:
        sink, name, state = self.elastic, self.usecase.name, self.state
        assert sink is not None
        for document in documents.metric_documents(name, result):
            sink.add("metrics", None, document)
        for document in documents.leaderboard_documents(name, result):
            sink.add("leaderboard", None, document)
        for document in documents.reliability_documents(name, result):
            sink.add("reliability", None, document)
        sink.add(
            "batches",
            None,
            documents.batch_document(name, result, records_per_s, state.alert_active),
        )
        for change, start in zip(result.changes, started_at, strict=True):
            document = documents.detection_document(name, change, start, result.time_ms)
            sink.add("detections", None, document)
        rate = self.usecase.algs.evaluation_sample
        for output in result.outputs:
            if rate > 0 and state.sample.random() < rate:
                document = documents.prediction_document(name, output, result.time_ms)
                sink.add("predictions", None, document)

    async def _index_new_models(self) -> None:
        """Model versions published by the trainer (Redis stream) -> Elasticsearch, and the
        infoLog for those that are not the stream's continuous versions (about one a second,
        they would drown the log)."""
        # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
        entries: list[tuple[bytes, Fields]] = await self.redis.xrange(  # type: ignore[assignment]
            self.keys.models, min=f"({self.state.models_cursor}", count=MODELS_PAGE
        )
        for entry_id, fields in entries:
            self.state.models_cursor = entry_id.decode()
            try:
                meta = ModelMeta.decode(fields)
            except ValidationError as error:
                self.logs.write(
                    "errorLog",
                    f"unreadable model version entry {entry_id!r}: {error}",
                    logging.ERROR,
                )
                continue
            if meta.champion is not None:  # with challengers
                self.scorer.leaderboard().note_version(meta)
            if meta.mode != "stream":
                self.logs.write(
                    "infoLog",
                    f"model version {meta.version} ({meta.mode}): "
                    f"{meta.records_learned} records learned",
                )
            if self.elastic is not None:
                self.elastic.add("models", None, documents.model_document(self.usecase.name, meta))


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.6g}"
