"""River's drift detectors (ADWIN, PageHinkley, KSWIN) behind the detector contract.

One River detector per monitored stream. A stream is either a metric's values, one per
evaluation (`stream="metrics"`, through `observe`), or per-record errors of the model, many per
evaluation (`stream="errors"`, through `observe_errors`; see `record_errors`). An evaluation
counts as a detection when the River detector signalled a drift (`drift_detected`) on any of the
values fed at that evaluation; the shared robustness rule then applies. River's detectors reset
after a signal, so consecutive signals are rare: with robustness 1 the alert starts at the
evaluation of the drift and stops at the next clean evaluation; a higher robustness needs drifts
in that many consecutive evaluations.

Where the change began (`Detection.change_start`): River's detectors do not say it well
enough; `_ChangeLocator` estimates it from the values fed since the previous signal.
"""

from __future__ import annotations

import inspect
import itertools
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from river import base, drift

from shared.monitoring.base import Detector, as_defined, per_metric
from shared.monitoring.detection import DetectionChange
from shared.monitoring.robustness import Verdict
from shared.monitoring.stats import RunningStats

__all__ = ["RIVER_DETECTORS", "DriftDirection", "DriftStream", "RiverDriftDetector"]

#: Detector name in monitoring.props -> River class.
RIVER_DETECTORS: dict[str, type[base.DriftDetector]] = {
    "ADWIN": drift.ADWIN,
    "PageHinkley": drift.PageHinkley,
    "KSWIN": drift.KSWIN,
}

#: KSWIN samples its reference window at random: a fixed default seed keeps runs reproducible.
_DEFAULT_SEEDS = {"KSWIN": 42}
#: Parameters a per-metric list cannot express (KSWIN's initial window is itself a list).
_UNSUPPORTED = {"window"}
#: Evaluations a change can be traced back to (older estimates say the oldest one kept).
LOCATE_EVALUATIONS = 256


class DriftStream(StrEnum):
    """What the River detector is fed."""

    METRICS = "metrics"  # the metric's value, once per evaluation
    ERRORS = "errors"  # per-record errors (0/1 or absolute error), many per evaluation


class DriftDirection(StrEnum):
    """Which drifts count: River signals any change of distribution, a recovery included."""

    BOTH = "both"
    UP = "up"  # the stream's mean rose above its baseline (errors grew): for error streams
    DOWN = "down"  # the mean fell below its baseline (e.g. an accuracy stream)


@dataclass(slots=True)
class _Segment:
    """The values one evaluation fed to a River detector: how many and their sum."""

    index: int
    count: int = 0
    total: float = 0.0


@dataclass(slots=True)
class _ChangeLocator:
    """Where a change signalled by a River detector began, at evaluation granularity.

    River's detectors say that a change happened, not where (ADWIN's cut keeps old values that
    are too few to matter to its test; KSWIN keeps only its last `stat_size` values; PageHinkley's
    extremum wanders with its random walk), and they start afresh after each signal. So the
    locator keeps the count and sum of the values each recent evaluation fed since the last
    signal, and at a signal takes the split of those evaluations into two runs with the most
    likely shift of the mean (the largest n₁n₂/(n₁+n₂)·(m₁−m₂)², Hinkley's estimate of a single
    change point): the change began at the first evaluation after the split.
    """

    segments: deque[_Segment] = field(
        default_factory=lambda: deque(maxlen=LOCATE_EVALUATIONS)
    )  # since the last signal, oldest first

    def begin(self, index: int) -> None:
        self.segments.append(_Segment(index))

    def add(self, value: float) -> None:
        current = self.segments[-1]
        current.count += 1
        current.total += value

    def origin(self) -> int:
        """At a signal: the estimated first evaluation of the change; then start afresh, as
        the River detector does (the values after the signal belong to the new run)."""
        segments = [segment for segment in self.segments if segment.count]
        origin = _split(segments) if segments else self.segments[-1].index
        current = self.segments[-1]
        self.segments.clear()
        self.segments.append(_Segment(current.index))
        return origin


def _split(segments: Sequence[_Segment]) -> int:
    """The first evaluation after the most likely mean-shift split of `segments` (the last one
    when there is a single segment)."""
    count = sum(segment.count for segment in segments)
    total = sum(segment.total for segment in segments)
    best, origin = -1.0, segments[-1].index
    left_count, left_total = 0, 0.0
    for before, after in itertools.pairwise(segments):
        left_count += before.count
        left_total += before.total
        right_count = count - left_count
        shift = left_total / left_count - (total - left_total) / right_count
        score = left_count * right_count / count * shift * shift
        if score > best:
            best, origin = score, after.index
    return origin


