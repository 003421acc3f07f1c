"""The evaluator's Elasticsearch documents, one builder per index.

shared/sinks/documents.py declares the indices (fields, types, which fields make the `_id`);
these builders fill them from what the evaluator computed, and the sink validates each document
and derives its `_id`. A document about an evaluation carries the outputTopic offsets it read
(`output_topic`, `output_offsets`), so its `_id` names what it describes and a restarted
evaluator never overwrites an older evaluation's documents.
"""

from __future__ import annotations

import time
from typing import Any

from services.evaluator.scoring import EvaluationResult, Span
from shared.metrics.evaluation import VIEWS
from shared.monitoring.detection import DetectionChange
from shared.wire.kafka import Output
from shared.wire.store import ModelMeta

#: ModelMeta fields the models index keeps.
MODEL_FIELDS = (
    "version",
    "mode",
    "reason",
    "algorithm",
    "records_learned",
    "new_records",
    "training_seconds",
    "size_bytes",
    "lag_ms",
)


def _about(usecase: str, time_ms: int, span: Span) -> dict[str, Any]:
    return {
        "@timestamp": time_ms,
        "usecase": usecase,
        "output_topic": span.topic,
        "output_offsets": span.text,
    }


def metric_documents(usecase: str, result: EvaluationResult) -> list[dict[str, Any]]:
    """One document per metric per view."""
    documents = []
    for view in VIEWS:
        for metric, value in result.views.get(view, {}).items():
            document = {
                **_about(usecase, result.time_ms, result.span),
                "view": view,
                "evaluation": result.index,
                "metric": metric,
                "defined": value is not None,
                "pairs": result.pairs.get(view, 0),
            }
            if value is not None:
                document["value"] = float(value)
            documents.append(document)
    return documents


def leaderboard_documents(usecase: str, result: EvaluationResult) -> list[dict[str, Any]]:
    """With challengers: one document per model per metric per view."""
    standing = result.standing
    if standing is None:
        return []
    documents = []
    for model, views in standing.values.items():
        for view in VIEWS:
            for metric, value in views.get(view, {}).items():
                document = {
                    **_about(usecase, result.time_ms, result.span),
                    "model": model,
                    "role": standing.role(model),
                    "view": view,
                    "evaluation": result.index,
                    "metric": metric,
                    "defined": value is not None,
                    "pairs": standing.pairs.get(model, {}).get(view, 0),
                }
                if value is not None:
                    document["value"] = float(value)
                documents.append(document)
    return documents


def reliability_documents(usecase: str, result: EvaluationResult) -> list[dict[str, Any]]:
    """One document per non-empty bin of each calibration metric's table, per view."""
    return [
        {
            **_about(usecase, result.time_ms, result.span),
            "view": view,
            "evaluation": result.index,
            "metric": metric,
            **row,
        }
        for view in VIEWS
        for metric, rows in result.tables.get(view, {}).items()
        for row in rows
    ]


def batch_document(
    usecase: str, result: EvaluationResult, records_per_s: float, alert: bool
) -> dict[str, Any]:
    """The evaluation itself: how many outputs, how fast, how late, which model."""
    document: dict[str, Any] = {
        **_about(usecase, result.time_ms, result.span),
        "evaluation": result.index,
        "records": len(result.outputs),
        "duplicates": result.duplicates,
        "malformed": result.malformed,
        "records_per_s": records_per_s,
        "alert": alert,
    }
    for key, q in (("latency_ms_p50", 0.5), ("latency_ms_p95", 0.95)):
        value = result.latency(q)
        if value is not None:
            document[key] = value
    if result.latencies_ms:
        document["latency_ms_max"] = max(result.latencies_ms)
    if result.model_version is not None:
        document["model_version"] = result.model_version
    return document


def detection_document(
    usecase: str, change: DetectionChange, started_at: Span, time_ms: int
) -> dict[str, Any]:
    """A detection as it is now; `started_at` is the evaluation it started at (its identity)."""
    detection = change.detection
    document: dict[str, Any] = {
        **_about(usecase, detection.start_time_ms or time_ms, started_at),
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
        ("change_start", detection.change_start),
    ):
        if value is not None:
            document[key] = value
    return document


def alert_document(
    usecase: str,
    result: EvaluationResult,
    *,
    active: bool,
    metrics: list[str],
    retrain_requested: bool,
    detection_ids: list[str],
) -> dict[str, Any]:
    """An alert's state after this evaluation (written when it changes or a retrain is asked)."""
    return {
        **_about(usecase, result.time_ms, result.span),
        "state": "started" if active else "stopped",
        "metrics": metrics,
        "evaluation": result.index,
        "retrain_requested": retrain_requested,
        "detection_ids": detection_ids,
    }


def prediction_document(usecase: str, output: Output, time_ms: int) -> dict[str, Any]:
    """One sampled prediction (its `_id` is its input record's)."""
    target = output.targets[0] if output.targets else None
    prediction = output.prediction
    document: dict[str, Any] = {
        "@timestamp": output.event_time or time_ms,
        "usecase": usecase,
        "output_id": output.id,
        "record_id": output.record_id,
        "prediction": None if prediction is None else str(prediction),
        "target": None if target is None else str(target),
        "correct": target is not None and str(target) == str(prediction),
    }
    produced, predicted = output.timings.produced, output.timings.predicted
    if produced is not None and predicted is not None:
        document["latency_ms"] = float(predicted - produced)
    if output.model_version is not None:
        document["model_version"] = output.model_version
    return document


def model_document(usecase: str, meta: ModelMeta) -> dict[str, Any]:
    """One model version as the trainer described it."""
    created_s = meta.created_at if meta.created_at is not None else time.time()
    document: dict[str, Any] = {"@timestamp": int(created_s * 1000), "usecase": usecase}
    for name in MODEL_FIELDS:
        value = getattr(meta, name)
        if value is not None:
            document[name] = value
    return document
