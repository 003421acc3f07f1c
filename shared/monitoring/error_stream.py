"""Per-record model errors, the input of River drift detectors with `stream="errors"`.

A drift detector on the error stream sees a model degrade record by record, long before a
per-batch metric moves, and needs no threshold in metric units.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

__all__ = ["record_error", "record_errors"]


def record_error(target: object, prediction: object, regression: bool) -> float | None:
    """0/1 misclassification, or the absolute error for regression; None when undefined.

    Classification compares labels as strings (the original's string equality, so 1 and "1"
    agree); regression needs both sides numeric and finite. A missing target or prediction is
    undefined, not an error.
    """
    if target is None or prediction is None:
        return None
    if not regression:
        return 0.0 if str(target) == str(prediction) else 1.0
    try:
        error = abs(float(target) - float(prediction))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return error if math.isfinite(error) else None


def record_errors(
    targets: Iterable[object], predictions: Iterable[object], regression: bool
) -> list[float | None]:
    """`record_error` of each (target, prediction) pair, in order."""
    return [record_error(t, p, regression) for t, p in zip(targets, predictions, strict=True)]
