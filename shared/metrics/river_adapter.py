"""Any River metric (`river.metrics.<ClassName>`) behind the metric contract.

River metrics already have update/revert/get; this adapter converts the pair to what each kind
expects (numbers for regression, labels for multi-class, booleans "is positive" for binary
metrics: River's own pos_val is broken for non-boolean labels in 0.26), and maps River's
0.0-for-undefined to None where the state shows it: no data, precision with nothing
predicted positive, recall with no positive target, F1/Jaccard with no positive at all,
R2 with fewer than 2 pairs or constant targets (River raises, returns 0.0 or rounding
noise). Other River metrics keep River's value in their undefined cases (often 0.0; see
docs/metrics.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.metrics.base import Metric, as_label, as_number, finite_or_none, snake_case

# River metrics that are not one number.
NOT_SCALAR = frozenset({"ConfusionMatrix", "ClassificationReport"})


class RiverMetric(Metric):
    """Wraps one River metric instance; clone() starts from a fresh River clone."""

    def __init__(self, metric: Any, positive: str = "1") -> None:
        from river.metrics import base

        self._template = metric.clone()
        self.river_name = type(metric).__name__
        self.name = snake_case(self.river_name)
        self.positive = as_label(positive) or "1"
        self.requires_labels = bool(getattr(metric, "requires_labels", False))
        self.bigger_is_better = bool(getattr(metric, "bigger_is_better", True))
        if isinstance(metric, base.BinaryMetric):
            self.kind = "binary"
        elif isinstance(metric, base.ClassificationMetric):
            self.kind = "multiclass"
        elif isinstance(metric, base.RegressionMetric):
            self.kind = "regression"
        else:
            self.kind = "other"
        super().__init__()

    def _reset_state(self) -> None:
        self.metric = self._template.clone()
        self.scale = 0.0  # largest |target| since empty: the size of River's rounding drift

    def parse(self, target: Any, output: Any) -> tuple[Any, Any] | None:
        if self.kind == "regression":
            pair: tuple[Any, Any] = (as_number(target), as_number(output))
        elif self.kind == "binary":
            actual = as_label(target)
            pair = (
                actual == self.positive if actual is not None else None,
                self._binary_output(output),
            )
        elif self.kind == "multiclass" and not self.requires_labels:
            pair = (as_label(target), _probabilities(output))
        elif self.kind == "multiclass":
            pair = (as_label(target), as_label(output))
        else:
            pair = (as_number(target), as_number(output))
        return None if pair[0] is None or pair[1] is None else pair

    def _binary_output(self, output: Any) -> Any:
        if self.requires_labels:
            predicted = as_label(output)
            return predicted == self.positive if predicted is not None else None
        if isinstance(output, Mapping):  # class probabilities: P(positive)
            probabilities = _probabilities(output)
            return probabilities.get(self.positive, 0.0) if probabilities else None
        return as_number(output)  # a score, or a 0/1 label

    def accumulate(self, item: tuple[Any, Any], sign: int) -> None:
        if sign > 0:
            if self.kind == "regression":
                self.scale = max(self.scale, abs(item[0]))
            self.metric.update(*item)
        else:
            self.metric.revert(*item)

    def get(self) -> float | None:
        if self.count == 0 or self._undefined():
            return None
        try:
            value = self.metric.get()
        except (ZeroDivisionError, ValueError):
            return None
        if self.kind == "regression" and self.river_name != "R2":
            value = max(0.0, value)  # error measures: undo rounding left by River's revert
        return finite_or_none(value)

    def _undefined(self) -> bool:
        cm = getattr(self.metric, "cm", None)
        name = self.river_name
        if self.kind == "binary" and cm is not None:
            predicted: float = cm.sum_col.get(True, 0)
            actual: float = cm.sum_row.get(True, 0)
            if name == "Precision":
                return predicted <= 0
            if name == "Recall":
                return actual <= 0
            if name in ("F1", "FBeta", "Jaccard"):
                return predicted <= 0 and actual <= 0
        if name == "R2":
            return self.count < 2 or _constant(getattr(self.metric, "_y_var", None), self.scale)
        return False


def _constant(variance: Any, scale: float) -> bool:
    """Constant targets, up to the drift River's float revert leaves in the variance (River's
    R2 then gives 0.0 or noise such as -4e11)."""
    try:
        spread: float = variance.get()
    except (AttributeError, ZeroDivisionError):
        return False
    return spread <= 1e-12 * max(scale * scale, 1e-300)


def _probabilities(output: Any) -> dict[str, float] | None:
    """{label: probability} with labels normalised like the targets."""
    if not isinstance(output, Mapping):
        return None
    probabilities: dict[str, float] = {}
    for key, value in output.items():
        label, number = as_label(key), as_number(value)
        if label is None or number is None:
            return None
        probabilities[label] = number
    return probabilities or None
