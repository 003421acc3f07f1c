"""Records: one parsed line of a stream, as the original STREAMER's TimeRecord.

A use case's record class turns a raw line into typed `values` (numbers as floats, categories
as strings), `targets` and an optional event time. A line it cannot parse raises RecordError
with the reason; the launcher sends such lines to the dead-letter topic and goes on.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import ClassVar, Self

from shared.errors import StreamerError

Value = float | str


class RecordError(StreamerError):
    """A line does not fit its record class; the message is the reason stored in the DLQ."""


class TimeRecord:
    """Base record: `fill(line)` populates values, targets and (optionally) the timestamp.

    Subclasses set `separator`, `headers` (value names in column order), `categorical` (names
    kept as strings) and `target_columns` (names moved to `targets`).
    """

    separator: ClassVar[str] = ","
    headers: ClassVar[tuple[str, ...]] = ()
    categorical: ClassVar[frozenset[str]] = frozenset()
    target_columns: ClassVar[tuple[str, ...]] = ()

    __slots__ = ("outputs", "source", "targets", "timestamp", "values")

    def __init__(self, source: str = "") -> None:
        self.source = source
        self.timestamp: datetime | None = None
        self.values: dict[str, Value] = {}
        self.targets: list[str] = []
        self.outputs: list[object] = []

    @classmethod
    def parse(cls, line: str, source: str = "") -> Self:
        record = cls(source)
        record.fill(line)
        return record

    def split(self, line: str) -> list[str]:
        """Fields of a line; the number of fields must match `headers` when they are known."""
        stripped = line.strip()
        if not stripped:
            raise RecordError("empty line")
        fields = [field.strip() for field in stripped.split(self.separator)]
        if self.headers and len(fields) != len(self.headers):
            raise RecordError(f"expected {len(self.headers)} fields, got {len(fields)}")
        return fields

    def fill(self, line: str) -> None:
        """Populate the record from a raw line (names from `headers`, else value1..n)."""
        fields = self.split(line)
        plan = self._plan(len(fields))
        values, targets = self.values, self.targets
        try:
            for (name, kind), field in zip(plan, fields, strict=True):
                if kind is _NUMBER:
                    values[name] = float(field)
                elif kind is _TARGET:
                    targets.append(field)
                else:
                    values[name] = field
        except ValueError:
            pass  # re-checked below to name the culprit
        else:
            if all(value - value == 0 for value in values.values() if type(value) is float):
                return
        for (name, kind), field in zip(plan, fields, strict=True):
            if kind is _NUMBER:
                to_number(name, field)  # raises RecordError with the column and its text

    @classmethod
    def _plan(cls, width: int) -> tuple[tuple[str, object], ...]:
        """(name, kind) per column, computed once per class (and width, without headers)."""
        plans = cls.__dict__.get("_plans")
        if plans is None:
            plans = {}
            setattr(cls, "_plans", plans)  # noqa: B010 - per class, not inherited
        plan = plans.get(width)
        if plan is None:
            names = cls.headers or tuple(f"value{index}" for index in range(1, width + 1))
            plan = plans[width] = tuple(
                (
                    name,
                    _TARGET
                    if name in cls.target_columns
                    else _CATEGORY
                    if name in cls.categorical
                    else _NUMBER,
                )
                for name in names
            )
        return plan


_NUMBER, _CATEGORY, _TARGET = object(), object(), object()


def to_number(name: str, field: str) -> float:
    """A finite float, or a RecordError naming the column and the bad text."""
    try:
        number = float(field)
    except ValueError:
        raise RecordError(f"{name}: not a number: {field[:40]!r}") from None
    if not math.isfinite(number):
        raise RecordError(f"{name}: not a finite number: {field[:40]!r}")
    return number
