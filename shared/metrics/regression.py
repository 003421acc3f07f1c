"""Regression metrics as running sums, so update and revert are O(1).

Each pair contributes a few terms (|error|, error², ...); the value is computed from the sums at
`get`. The sums are exact: every finite float is an integer multiple of 2^-1074, so terms are
added as Python integers (term × 2^1074). Reverting a pair therefore restores the state bit for
bit (no drift over a long stream, a window equals a fresh metric over its pairs, constant targets
give exactly zero variance), and each value is the correctly rounded mean of its float terms.
A pair whose target or output is not a finite number, or whose terms are not finite, is skipped.
Values are not rounded (the original rounded to 3 decimals).
"""

from __future__ import annotations

import math
from typing import Any

from shared.metrics.base import Metric, as_number

Terms = tuple[float, ...]
Fixed = tuple[int, ...]
FIXED_SHIFT = 1074  # 2^-1074 is the smallest positive float: every float is a multiple of it


def to_fixed(value: float) -> int:
    """value × 2^1074 as an exact integer (value finite)."""
    numerator, denominator = value.as_integer_ratio()  # denominator: a power of two
    return numerator << (FIXED_SHIFT - denominator.bit_length() + 1)


class SumMetric(Metric):
    """Keeps `width` exact sums of per-pair terms; subclasses define `terms` and `get`."""

    width = 1

    def _reset_state(self) -> None:
        self.sums = [0] * self.width

    def parse(self, target: Any, output: Any) -> Fixed | None:
        actual, predicted = as_number(target), as_number(output)
        if actual is None or predicted is None:
            return None
        return fixed_terms(self.terms(actual, predicted))

    def terms(self, target: float, output: float) -> Terms | None:
        raise NotImplementedError

    def accumulate(self, item: Fixed, sign: int) -> None:
        sums = self.sums
        for index, term in enumerate(item):
            sums[index] += term if sign > 0 else -term

    def mean(self, index: int = 0) -> float | None:
        """Mean of term `index` over the pairs, correctly rounded; None without pairs."""
        return self.sums[index] / (self.count << FIXED_SHIFT) if self.count > 0 else None


class MeanAbsoluteError(SumMetric):
    """mean |t - o|."""

    name = "mae"
    bigger_is_better = False

    def terms(self, target: float, output: float) -> Terms:
        return (abs(target - output),)

    def get(self) -> float | None:
        return self.mean()


class MeanSquaredError(SumMetric):
    """mean (t - o)²."""

    name = "mse"
    bigger_is_better = False

    def terms(self, target: float, output: float) -> Terms:
        error = target - output
        return (error * error,)

    def get(self) -> float | None:
        return self.mean()


class RootMeanSquaredError(MeanSquaredError):
    """sqrt(mean (t - o)²)."""

    name = "rmse"

    def get(self) -> float | None:
        mse = self.mean()
        return math.sqrt(mse) if mse is not None else None


class MeanAbsolutePercentageError(SumMetric):
    """mean |(t - o) / t| as a fraction (0.1 = 10 %); pairs with t = 0 are skipped."""

    name = "mape"
    bigger_is_better = False

    def terms(self, target: float, output: float) -> Terms | None:
        if target == 0:
            return None
        return (abs((target - output) / target),)

    def get(self) -> float | None:
        return self.mean()


class RegressionAccuracy(MeanAbsolutePercentageError):
    """100 - MAPE in percent: the intent of the original AccuracyMetricRegression (see docs)."""

    name = "regression_accuracy"
    bigger_is_better = True

    def get(self) -> float | None:
        mape = self.mean()
        return 100.0 * (1.0 - mape) if mape is not None else None


class RSquared(SumMetric):
    """1 - Σ(t-o)² / Σ(t-mean t)²; None with fewer than 2 pairs or constant targets.

    Keeps the exact sums of t, t² and (t-o)² (t, and t-o as rounded once, as exact integers):
    n·Σ(t-mean)² = n·Σt² - (Σt)² is then computed without cancellation, and is 0 exactly when
    every target is the same.
    """

    name = "r2"
    width = 3

    def terms(self, target: float, output: float) -> Terms:
        return (target, target - output)

    def parse(self, target: Any, output: Any) -> Fixed | None:
        fixed = super().parse(target, output)
        if fixed is None:
            return None
        target_fixed, error_fixed = fixed
        return (target_fixed, target_fixed * target_fixed, error_fixed * error_fixed)

    def get(self) -> float | None:
        n = self.count
        if n < 2:
            return None
        sum_t, sum_t2, residual = self.sums
        spread = n * sum_t2 - sum_t * sum_t  # n·Σ(t - mean)², scaled like the residual
        if spread <= 0:
            return None
        return 1.0 - (n * residual) / spread


class CMAPSSScore(SumMetric):
    """Mean asymmetric C-MAPSS score: d = o - t; e^(-d/13) - 1 if d < 0 else e^(d/10) - 1.

    Late predictions (d > 0) cost more than early ones. The original summed over the batch,
    so its value grew with the batch size; the mean does not.
    """

    name = "cmapss_score"
    bigger_is_better = False

    def terms(self, target: float, output: float) -> Terms | None:
        d = output - target
        try:
            score = math.exp(-d / 13.0) - 1.0 if d < 0 else math.exp(d / 10.0) - 1.0
        except OverflowError:
            return None
        return (score,)

    def get(self) -> float | None:
        return self.mean()


def finite_terms(terms: Terms | None) -> Terms | None:
    if terms is None or not all(math.isfinite(term) for term in terms):
        return None
    return terms


def fixed_terms(terms: Terms | None) -> Fixed | None:
    """The terms as exact integers, or None when absent or not all finite."""
    finite = finite_terms(terms)
    return None if finite is None else tuple(to_fixed(term) for term in finite)
