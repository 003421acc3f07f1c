"""What a detector reports: detections (episodes of a metric out of its normal range) and their
changes, and the Elasticsearch document of a detection.

A `Detection` is immutable: the detector replaces it at each change, so every `DetectionChange`
it returns is a snapshot the evaluator can write (or queue) without copying, and a checkpoint of
the detector never aliases what was already handed out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = ["ChangeKind", "Detection", "DetectionChange"]


class ChangeKind(StrEnum):
    """What happened to a detection at one evaluation."""

    STARTED = "started"  # the robustness rule was met: the alert starts
    UPDATED = "updated"  # the condition held again while ongoing (touched, maybe a new magnitude)
    STOPPED = "stopped"  # `robustness` consecutive clean evaluations: the alert ends


@dataclass(frozen=True, slots=True)
class Detection:
    """One episode of one monitored metric being abnormal.

    Indices are the evaluator's evaluation (batch) numbers; the `*_time_ms` fields carry the
    wall-clock time (epoch ms) the caller gave with that evaluation, None if it gave none.
    `magnitude` is the value (ThresholdDetector), the CUSUM statistic (CUSUM detectors) or the
    shift of the stream's mean from its clean baseline (River detectors) at the start, replaced
    by a more extreme one while the detection is ongoing. `change_start` is the evaluation where
    the change is estimated to have begun (at most `start`): the first evaluation of the
    streak that started the alert, or the detector's own estimate (the CUSUM's last zero, the
    start of the window River's ADWIN or KSWIN kept, PageHinkley's extremum). A retrain learns
    from there (docs/monitoring.md, "Retraining after an alert").
    """

    usecase: str
    detector: str
    metric: str
    start: int
    touched: int
    magnitude: float
    stop: int | None = None
    start_time_ms: int | None = None
    touched_time_ms: int | None = None
    stop_time_ms: int | None = None
    change_start: int | None = None

    @property
    def id(self) -> str:
        """Deterministic, so re-writing the same detection (after a replay) overwrites it."""
        return f"{self.usecase}:{self.metric}:{self.start}"

    @property
    def ongoing(self) -> bool:
        return self.stop is None

    def to_document(self) -> dict[str, Any]:
        """The Elasticsearch document: plain field names (no dots, spaces or slashes), times as
        ISO-8601 UTC strings so dynamic mapping types them as dates, no NaN (invalid JSON).

        Index it with `id=detection.id`: the started, updated and stopped versions of one
        detection then land on one document, the last one written winning.
        """
        return {
            "detection_id": self.id,
            "timestamp": _iso(self.start_time_ms),
            "usecase": self.usecase,
            "detector": self.detector,
            "metric": self.metric,
            "ongoing": self.ongoing,
            "start": self.start,
            "touched": self.touched,
            "stop": self.stop,
            "start_time": _iso(self.start_time_ms),
            "touched_time": _iso(self.touched_time_ms),
            "stop_time": _iso(self.stop_time_ms),
            "magnitude": self.magnitude if math.isfinite(self.magnitude) else None,
            "change_start": self.change_start,
        }


@dataclass(frozen=True, slots=True)
class DetectionChange:
    """A detection as it is after `kind` happened to it."""

    kind: ChangeKind
    detection: Detection


def _iso(time_ms: int | None) -> str | None:
    if time_ms is None:
        return None
    return datetime.fromtimestamp(time_ms / 1000, UTC).isoformat(timespec="milliseconds")
