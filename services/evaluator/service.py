"""The evaluator of one use case: scores the predictions of outputTopic, watches the metrics
with the use case's detector, asks the trainer for a retrain while an alert is active (at most
once per alert.cooldown), and writes metrics, detections, alerts, model versions and a sample
of predictions to Elasticsearch (visualization=true), metrics to InfluxDB and the original's
log files. Its own consumer group; offsets committed after the InfluxDB write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.evaluator.logfiles import UseCaseLogs
from services.evaluator.scoring import EvaluationResult, Scorer, records_per_second
from shared.clients.influx import AioinfluxStore
from shared.clients.kafka import commit_processed, ensure_topics, make_consumer, start_client
from shared.clients.line_protocol import encode_point
from shared.clients.redis import check_redis, connect_redis
from shared.config import UseCase
from shared.config.live import LiveConfig
from shared.metrics.evaluation import VIEWS
from shared.metrics.registry import build_metric, usecase_metric_set
from shared.monitoring.detection import ChangeKind
from shared.monitoring.factory import build_detector
from shared.sinks.elastic import ElasticSink
from shared.wire.store import request_training

log = logging.getLogger("evaluator")

REGRESSION_HINTS = ("mae", "mse", "rmse", "r2", "mape", "cmapss")


@dataclass
class EvaluatorCounters:
    evaluations: int = 0
    outputs: int = 0
    duplicates: int = 0
    malformed: int = 0
    retrain_requests: int = 0
    alerts: int = 0


class Evaluator:
    def __init__(self, usecase: UseCase, stop: asyncio.Event, logs_root: Path = Path("logs")):
        self.usecase = usecase
        self.stop = stop
        self.counters = EvaluatorCounters()
        self.scorer = self._scorer(usecase)
        self.cooldown_s = self._cooldown_s(usecase)
        self.last_request = float("-inf")
        self.alert_active = False
        self.live = LiveConfig(usecase)
        self.logs = UseCaseLogs(logs_root, usecase.name)
        self.executor = ThreadPoolExecutor(1, thread_name_prefix=f"evaluator-{usecase.name}")
        self.sample = random.Random(usecase.name)
        self.models_cursor = "0"
        self.elastic: ElasticSink | None = None  # when visualization=true
        self.previous_batch_ms: int | None = None  # time of the last batch document

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
        return Scorer(metric_set, detector, monitored, view, regression)

    @staticmethod
    def _cooldown_s(usecase: UseCase) -> float:
        return (usecase.monitoring.alert_cooldown if usecase.monitoring else 60000) / 1000

    async def _follow_config(self) -> None:
        """Run-time overrides: a change of metrics or detector settings starts fresh views and
        a fresh detector (their state belongs to the old settings); evaluation numbers go on."""
        if not await self.live.refresh(self.redis):
            return
        old, new = self.usecase, self.live.current
        self.usecase = new
        self.cooldown_s = self._cooldown_s(new)
        if (old.algs, old.monitoring) != (new.algs, new.monitoring):
            index, records, pairs = self.scorer.index, self.scorer.records, self.scorer.pairs_seen
            self.scorer = self._scorer(new)
            self.scorer.index, self.scorer.records, self.scorer.pairs_seen = index, records, pairs
            self.alert_active = False
        self.logs.write("infoLog", f"configuration changed: {self.live.overrides}")
        log.info("configuration changed", extra={"usecase": new.name, **self.live.overrides})

    async def run(self) -> EvaluatorCounters:
        usecase, streaming = self.usecase, self.usecase.streaming
        bootstrap = usecase.bootstrap_servers
        await ensure_topics(
            bootstrap, [streaming.output_topic], partitions=usecase.topic_partitions
        )
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.logs.close)
            stack.callback(self.executor.shutdown, wait=True)
            self.redis = connect_redis(usecase.connections)
            stack.push_async_callback(self.redis.aclose)
            await check_redis(self.redis, usecase.connections.redis_url)
            self.influx = AioinfluxStore(usecase.connections)
            stack.push_async_callback(self.influx.close)
            await self.influx.check()
            await self.influx.ensure_database()
            if streaming.visualization:
                # buffers and retries on its own: an Elasticsearch outage never stops scoring
                self.elastic = ElasticSink.connect(usecase.connections)
                await self.elastic.start()
                stack.push_async_callback(self.elastic.close)
            consumer = make_consumer(
                bootstrap, f"streamer-evaluator-{usecase.name}", streaming.output_topic
            )
            await start_client(consumer, bootstrap)
            stack.push_async_callback(consumer.stop)
            log.info("evaluator started", extra={"usecase": usecase.name})
            await self._consume(consumer)
        log.info("evaluator stopped", extra={"usecase": usecase.name, **self.counters.__dict__})
        return self.counters

    async def _consume(self, consumer) -> None:
        wait_ms = max(self.usecase.streaming.reading_time_interval, 200)
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            batch = await consumer.getmany(timeout_ms=wait_ms, max_records=20000)
            messages = [message for part in batch.values() for message in part]
            await self._follow_config()
            await self._index_new_models()
            if not messages:
                continue
            now_ms = int(time.time() * 1000)
            result = await loop.run_in_executor(
                self.executor, self.scorer.evaluate, messages, now_ms
            )
            await self._react(result)
            await self._write(result)
            await commit_processed(consumer, messages)
            counters = self.counters
            counters.evaluations += 1
            counters.outputs += len(result.outputs)
            counters.duplicates += result.duplicates
            counters.malformed += result.malformed

    async def _react(self, result: EvaluationResult) -> None:
        """Alerts start/stop; while one is active, ask for a retrain at most once a cooldown."""
        detector = self.scorer.detector
        if detector is None:
            return
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
        if active != self.alert_active:
            self.alert_active = active
            state = "started" if active else "stopped"
            self.counters.alerts += int(active)
            self.logs.write("infoLog", f"({result.index}) ALERT {state}: {', '.join(metrics)}")
            log.warning(f"alert {state}", extra={"usecase": self.usecase.name, "metrics": metrics})
        requested = False
        cooled = time.monotonic() - self.last_request >= self.cooldown_s
        if active and cooled and self.usecase.streaming.online_train:
            await request_training(
                self.redis,
                self.usecase.name,
                f"alert: {', '.join(metrics)}",
                "evaluator",
                evaluation=result.index,
                records_scored=self.scorer.records,
            )
            self.last_request = time.monotonic()
            self.counters.retrain_requests += 1
            requested = True
            self.logs.write("infoLog", f"({result.index}) retrain requested")
        if self.elastic is not None and (
            requested or any(change.kind is not ChangeKind.UPDATED for change in result.changes)
        ):
            self.elastic.add(
                "alerts",
                f"{self.usecase.name}:{result.index}:{'started' if active else 'stopped'}",
                {
                    "@timestamp": result.time_ms,
                    "usecase": self.usecase.name,
                    "state": "started" if active else "stopped",
                    "metrics": metrics,
                    "evaluation": result.index,
                    "retrain_requested": requested,
                    "detection_ids": [d.id for d in detector.ongoing().values()],
                },
            )

    async def _write(self, result: EvaluationResult) -> None:
        name = self.usecase.name
        points = []
        for view in VIEWS:
            for metric, value in result.views.get(view, {}).items():
                line = f"({result.index}) [{view}] {metric} = {_fmt(value)}"
                self.logs.write("metricsLog", line)
                if value is not None:
                    points.append(
                        encode_point(
                            f"{name}_metrics",
                            {"view": view, "metric": metric},
                            {"value": float(value), "evaluation": result.index},
                            result.time_ms * 1_000_000,
                        )
                    )
        await self.influx.write_lines(points)
        if self.elastic is not None:
            self._index(result)

    def _index(self, result: EvaluationResult) -> None:
        sink, name = self.elastic, self.usecase.name
        assert sink is not None
        for view in VIEWS:
            for metric, value in result.views.get(view, {}).items():
                document: dict[str, Any] = {
                    "@timestamp": result.time_ms,
                    "usecase": name,
                    "view": view,
                    "evaluation": result.index,
                    "metric": metric,
                    "defined": value is not None,
                    "pairs": result.pairs.get(view, 0),
                }
                if value is not None:
                    document["value"] = float(value)
                sink.add("metrics", f"{name}:{view}:{result.index}:{metric}", document)
        first_window_s = max(self.usecase.streaming.reading_time_interval, 200) / 1000
        rate = records_per_second(
            len(result.outputs), result.time_ms, self.previous_batch_ms, first_window_s
        )
        self.previous_batch_ms = result.time_ms
        batch: dict[str, Any] = {
            "@timestamp": result.time_ms,
            "usecase": name,
            "evaluation": result.index,
            "records": len(result.outputs),
            "duplicates": result.duplicates,
            "records_per_s": rate,
            "alert": self.alert_active,
        }
        for key, q in (("latency_ms_p50", 0.5), ("latency_ms_p95", 0.95)):
            value = result.latency(q)
            if value is not None:
                batch[key] = value
        if result.latencies_ms:
            batch["latency_ms_max"] = max(result.latencies_ms)
        if result.model_version is not None:
            batch["model_version"] = result.model_version
        sink.add("batches", f"{name}:{result.index}", batch)
        for change in result.changes:
            detection = change.detection
            document = {
                "@timestamp": detection.start_time_ms or result.time_ms,
                "usecase": name,
                "detection_id": detection.id,
                "metric": detection.metric,
                "detector": detection.detector,
                "start": detection.start,
                "touched": detection.touched,
                "active": detection.ongoing,
                "magnitude": detection.magnitude,
            }
            for key, value in (
                ("stop", detection.stop),
                ("start_time", detection.start_time_ms),
                ("touched_time", detection.touched_time_ms),
                ("stop_time", detection.stop_time_ms),
            ):
                if value is not None:
                    document[key] = value
            sink.add("detections", detection.id, document)
        rate = self.usecase.algs.evaluation_sample
        for output in result.outputs:
            if rate <= 0 or self.sample.random() >= rate:
                continue
            targets = output.get("targets") or []
            prediction = output.get("prediction")
            document = {
                "@timestamp": output.get("event_time") or result.time_ms,
                "usecase": name,
                "output_id": output["id"],
                "record_id": output.get("record_id"),
                "prediction": None if prediction is None else str(prediction),
                "target": targets[0] if targets else None,
                "correct": bool(targets) and str(targets[0]) == str(prediction),
            }
            produced = (output.get("timings") or {}).get("produced")
            predicted = (output.get("timings") or {}).get("predicted")
            if isinstance(produced, int | float) and isinstance(predicted, int | float):
                document["latency_ms"] = float(predicted - produced)
            if isinstance(output.get("model_version"), int):
                document["model_version"] = output["model_version"]
            sink.add("predictions", str(output["id"]), document)

    async def _index_new_models(self) -> None:
        """Model versions published by the trainer (Redis stream) -> infoLog and Elasticsearch."""
        key = f"streamer:{self.usecase.name}:models"
        entries = await self.redis.xrange(key, min=f"({self.models_cursor}", count=100)
        for entry_id, fields in entries:
            self.models_cursor = entry_id.decode()
            meta = {k.decode(): _json(v) for k, v in fields.items()}
            self.logs.write(
                "infoLog",
                f"model version {meta.get('version')} ({meta.get('mode')}): "
                f"{meta.get('records_learned')} records learned",
            )
            if self.elastic is None:
                continue
            document = {
                "@timestamp": int(float(meta.get("created_at", time.time())) * 1000),
                "usecase": self.usecase.name,
            }
            for field in (
                "version",
                "mode",
                "reason",
                "algorithm",
                "records_learned",
                "new_records",
                "training_seconds",
                "size_bytes",
                "lag_ms",
            ):
                if meta.get(field) is not None:
                    document[field] = meta[field]
            self.elastic.add("models", f"{self.usecase.name}:{meta.get('version')}", document)


def _fmt(value: float | None) -> str:
    return "undefined" if value is None else f"{value:.6g}"


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")
