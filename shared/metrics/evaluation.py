"""Three views of the same metrics: this batch, since the start, and the last N pairs.

A pair is (target, output), or (target, output, probabilities) when the output came with class
probabilities: metrics that score probabilities (`uses_probabilities`, e.g. ROC AUC) get the
third element as their output, the others the output.

The original computed metrics on each batch only. A batch view alone is noisy (a batch may hold
one record) and says nothing about the trend; the cumulative view is stable; the window view
follows drift. Each pair is added once to each view and, for the window, reverted when it leaves,
so a batch costs O(batch size x metrics) whatever the history.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from shared.metrics.base import Metric, Pair

log = logging.getLogger(__name__)


class View(StrEnum):
    """The views, in VIEWS' order (the API's `view` parameter)."""

    BATCH = "batch"
    CUMULATIVE = "cumulative"
    WINDOW = "window"


VIEWS = tuple(view.value for view in View)
DEFAULT_WINDOW = 1000
Results = dict[str, dict[str, float | None]]
#: view -> metric name -> its table (rows of named values), for metrics that have one
Tables = dict[str, dict[str, list[dict[str, float | int]]]]


class MetricSet:
    """Batch, cumulative and sliding-window copies of each metric.

    `window` is the number of pairs the window view covers: the last N pairs received, including
    pairs a metric skips (so every metric's window covers the same records). None disables the
    window view; metrics that cannot revert are left out of it, with a warning.
    """

    def __init__(self, metrics: Sequence[Metric], window: int | None = DEFAULT_WINDOW) -> None:
        names = [metric.name for metric in metrics]
        duplicated = sorted({name for name in names if names.count(name) > 1})
        if duplicated:
            raise ValueError(f"metric names must be distinct, repeated: {', '.join(duplicated)}")
        if window is not None and window < 1:
            raise ValueError(f"window must be >= 1 pair (or None), got {window}")
        self.templates = list(metrics)
        self.window_size = window
        for metric in self.templates:
            if window is not None and not metric.revertible:
                log.warning(
                    "metric %s has no revert(): left out of the sliding-window view", metric.name
                )
        self.reset()

    def reset(self) -> None:
        """Forget everything (for instance after the model was replaced)."""
        self.batch = self._copies()
        self.cumulative = self._copies()
        self.window: dict[str, Metric] = (
            self._copies(revertible_only=True) if self.window_size is not None else {}
        )
        # per pair in the window, what each window metric parsed from it (no parse on revert)
        self._recent: deque[list[Any]] = deque()

    def _copies(self, revertible_only: bool = False) -> dict[str, Metric]:
        return {
            metric.name: metric.clone()
            for metric in self.templates
            if metric.revertible or not revertible_only
        }

    @property
    def names(self) -> list[str]:
        return [metric.name for metric in self.templates]

    def update_batch(self, pairs: Iterable[Pair]) -> Results:
        """Score one batch of (target, output) pairs; the values of the three views after it.

        Each pair is parsed once per metric and the parsed item given to the three views.
        """
        batch = self._copies()
        windowed = self.window_size is not None
        # (parser, uses probabilities, batch copy, cumulative copy, window copy or None)
        lanes = [
            (
                template.parse,
                getattr(template, "uses_probabilities", False),
                batch[name],
                self.cumulative[name],
                self.window.get(name) if windowed else None,
            )
            for template in self.templates
            for name in (template.name,)
        ]
        window_metrics = [lane[4] for lane in lanes if lane[4] is not None]
        recent, size = self._recent, self.window_size or 0
        for pair in pairs:
            target, output = pair[0], pair[1]
            probabilities = pair[2] if len(pair) > 2 else None
            items = []
            for parse, scores_probabilities, in_batch, in_cumulative, in_window in lanes:
                item = parse(target, probabilities if scores_probabilities else output)
                in_batch.add(item)
                in_cumulative.add(item)
                if in_window is not None:
                    in_window.add(item)
                    items.append(item)
            if not windowed:
                continue
            recent.append(items)
            if len(recent) > size:
                for metric, item in zip(window_metrics, recent.popleft(), strict=True):
                    metric.remove(item)
        self.batch = batch
        return self.results()

    def results(self) -> Results:
        """{view: {metric name: value or None}} for the last batch and the running views."""
        return {
            "batch": _values(self.batch),
            "cumulative": _values(self.cumulative),
            "window": _values(self.window),
        }

    def tables(self) -> Tables:
        """{view: {metric name: rows}} for the metrics that have a table (calibration's
        reliability table), as they are after the last batch."""
        views = {"batch": self.batch, "cumulative": self.cumulative, "window": self.window}
        return {
            view: {
                name: metric.table()  # type: ignore[attr-defined]
                for name, metric in metrics.items()
                if callable(getattr(metric, "table", None))
            }
            for view, metrics in views.items()
        }

    def metric(self, view: str, name: str) -> Metric:
        """One view's metric object (e.g. for ShowOutputs.values())."""
        if view not in VIEWS:
            raise KeyError(f"no view {view!r}; views: {', '.join(VIEWS)}")
        metrics: dict[str, Metric] = getattr(self, view)
        return metrics[name]


def _values(metrics: dict[str, Metric]) -> dict[str, float | None]:
    return {name: metric.get() for name, metric in metrics.items()}
