"""Two-sided CUSUM detectors (Page 1954) on standardised metric values.

For each defined value v of a metric, with a reference mean μ and standard deviation σ:

    z  = (v − μ) / σ
    S⁺ = min(2h, max(0, S⁺ + z − k))      S⁻ = min(2h, max(0, S⁻ − z − k))

k is the drift (allowance, `cusum.drift`) and h the threshold (`cusum.threshold`, or
`cusum.factor`), both in units of σ, so alerts do not depend on the metric's scale. An evaluation
is a detection while S⁺ > h or S⁻ > h; the shared robustness rule starts and stops the alert.

Why S is clamped at 2h instead of restarting from 0 when an alert starts (the textbook restart
after a signal): a restarted S spends ⌈h/(δ−k)⌉−1 evaluations under h while a persistent shift
δ rebuilds it, and those clean evaluations would stop the alert (with robustness 1, or any
robustness up to that gap) only for it to start again: the original's flicker. Without the clamp,
S grows without bound during a long episode and the alert outlives the recovery by (S − h)/k
evaluations. With it, a persistent shift keeps S between h and 2h (no flicker), and after the
metric recovers S falls below h in about h/k evaluations (k > 0 needed: with k = 0 in-control S
is a random walk, and false alarms come every ~20 evaluations at h = 5). When the alert stops,
S⁺ and S⁻ restart from 0 (the textbook restart), so S hovering near h at the end of an episode
does not start a new one at once.

Where the change began (`Detection.change_start`): the first evaluation of the excursion that
crossed h, i.e. the one after S was last at zero (Page's own change-point estimate).

`CuSumDetector` estimates μ, σ online; `CuSumDetectorOnLine` takes them from monitoring.props.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from shared.monitoring.base import Detector, per_metric
from shared.monitoring.detection import ChangeKind, DetectionChange
from shared.monitoring.robustness import Verdict
from shared.monitoring.stats import RunningStats

__all__ = ["CuSumDetector", "CuSumDetectorOnLine"]

#: S⁺ and S⁻ are clamped to [0, _CAP·h]; see the module docstring for why.
_CAP = 2.0


@dataclass(slots=True)
class _Sums:
    pos: float = 0.0
    neg: float = 0.0
    pos_rise: int | None = None  # the first evaluation since S⁺ was last zero
    neg_rise: int | None = None


def _rise(statistic: float, rise: int | None, index: int) -> int | None:
    """The first evaluation of the current excursion of S above zero (None at zero)."""
    if statistic == 0:
        return None
    return index if rise is None else rise


class _Cusum(Detector):
    """The CUSUM recursion and its alert rule; subclasses provide the reference (μ, σ)."""

    def __init__(
        self,
        usecase: str,
        metrics: Sequence[str],
        drift: float | Sequence[float],
        thresholds: Sequence[float] | None,
        factor: float,
        robustness: int | Sequence[int],
        keys: str,
    ):
        super().__init__(usecase, metrics, robustness)
        drifts = [float(k) for k in per_metric(drift, self.metrics, f"{keys}.drift")]
        if any(k < 0 for k in drifts):
            raise ValueError(f"{keys}.drift: the allowance k must be >= 0, got {drifts}")
        if thresholds is None:
            if factor <= 0:
                raise ValueError(f"{keys}.factor must be > 0, got {factor}")
            limits = [float(factor)] * len(self.metrics)
        else:
            given: float | Sequence[float] = thresholds  # per_metric's T: float
            limits = [float(h) for h in per_metric(given, self.metrics, f"{keys}.threshold")]
            if any(h <= 0 for h in limits):
                raise ValueError(f"{keys}.threshold must be > 0, got {limits}")
        self._drift = dict(zip(self.metrics, drifts, strict=True))
        self._limit = dict(zip(self.metrics, limits, strict=True))
        self._sums = {metric: _Sums() for metric in self.metrics}
        self._pending_value = 0.0  # the value being judged, for `_learn` once the rule applied

    def drift(self, metric: str) -> float:
        return self._drift[metric]

    def threshold(self, metric: str) -> float:
        """h, in units of the reference σ."""
        return self._limit[metric]

    @abstractmethod
    def _reference(self, metric: str) -> tuple[float, float] | None:
        """(μ, σ > 0) to standardise with; None while not known yet (warm-up)."""

    def _learn(self, metric: str, value: float) -> None:
        """Take a clean value into the reference (only CuSumDetector learns)."""

    def _judge(self, metric: str, value: float) -> Verdict:
        sums = self._sums[metric]
        reference = self._reference(metric)
        self._pending_value = value
        if reference is None:
            return Verdict(False, 0.0, 0.0)
        mean, sigma = reference
        z = (value - mean) / sigma
        k, h = self._drift[metric], self._limit[metric]
        cap = _CAP * h
        sums.pos = min(cap, max(0.0, sums.pos + z - k))
        sums.neg = min(cap, max(0.0, sums.neg - z - k))
        sums.pos_rise = _rise(sums.pos, sums.pos_rise, self._evaluation)
        sums.neg_rise = _rise(sums.neg, sums.neg_rise, self._evaluation)
        statistic = max(sums.pos, sums.neg)
        rise = sums.pos_rise if sums.pos >= sums.neg else sums.neg_rise
        return Verdict(statistic > h, statistic, statistic, origin=rise)

    def _after(self, metric: str, verdict: Verdict, change: DetectionChange | None) -> None:
        if change is not None and change.kind is ChangeKind.STOPPED:
            self._sums[metric] = _Sums()  # the episode is over: restart, as after a signal
        if not verdict.detected and not self._is_ongoing(metric):
            self._learn(metric, self._pending_value)


class CuSumDetector(_Cusum):
    """CUSUM with a reference estimated online: μ and σ are the running mean and sample standard
    deviation (Welford) of the metric's clean values.

    Scoring starts once `warmup` values were seen (before that, evaluations are clean). A value is
    scored first and learnt afterwards, and only when it is clean and no detection is ongoing, so
    neither the change being detected nor an ongoing episode leaks into its own reference. The
    flip side: a permanent change keeps the alert on until the metric returns to its old level.
    σ is floored at `min_std` so a constant history (accuracy 1.0 everywhere) stays usable.
    """

    name = "CuSumDetector"

    def __init__(
        self,
        usecase: str,
        metrics: Sequence[str],
        drift: float | Sequence[float],
        thresholds: Sequence[float] | None = None,
        factor: float = 5.0,
        robustness: int | Sequence[int] = 1,
        warmup: int = 10,
        min_std: float = 1e-9,
    ):
        super().__init__(usecase, metrics, drift, thresholds, factor, robustness, "cusum")
        if warmup < 2:
            raise ValueError(f"warmup must be >= 2 (a standard deviation needs 2), got {warmup}")
        if min_std <= 0:
            raise ValueError(f"min_std must be > 0, got {min_std}")
        self._warmup = warmup
        self._min_std = min_std
        self._stats = {metric: RunningStats() for metric in self.metrics}

    def reference(self, metric: str) -> RunningStats:
        return self._stats[metric]

    def _reference(self, metric: str) -> tuple[float, float] | None:
        stats = self._stats[metric]
        if stats.n < self._warmup:
            return None
        return stats.mean, max(stats.std, self._min_std)

    def _learn(self, metric: str, value: float) -> None:
        self._stats[metric].add(value)


class CuSumDetectorOnLine(_Cusum):
    """CUSUM against a fixed reference given per metric (`cusumonline.average`,
    `cusumonline.std`), accumulating S⁺/S⁻ across evaluations.

    Without `std`, σ = 1: drift and threshold are then in the metric's own units.
    """

    name = "CuSumDetectorOnLine"

    def __init__(
        self,
        usecase: str,
        metrics: Sequence[str],
        average: float | Sequence[float],
        drift: float | Sequence[float],
        std: float | Sequence[float] | None = None,
        thresholds: Sequence[float] | None = None,
        factor: float = 5.0,
        robustness: int | Sequence[int] = 1,
    ):
        super().__init__(usecase, metrics, drift, thresholds, factor, robustness, "cusumonline")
        means = [float(m) for m in per_metric(average, self.metrics, "cusumonline.average")]
        sigmas = (
            [1.0] * len(self.metrics)
            if std is None
            else [float(s) for s in per_metric(std, self.metrics, "cusumonline.std")]
        )
        if any(not (s > 0 and math.isfinite(s)) for s in sigmas):
            raise ValueError(f"cusumonline.std must be > 0, got {sigmas}")
        self._fixed = {
            metric: (mean, sigma)
            for metric, mean, sigma in zip(self.metrics, means, sigmas, strict=True)
        }

    def _reference(self, metric: str) -> tuple[float, float] | None:
        return self._fixed[metric]
