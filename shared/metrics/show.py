"""Pseudo-metrics that pass values through to the dashboard (target vs estimated plots).

The original returned one value per record and only element 0 reached Elasticsearch. Here
`get()` is the LAST numeric value of the view (the most recent pair) and `values()` the values
of the view, oldest first (at most `keep` of them: the cumulative view would otherwise grow
forever). Only numeric values are shown; a pair also needs the other side present (the general
skipping rule) and, for ShowOutputs, the prediction is element 0 of the output.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from shared.metrics.base import Metric, as_number, first, is_missing


class ShowMetric(Metric):
    """Keeps the last `keep` values. Revert drops the oldest one: it assumes FIFO reverts,
    which is what the sliding window does."""

    def __init__(self, keep: int = 1000) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.keep = keep
        super().__init__()

    def _reset_state(self) -> None:
        self._values: deque[float] = deque(maxlen=self.keep)

    def pick(self, target: Any, output: Any) -> Any:
        raise NotImplementedError

    def parse(self, target: Any, output: Any) -> float | None:
        if is_missing(first(target)) or is_missing(first(output)):
            return None
        return as_number(self.pick(target, output))

    def accumulate(self, item: float, sign: int) -> None:
        if sign > 0:
            self._values.append(item)
        elif len(self._values) >= self.count:  # the oldest pair's value is still kept
            self._values.popleft()

    def get(self) -> float | None:
        return self._values[-1] if self._values else None

    def values(self) -> list[float]:
        return list(self._values)


class ShowOutputs(ShowMetric):
    """The model's (point) prediction."""

    name = "estimated"

    def pick(self, target: Any, output: Any) -> Any:
        return first(output)


class ShowTargets(ShowMetric):
    """The true value."""

    name = "target"

    def pick(self, target: Any, output: Any) -> Any:
        return first(target)
