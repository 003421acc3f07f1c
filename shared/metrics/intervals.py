"""Prediction-interval metrics: the output is [prediction, lower, upper].

Pairs whose output is not three numbers with lower <= upper, or whose target is not a number,
are skipped. Widths are normalised by the range (max - min) of the targets the metric has seen
since it was built, shared by its batch, cumulative and window copies, instead of the
original's constant taken from one data set; `target_range` fixes it when known.
"""

from __future__ import annotations

import math
from typing import Any

from shared.metrics.base import as_interval, as_number
from shared.metrics.regression import Fixed, SumMetric, Terms, fixed_terms


class TargetRange:
    """Smallest and largest target seen; only grows (a range cannot be reverted in O(1))."""

    def __init__(self) -> None:
        self.low = math.inf
        self.high = -math.inf

    def observe(self, target: float) -> None:
        if target < self.low:
            self.low = target
        if target > self.high:
            self.high = target

    def get(self) -> float | None:
        spread = self.high - self.low
        return spread if math.isfinite(spread) and spread > 0 else None


class IntervalMetric(SumMetric):
    """Parses (target, [prediction, lower, upper]) into per-pair terms."""

    def __init__(self, target_range: float | None = None) -> None:
        if target_range is not None and not target_range > 0:
            raise ValueError(f"target_range must be > 0, got {target_range}")
        self.target_range = target_range
        self.seen = TargetRange()  # shared by clones: "the targets seen" across views
        super().__init__()

    def parse(self, target: Any, output: Any) -> Fixed | None:
        actual, interval = as_number(target), as_interval(output)
        if actual is None or interval is None:
            return None
        _, lower, upper = interval
        terms = fixed_terms(self.interval_terms(actual, lower, upper))
        if terms is not None:
            self.seen.observe(actual)
        return terms

    def interval_terms(self, target: float, lower: float, upper: float) -> Terms:
        raise NotImplementedError

    def range(self) -> float | None:
        return self.target_range if self.target_range is not None else self.seen.get()


class CoverageProbability(IntervalMetric):
    """PICP: fraction of targets inside [lower, upper]."""

    name = "picp"

    def interval_terms(self, target: float, lower: float, upper: float) -> Terms:
        return (1.0 if lower <= target <= upper else 0.0,)

    def get(self) -> float | None:
        return self.mean()


class AverageCoverageError(CoverageProbability):
    """ACE = PICP - PINC, PINC the nominal coverage (0.9: the original's q = 0.05)."""

    name = "ace"

    def __init__(self, nominal: float = 0.9, target_range: float | None = None) -> None:
        if not 0 < nominal < 1:
            raise ValueError(f"nominal coverage must be in (0, 1), got {nominal}")
        self.nominal = nominal
        super().__init__(target_range)

    def get(self) -> float | None:
        picp = self.mean()
        return picp - self.nominal if picp is not None else None


class NormalizedAverageWidth(IntervalMetric):
    """PINAW = mean(upper - lower) / range of the targets; None while that range is 0."""

    name = "pinaw"
    bigger_is_better = False

    def interval_terms(self, target: float, lower: float, upper: float) -> Terms:
        return (upper - lower,)

    def get(self) -> float | None:
        width, spread = self.mean(), self.range()
        return width / spread if width is not None and spread is not None else None


class NormalizedRootMeanSquareWidth(IntervalMetric):
    """PINRW = sqrt(mean (upper - lower)²) / range of the targets; None while that range is 0."""

    name = "pinrw"
    bigger_is_better = False

    def interval_terms(self, target: float, lower: float, upper: float) -> Terms:
        width = upper - lower
        return (width * width,)

    def get(self) -> float | None:
        square, spread = self.mean(), self.range()
        if square is None or spread is None:
            return None
        return math.sqrt(square) / spread
