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
        names = self.headers or tuple(f"value{index}" for index in range(1, len(fields) + 1))
        for name, field in zip(names, fields, strict=True):
            if name in self.target_columns:
                self.targets.append(field)
            elif name in self.categorical:
                self.values[name] = field
            else:
                self.values[name] = to_number(name, field)


def to_number(name: str, field: str) -> float:
    """A finite float, or a RecordError naming the column and the bad text."""
    try:
        number = float(field)
    except ValueError:
        raise RecordError(f"{name}: not a number: {field[:40]!r}") from None
    if not math.isfinite(number):
        raise RecordError(f"{name}: not a finite number: {field[:40]!r}")
    return number