class RiverDriftDetector(Detector):
    """A River drift detector per monitored stream, with the shared robustness rule.

    `params` are the River constructor's arguments (e.g. `delta`, `clock` for ADWIN; `threshold`,
    `min_instances` for PageHinkley; `alpha`, `window_size`, `stat_size`, `seed` for KSWIN), each
    one value for every stream or a list with one per stream. They are in the stream's units:
    River's defaults suit long record-level streams (PageHinkley's threshold 50 never fires on a
    metric in [0, 1]; ADWIN checks every `clock`=32 values).

    The magnitude of a detection is |mean of this evaluation's values − baseline|, the baseline
    being the running mean of the values of clean evaluations outside detections: the size of
    the shift, whatever the stream's direction. With `direction` up (down), a drift signal only
    counts when this evaluation's mean is above (below) that baseline, so an error stream's
    recovery does not raise an alert.
    """

    def __init__(
        self,
        usecase: str,
        metrics: Sequence[str],
        kind: str,
        robustness: int | Sequence[int] = 1,
        params: Mapping[str, Any] | None = None,
        stream: DriftStream | str = DriftStream.METRICS,
        direction: DriftDirection | str = DriftDirection.BOTH,
    ):
        if kind not in RIVER_DETECTORS:
            known = ", ".join(RIVER_DETECTORS)
            raise ValueError(f"detector: unknown River detector {kind!r}; known: {known}")
        self.name = str(kind)
        super().__init__(usecase, metrics, robustness)
        self._stream = DriftStream(stream)
        self._direction = DriftDirection(direction)
        factory = RIVER_DETECTORS[self.name]
        values: dict[str, Any] = {}
        if self.name in _DEFAULT_SEEDS:
            values["seed"] = _DEFAULT_SEEDS[self.name]
        values.update(params or {})
        accepted = set(inspect.signature(factory).parameters) - _UNSUPPORTED
        unknown = sorted(set(values) - accepted)
        if unknown:
            raise ValueError(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; "
                f"valid: {', '.join(sorted(accepted))}"
            )
        columns = {name: per_metric(value, self.metrics, name) for name, value in values.items()}
        self._drift: dict[str, base.DriftDetector] = {}
        for i, metric in enumerate(self.metrics):
            kwargs = {name: column[i] for name, column in columns.items()}
            try:
                self._drift[metric] = factory(**kwargs)
            except (TypeError, ValueError) as error:
                raise ValueError(f"{self.name}: bad parameters {kwargs}: {error}") from error
        self._baseline = {metric: RunningStats() for metric in self.metrics}
        self._locators = {metric: _ChangeLocator() for metric in self.metrics}
        self._batch: list[float] = []  # the values judged last, learnt by `_after` when clean

    @property
    def stream(self) -> DriftStream:
        return self._stream

    @property
    def direction(self) -> DriftDirection:
        return self._direction

    @property
    def wants_errors(self) -> bool:
        return self._stream is DriftStream.ERRORS

    def river_detector(self, metric: str) -> base.DriftDetector:
        return self._drift[metric]

    def observe(
        self, index: int, time_ms: int | None, values: Mapping[str, float | None]
    ) -> list[DetectionChange]:
        if self.wants_errors:
            raise TypeError(f"{self.name} watches per-record errors: call observe_errors()")
        return super().observe(index, time_ms, values)

    def observe_errors(
        self,
        index: int,
        time_ms: int | None,
        errors: Mapping[str, Sequence[float | None]] | Sequence[float | None],
    ) -> list[DetectionChange]:
        """Feed one evaluation's per-record errors, in record order.

        `errors` maps each monitored stream name to its errors; a plain sequence is accepted when
        a single stream is monitored. Undefined errors are dropped; a stream with no defined error
        at this evaluation is skipped (neither a detection nor clean). Same index rule as
        `observe`.
        """
        if not self.wants_errors:
            raise TypeError(f"{self.name} watches metric values: call observe()")
        if not isinstance(errors, Mapping):
            if len(self.metrics) != 1:
                raise ValueError(
                    f"{self.name} monitors {len(self.metrics)} streams: "
                    "give errors as a mapping stream name -> errors"
                )
            errors = {self.metrics[0]: errors}
        if not self._accept(index):
            return []
        changes: list[DetectionChange] = []
        for metric in self.metrics:
            defined = [x for x in map(as_defined, errors.get(metric, ())) if x is not None]
            if defined:
                changes.extend(self._apply(metric, index, time_ms, self._feed(metric, defined)))
        return changes

    def _judge(self, metric: str, value: float) -> Verdict:
        return self._feed(metric, [value])

    def _feed(self, metric: str, values: list[float]) -> Verdict:
        detector, locator = self._drift[metric], self._locators[metric]
        locator.begin(self._evaluation)
        signalled, origin = False, None
        for value in values:
            detector.update(value)
            locator.add(value)
            if detector.drift_detected:
                change = locator.origin()
                if not signalled:
                    signalled, origin = True, change
        baseline = self._baseline[metric]
        shift = statistics.fmean(values) - baseline.mean if baseline.n else 0.0
        if self._direction is DriftDirection.UP:
            signalled = signalled and shift > 0
        elif self._direction is DriftDirection.DOWN:
            signalled = signalled and shift < 0
        self._batch = values
        return Verdict(signalled, abs(shift), abs(shift), origin=origin)

    def _after(self, metric: str, verdict: Verdict, change: DetectionChange | None) -> None:
        if not verdict.detected and not self._is_ongoing(metric):
            baseline = self._baseline[metric]
            for value in self._batch:
                baseline.add(value)
        self._batch = []
