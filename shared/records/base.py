"""Records: one parsed line of a stream, as the original STREAMER's TimeRecord.

A use case's record class turns a raw line into typed `values` (numbers as floats, categories
as strings), `targets` and an optional event time. A line it cannot parse raises RecordError
with the reason; the launcher sends such lines to the dead-letter topic and goes on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from operator import call, itemgetter
from typing import Any, ClassVar, Self

from shared.errors import StreamerError

Value = float | str


class RecordError(StreamerError):
    """A line does not fit its record class; the message is the reason stored in the DLQ."""


class TimeRecord:
    """Base record: `fill(line)` populates values, targets and (optionally) the timestamp.

    Subclasses set `separator`, `headers` (value names in column order), `categorical` (names
    kept as strings) and `target_columns` (names moved to `targets`). A line whose target
    column is empty has no label yet (delayed labels: it arrives on `labelTopic`): its
    `targets` stay empty.
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
        fields = stripped.split(self.separator)
        if " " in stripped or "\t" in stripped:  # most lines have no blank to strip
            fields = [field.strip() for field in fields]
        if self.headers and len(fields) != len(self.headers):
            raise RecordError(f"expected {len(self.headers)} fields, got {len(fields)}")
        return fields

    def fill(self, line: str) -> None:
        """Populate the record from a raw line (names from `headers`, else value1..n).

        On the hot path of both the launcher and the trainer: the columns are converted by one
        C-level map, picked by itemgetters and checked finite by one sum (an infinity or NaN
        makes it non-finite); only a line that fails is walked column by column, to name the
        culprit."""
        fields = self.split(line)
        columns = self._columns(len(fields))
        try:
            converted: list[Value] | None = list(map(call, columns.converters, fields))
        except ValueError:
            converted = None
        if converted is not None:
            total = sum(columns.pick_numbers(converted))
            if total - total != 0:  # a NaN or an infinity (or finite numbers that overflow)
                converted = None
        if converted is None:
            names = self._plan(len(fields))
            converted = [
                to_number(name, field) if kind is _NUMBER else field
                for (name, kind), field in zip(names, fields, strict=True)
            ]  # raises RecordError naming the column and its text
        self.values.update(zip(columns.names, columns.pick_values(converted), strict=True))
        targets = columns.pick_targets(converted)
        if "" not in targets:  # an empty target column: the label comes later (labelTopic)
            self.targets.extend(targets)  # type: ignore[arg-type]

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

    @classmethod
    def _columns(cls, width: int) -> _Columns:
        """How to read a line of `width` fields, computed once per class and width."""
        cache = cls.__dict__.get("_column_cache")
        if cache is None:
            cache = {}
            setattr(cls, "_column_cache", cache)  # noqa: B010 - per class, not inherited
        columns = cache.get(width)
        if columns is None:
            plan = cls._plan(width)
            columns = cache[width] = _Columns(
                converters=tuple(float if kind is _NUMBER else str for _, kind in plan),
                names=tuple(name for name, kind in plan if kind is not _TARGET),
                pick_values=_picker([i for i, (_, k) in enumerate(plan) if k is not _TARGET]),
                pick_numbers=_picker([i for i, (_, k) in enumerate(plan) if k is _NUMBER]),
                pick_targets=_picker([i for i, (_, k) in enumerate(plan) if k is _TARGET]),
            )
        return columns


_NUMBER, _CATEGORY, _TARGET = object(), object(), object()


@dataclass(frozen=True)
class _Columns:
    """Per column a converter (float or str), the values' names, and which converted columns
    are the values, the numbers and the targets (each picked as a tuple, in column order)."""

    converters: tuple[type, ...]
    names: tuple[str, ...]
    pick_values: Callable[[list[Value]], tuple[Value, ...]]
    pick_numbers: Callable[[list[Value]], tuple[float, ...]]
    pick_targets: Callable[[list[Value]], tuple[Value, ...]]


def _picker(indexes: list[int]) -> Callable[[list[Value]], tuple[Any, ...]]:
    """The items at `indexes` as a tuple, in C (itemgetter returns a bare item for one index)."""
    if len(indexes) > 1:
        return itemgetter(*indexes)
    if indexes:
        only = indexes[0]
        return lambda items: (items[only],)
    return lambda items: ()


def to_number(name: str, field: str) -> float:
    """A finite float, or a RecordError naming the column and the bad text."""
    try:
        number = float(field)
    except ValueError:
        raise RecordError(f"{name}: not a number: {field[:40]!r}") from None
    if not math.isfinite(number):
        raise RecordError(f"{name}: not a finite number: {field[:40]!r}")
    return number
