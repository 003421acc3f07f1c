"""The robustness rule every detector shares, per metric.

The original's guide: an alert starts after `robustness` consecutive detections and stops after
`robustness` consecutive clean evaluations. Only its ThresholdDetector did so; here each detector
only decides, per evaluation, whether the condition holds (a `Verdict`), and `RunLength` applies
the rule, so all detectors start and stop alike. An undefined value never reaches it: skipped
evaluations neither extend nor break a run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

from shared.monitoring.detection import ChangeKind, Detection, DetectionChange

__all__ = ["RunLength", "Verdict"]


class Verdict(NamedTuple):
    """A detector's judgement of one metric at one evaluation.

    `severity` orders verdicts by how abnormal they are (larger is worse), so an ongoing
    detection keeps the `magnitude` of its most extreme evaluation whatever the metric's
    direction (a falling accuracy keeps its lowest value). `origin` is the detector's own
    estimate of the evaluation where the change began (a CUSUM's rise, an ADWIN cut), None when
    it has none: the run then says the first evaluation of the streak.
    """

    detected: bool
    magnitude: float
    severity: float
    origin: int | None = None


@dataclass(slots=True)
class RunLength:
    """Consecutive-detection / consecutive-clean counters and the ongoing detection of a metric.

    Plain data (picklable), because the evaluator checkpoints detectors.
    """

    usecase: str
    detector: str
    metric: str
    robustness: int
    hits: int = 0  # consecutive detections while no detection is ongoing
    origin: int | None = None  # where the change began, estimated at the streak's first hit
    clean: int = 0  # consecutive clean evaluations while a detection is ongoing
    current: Detection | None = None
    severity: float = float("-inf")  # of the magnitude `current` keeps

    def __post_init__(self) -> None:
        if self.robustness < 1:
            raise ValueError(f"{self.metric}: robustness must be >= 1, got {self.robustness}")

    def step(self, index: int, time_ms: int | None, verdict: Verdict) -> DetectionChange | None:
        """Apply one defined evaluation; the change it makes to the detection, if any."""
        if self.current is None:
            return self._idle(index, time_ms, verdict)
        if verdict.detected:
            self.clean = 0
            magnitude = self.current.magnitude
            if verdict.severity > self.severity:
                self.severity = verdict.severity
                magnitude = verdict.magnitude
            self.current = replace(
                self.current, touched=index, touched_time_ms=time_ms, magnitude=magnitude
            )
            return DetectionChange(ChangeKind.UPDATED, self.current)
        self.clean += 1
        if self.clean < self.robustness:
            return None
        stopped = replace(self.current, stop=index, stop_time_ms=time_ms)
        self.current = None
        self.clean = 0
        self.hits = 0
        return DetectionChange(ChangeKind.STOPPED, stopped)

    def _idle(self, index: int, time_ms: int | None, verdict: Verdict) -> DetectionChange | None:
        if not verdict.detected:
            self.hits = 0
            return None
        self.hits += 1
        if self.hits == 1:
            self.origin = index if verdict.origin is None else min(verdict.origin, index)
        if self.hits < self.robustness:
            return None
        self.hits = 0
        self.clean = 0
        self.severity = verdict.severity
        self.current = Detection(
            usecase=self.usecase,
            detector=self.detector,
            metric=self.metric,
            start=index,
            touched=index,
            magnitude=verdict.magnitude,
            start_time_ms=time_ms,
            touched_time_ms=time_ms,
            change_start=index if self.origin is None else self.origin,
        )
        return DetectionChange(ChangeKind.STARTED, self.current)
