"""The metric contract the evaluator relies on, and the value parsing every metric shares.

A metric sees one (target, output) pair at a time. `update` adds it, `revert` removes it again
(the sliding window reverts the pair that leaves it), `get` gives the value or None when it is
undefined (no data, 0/0): never a made-up 0, unlike the original's `Math.round(NaN) = 0`.
A pair the metric cannot score (missing target or output, "nan", not a number where one is
needed) is skipped and counted in `skipped`; the same pair is skipped again on revert, so
update/revert stay symmetric.
"""

from __future__ import annotations

import copy
import math
import numbers
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

#: (target, output), or (target, output, class probabilities) (see MetricSet)
Pair = tuple[Any, ...]

# Texts that mean "no value": the original skips outputs equal to "nan"; empty is no value too.
_MISSING_TEXT = frozenset({"", "nan"})
_NAME_CHARS = re.compile(r"[^a-z0-9_]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


class Metric(ABC):
    """Base of every metric: counts, skipping and clone(); subclasses parse and accumulate.

    Subclasses set their parameters, then call `super().__init__()`, and implement:
    `parse(target, output)` -> an item or None (skip), `accumulate(item, sign)` (sign +1 adds,
    -1 removes; returning False means "could not use it", counted as skipped), `get()`, and
    `_reset_state()` which must assign fresh objects (clone() shares the parameters through a
    shallow copy, then resets the state). `parse` must not depend on the accumulated state:
    MetricSet parses a pair once and hands the item to the three views.
    """

    name: str = "metric"
    spec: str = ""  # the name it was built from (evaluation.metrics), for messages
    revertible: bool = True  # False: the sliding-window view leaves it out
    # False for error measures (mae, rmse...): a challenger beats the champion by a lower value
    bigger_is_better: bool = True
    # True: when the last pair leaves, start again from an exact empty state instead of
    # subtracting (removes rounding drift; some River metrics cannot revert their last pair).
    reset_when_empty: bool = True
    # True: the metric scores class probabilities; MetricSet gives it a pair's probabilities
    # (its third element) as the output (shared/metrics/probabilistic.py)
    uses_probabilities: bool = False

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0  # pairs currently included
        self.skipped = 0  # pairs currently skipped
        self._reset_state()

    def clone(self) -> Metric:
        """A fresh, empty metric with the same parameters and name (one per batch)."""
        fresh = copy.copy(self)
        fresh.reset()
        return fresh

    def update(self, target: Any, output: Any) -> None:
        self.add(self.parse(target, output))

    def revert(self, target: Any, output: Any) -> None:
        """Remove a pair given to `update` before (the caller guarantees it was)."""
        self.remove(self.parse(target, output))

    def add(self, item: Any) -> None:
        """`update` with the pair already parsed (MetricSet parses once for its three views)."""
        if item is None or self.accumulate(item, 1) is False:
            self.skipped += 1
            return
        self.count += 1

    def remove(self, item: Any) -> None:
        """`revert` with the pair already parsed."""
        if item is None:
            self.skipped -= 1
            return
        if self.reset_when_empty and self.count == 1:
            skipped = self.skipped
            self.reset()
            self.skipped = skipped
            return
        if self.accumulate(item, -1) is False:
            self.skipped -= 1
            return
        self.count -= 1

    @abstractmethod
    def parse(self, target: Any, output: Any) -> Any:
        """What this metric needs from the pair, or None to skip it."""

    @abstractmethod
    def accumulate(self, item: Any, sign: int) -> bool | None:
        """Add (sign=1) or remove (sign=-1) a parsed pair."""

    @abstractmethod
    def get(self) -> float | None:
        """The current value; None when undefined."""

    @abstractmethod
    def _reset_state(self) -> None:
        """Assign a fresh empty state."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}={self.get()} n={self.count}>"


def is_missing(value: Any) -> bool:
    """None, NaN, an empty sequence, or a text that is empty or "nan" (any case)."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() in _MISSING_TEXT
    if isinstance(value, float):
        return math.isnan(value)
    if _is_sequence(value):
        return len(value) == 0
    return False


def first(value: Any) -> Any:
    """Element 0 of a sequence (records carry lists of targets and outputs), else the value."""
    if _is_sequence(value):
        return value[0] if len(value) else None
    return value


def as_number(value: Any) -> float | None:
    """A finite float from a number or a numeric text; None otherwise."""
    kind = type(value)
    if kind is float:
        return value if value - value == 0 else None  # NaN and ±inf fail the test
    if kind is str:
        try:
            number = float(value)  # float() ignores surrounding whitespace itself
        except ValueError:
            return None
        return number if number - number == 0 else None
    value = first(value)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            return None
    elif isinstance(value, numbers.Real):
        number = float(value)
    else:
        return None
    return number if math.isfinite(number) else None


def as_label(value: Any) -> str | None:
    """A class label as text, so that targets (texts) and outputs (any type) compare equal.

    Numeric labels are compared as numbers: 1, 1.0, True, "1" and "1.0" are all "1". A dict of
    class probabilities gives its most probable class.
    """
    if type(value) is str:  # the common case, cached: labels repeat
        label = _LABELS.get(value, _UNSEEN)
        if label is _UNSEEN:
            if len(_LABELS) >= _LABELS_MAX:
                _LABELS.clear()
            label = _LABELS[value] = _label(value)
        return label  # type: ignore[return-value]
    return _label(value)


_LABELS: dict[str, str | None] = {}
_LABELS_MAX = 100_000
_UNSEEN = object()


def _label(value: Any) -> str | None:
    value = first(value)
    if isinstance(value, Mapping):
        value = max(value, key=value.__getitem__) if value else None
    if value is None:
        return None
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        number = float(value)
        if math.isnan(number):
            return None
        return str(int(number)) if number.is_integer() else str(number)
    text = str(value).strip()
    if text.lower() in _MISSING_TEXT:
        return None
    try:
        number = float(text)
    except ValueError:
        return text
    if math.isfinite(number) and number.is_integer():
        return str(int(number))
    return str(number) if math.isfinite(number) else text


def as_interval(value: Any) -> tuple[float, float, float] | None:
    """(prediction, lower, upper) from a 3-element output; None if malformed or lower > upper."""
    if not _is_sequence(value) or len(value) != 3:
        return None
    prediction, lower, upper = [as_number(part) for part in value]
    if prediction is None or lower is None or upper is None:
        return None
    if lower > upper:
        return None
    return prediction, lower, upper


def snake_case(class_name: str) -> str:
    """`MacroF1` -> `macro_f1`, `CohenKappa` -> `cohen_kappa`, `ROCAUC` -> `rocauc`."""
    return clean_name(_CAMEL.sub("_", class_name))


def clean_name(text: str) -> str:
    """A field-friendly name: lowercase letters, digits and single underscores."""
    name = _NAME_CHARS.sub("_", text.strip().lower()).strip("_")
    name = re.sub(r"_+", "_", name)
    if not name:
        return "metric"
    return f"m_{name}" if name[0].isdigit() else name


def finite_or_none(value: Any) -> float | None:
    """float(value) when it is a finite real number, else None."""
    if value is None or not isinstance(value, numbers.Real):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _is_sequence(value: Any) -> bool:
    if isinstance(value, (list, tuple)):
        return True
    if isinstance(value, (str, bytes, Mapping)):
        return False
    try:
        len(value)
    except TypeError:
        return False
    return hasattr(value, "__getitem__")
