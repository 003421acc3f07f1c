"""The detector contract: the evaluator calls `observe` once per evaluation with the metric
values it computed, writes the changes it gets back, and reads `alert`.

Detectors are plain Python objects with no I/O, so the evaluator can pickle them into its
checkpoint and restore them after a restart.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import TypeVar

from shared.monitoring.detection import Detection, DetectionChange
from shared.monitoring.robustness import RunLength, Verdict

__all__ = ["Detector", "as_defined", "per_metric"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def as_defined(value: float | None) -> float | None:
    """The value as a float, or None when it is undefined (None, NaN or ±inf).

    Undefined values are skipped rather than read as 0 (the original's `Math.round(NaN)=0`) or as
    an extreme (an infinite MAE would poison the CUSUM statistics forever).
    """
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def per_metric(values: T | Sequence[T], metrics: Sequence[str], what: str) -> list[T]:
    """One value per metric: a single value (or a 1-element list) applies to every metric, as in
    the original's props files; a list must otherwise have exactly one value per metric."""
    if isinstance(values, str) or not isinstance(values, Sequence):
        return [values] * len(metrics)
    if len(values) == 1:
        return [values[0]] * len(metrics)
    if len(values) != len(metrics):
        raise ValueError(
            f"{what}: needs 1 value or one per metric ({len(metrics)}: "
            f"{', '.join(metrics)}), got {len(values)}"
        )
    return list(values)


class Detector(ABC):
    """Watches some metrics of one use case; one `RunLength` (robustness rule) per metric.

    Subclasses only judge one defined value of one metric (`_judge`); the base skips undefined
    values, applies the robustness rule and collects the changes.
    """

    #: The detector's name in monitoring.props (`detector=`); also written in each detection.
    name: str = "Detector"

    def __init__(self, usecase: str, metrics: Sequence[str], robustness: int | Sequence[int]):
        if isinstance(metrics, str) or not metrics:
            raise ValueError("metrics: a detector needs a non-empty list of metric names")
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"metrics: duplicate names in {list(metrics)}")
        self._usecase = usecase
        self._metrics = tuple(metrics)
        self._runs = {
            metric: RunLength(usecase, self.name, metric, int(count))
            for metric, count in zip(
                self._metrics, per_metric(robustness, self._metrics, "robustness"), strict=True
            )
        }
        self._last_index: int | None = None

    @property
    def usecase(self) -> str:
        return self._usecase

    @property
    def metrics(self) -> tuple[str, ...]:
        return self._metrics

    @property
    def alert(self) -> bool:
        """True while any monitored metric has an ongoing detection."""
        return any(run.current is not None for run in self._runs.values())

    @property
    def wants_errors(self) -> bool:
        """True when the evaluator must call `observe_errors` (per-record errors) instead of
        `observe` (metric values); only River detectors built with input=errors do."""
        return False

    def robustness(self, metric: str) -> int:
        return self._runs[metric].robustness

    def ongoing(self) -> dict[str, Detection]:
        """The ongoing detection of each metric that has one."""
        return {m: run.current for m, run in self._runs.items() if run.current is not None}

    def observe(
        self, index: int, time_ms: int | None, values: Mapping[str, float | None]
    ) -> list[DetectionChange]:
        """Judge one evaluation: `values` maps metric names to this evaluation's values.

        A metric that is missing from `values` or undefined (None, NaN, ±inf) is skipped: it
        neither counts as a detection nor as a clean evaluation. An `index` not greater than the
        last one observed is ignored (an evaluation replayed after restoring a checkpoint), so
        observing is idempotent under at-least-once delivery.
        """
        if not self._accept(index):
            return []
        changes: list[DetectionChange] = []
        for metric in self._metrics:
            value = as_defined(values.get(metric))
            if value is not None:
                changes.extend(self._apply(metric, index, time_ms, self._judge(metric, value)))
        return changes

    def observe_errors(
        self,
        index: int,
        time_ms: int | None,
        errors: Mapping[str, Sequence[float | None]] | Sequence[float | None],
    ) -> list[DetectionChange]:
        """Per-record error streams; only River drift detectors take them (`wants_errors`)."""
        raise TypeError(f"{self.name} watches metric values: call observe(), not observe_errors()")

    # -- for subclasses -------------------------------------------------------------------------

    @abstractmethod
    def _judge(self, metric: str, value: float) -> Verdict:
        """Whether the condition holds for this defined value (may update the metric's state)."""

    def _after(self, metric: str, verdict: Verdict, change: DetectionChange | None) -> None:
        """Called after the robustness rule was applied, e.g. to reset or learn statistics."""
        return None

    def _accept(self, index: int) -> bool:
        if self._last_index is not None and index <= self._last_index:
            log.info(
                "evaluation already observed, ignored",
                extra={"usecase": self._usecase, "index": index, "last_index": self._last_index},
            )
            return False
        self._last_index = index
        return True

    def _apply(
        self, metric: str, index: int, time_ms: int | None, verdict: Verdict
    ) -> list[DetectionChange]:
        change = self._runs[metric].step(index, time_ms, verdict)
        self._after(metric, verdict, change)
        return [change] if change is not None else []

    @property
    def _evaluation(self) -> int:
        """The index of the evaluation being judged (for `_judge`, which locates changes)."""
        assert self._last_index is not None
        return self._last_index

    def _is_ongoing(self, metric: str) -> bool:
        return self._runs[metric].current is not None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(usecase={self._usecase!r}, metrics={list(self._metrics)})"
