"""ThresholdDetector: a metric is abnormal while it is beyond a fixed threshold."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from shared.monitoring.base import Detector, per_metric
from shared.monitoring.robustness import Verdict

__all__ = ["ThresholdDetector"]


class _Rule(NamedTuple):
    threshold: float
    alert_if_greater: bool
    absolute: bool


class ThresholdDetector(Detector):
    """Detects when a metric (its absolute value with `absolute`) is strictly greater than its
    threshold (`alert_if_greater`), or strictly lower (otherwise).

    Each parameter takes one value for every metric or one per metric (monitoring.props'
    `threshold.threshold`, `threshold.threshold.alert-if-greater`, `threshold.threshold.abs`,
    `threshold.robustness`). The magnitude of a detection is the compared value, the most
    extreme one while it is ongoing (highest when alerting if greater, else lowest).
    """

    name = "ThresholdDetector"

    def __init__(
        self,
        usecase: str,
        metrics: Sequence[str],
        thresholds: float | Sequence[float],
        alert_if_greater: bool | Sequence[bool] = True,
        absolute: bool | Sequence[bool] = False,
        robustness: int | Sequence[int] = 1,
    ):
        super().__init__(usecase, metrics, robustness)
        rules = zip(
            per_metric(thresholds, self.metrics, "threshold.threshold"),
            per_metric(alert_if_greater, self.metrics, "threshold.threshold.alert-if-greater"),
            per_metric(absolute, self.metrics, "threshold.threshold.abs"),
            strict=True,
        )
        self._rules = {
            metric: _Rule(float(threshold), bool(greater), bool(absolute_))
            for metric, (threshold, greater, absolute_) in zip(self.metrics, rules, strict=True)
        }

    def _judge(self, metric: str, value: float) -> Verdict:
        rule = self._rules[metric]
        compared = abs(value) if rule.absolute else value
        if rule.alert_if_greater:
            return Verdict(compared > rule.threshold, compared, compared)
        return Verdict(compared < rule.threshold, compared, -compared)
