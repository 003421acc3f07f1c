"""Metrics written by users in their use-case folder (`usecases/<name>/metrics.py`).

A user metric is a class, constructed without arguments, with `update(target, output)` and
`get()`, and optionally `revert(target, output)` (without it the sliding-window view leaves
the metric out) and a `name` attribute (else the snake_case class name). It receives the pair
as given (target usually a text, output whatever the model returned) once pairs with a
missing target or output are skipped. Its errors are logged and the pair counted as skipped,
so one bad record does not stop the evaluation. A subclass of shared.metrics.Metric is used
as is; a River metric class is wrapped like the River metrics.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any

from shared.errors import StreamerError
from shared.metrics.base import Metric, clean_name, finite_or_none, first, is_missing, snake_case
from shared.usercode import load_usecase_module

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.py"


def load_metrics_module(path: Path) -> ModuleType:
    """Import metrics.py once per process, under a name derived from its path."""
    return load_usecase_module(path)


def find_user_metric(folder: Path | None, class_name: str) -> tuple[Any, Path] | None:
    """The attribute `class_name` of the folder's metrics.py, with the file; None if absent."""
    if folder is None or not class_name.isidentifier():
        return None
    path = folder / METRICS_FILE
    if not path.is_file():
        return None
    found = getattr(load_metrics_module(path), class_name, None)
    return (found, path.resolve()) if found is not None else None


def user_metric_names(folder: Path | None) -> list[str]:
    """Public class names of the folder's metrics.py (for "did you mean" hints)."""
    if folder is None or not (folder / METRICS_FILE).is_file():
        return []
    try:
        module = load_metrics_module(folder / METRICS_FILE)
    except StreamerError:
        return []
    return [name for name, value in vars(module).items() if isinstance(value, type)]


class UserMetric(Metric):
    """Delegates to a fresh instance of the user's class per clone."""

    reset_when_empty = False  # the user's revert is trusted to bring the state back

    def __init__(self, factory: Any, path: Path, label: str) -> None:
        self.factory = factory
        self.path = path
        self.label = label
        probe = self._construct()
        for method in ("update", "get"):
            if not callable(getattr(probe, method, None)):
                raise StreamerError(f"{path}: {label} has no {method}() method: not a metric")
        self.revertible = callable(getattr(probe, "revert", None))
        self.bigger_is_better = bool(getattr(probe, "bigger_is_better", True))
        self.uses_probabilities = bool(getattr(probe, "uses_probabilities", False))
        given = getattr(probe, "name", None)
        self.name = clean_name(given) if isinstance(given, str) and given else snake_case(label)
        self._errors = [0]  # shared by clones: log the 1st, 2nd, 4th, 8th... error
        super().__init__()

    def _construct(self) -> Any:
        try:
            return self.factory()
        except Exception as error:
            raise StreamerError(
                f"{self.path}: {self.label}() failed: {type(error).__name__}: {error} "
                "(a metric class is constructed without arguments)"
            ) from error

    def _reset_state(self) -> None:
        self.obj = self._construct()

    def parse(self, target: Any, output: Any) -> tuple[Any, Any] | None:
        if is_missing(first(target)) or is_missing(first(output)):
            return None
        return target, output

    def accumulate(self, item: tuple[Any, Any], sign: int) -> bool:
        method = self.obj.update if sign > 0 else self.obj.revert
        try:
            method(*item)
        except Exception as error:
            self._report(method.__name__, error)
            return False
        return True

    def get(self) -> float | None:
        try:
            value = self.obj.get()
        except Exception as error:
            self._report("get", error)
            return None
        return finite_or_none(value)

    def _report(self, method: str, error: Exception) -> None:
        self._errors[0] += 1
        count = self._errors[0]
        if count & (count - 1) == 0 or count % 1000 == 0:  # 1, 2, 4, 8, ... then every 1000
            log.warning(
                "user metric %s (%s) %s() failed (%d times so far): %s: %s",
                self.label,
                self.path,
                method,
                count,
                type(error).__name__,
                error,
            )
