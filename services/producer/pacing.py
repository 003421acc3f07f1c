"""When each line is sent: block cutting, group-aware blocks and timestamp gaps, as pure logic.

Nothing here reads files, sleeps or talks to Kafka, so the schedules are unit-tested exactly;
the service turns them into waits on the event loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from services.producer.source import Line

GroupOf = Callable[[bytes], bytes]


Size = int | Callable[[], int]


def _size_of(size: Size) -> int:
    """A block size, or the current one (it may change at run time: recordsPerBlock)."""
    return size() if callable(size) else size


def blocks(lines: Iterable[Line], size: Size) -> Iterator[list[Line]]:
    """Blocks of `size` lines; the last one may be shorter (it is still sent)."""
    block: list[Line] = []
    for line in lines:
        block.append(line)
        if len(block) >= _size_of(size):
            yield block
            block = []
    if block:
        yield block


def blocks_by_group(lines: Iterable[Line], size: Size, group_of: GroupOf) -> Iterator[list[Line]]:
    """Blocks of at most `size` lines that never mix two groups.

    A group change ends the block; the line that changed it opens the next block (the original
    kept it aside and lost it at the end of the file: here the last partial block is yielded).
    """
    block: list[Line] = []
    group: bytes | None = None
    for line in lines:
        line_group = group_of(line.value)
        if block and line_group != group:
            yield block
            block = []
        block.append(line)
        group = line_group
        if len(block) >= _size_of(size):
            yield block
            block = []
    if block:
        yield block


def first_field(separator: str) -> GroupOf:
    """The group (or timestamp) column: the first field of a line split on `separator`."""
    sep = separator.encode()

    def field(value: bytes) -> bytes:
        return value.strip().split(sep, 1)[0].strip()

    return field


def block_wait(previous_start: float | None, interval_s: float, now: float) -> float:
    """Seconds to wait before the next block: blocks start `interval_s` after the previous
    block's start (a schedule, so sending time does not slow the rate); never negative, and a
    block that overran its slot is followed at once rather than by a catch-up burst."""
    if previous_start is None:
        return 0.0
    return max(0.0, previous_start + interval_s - now)


def record_limit(max_blocks: int, records_per_block: int) -> int | None:
    """TIMESTAMP and FAST send no blocks: `maxBlocks` caps them at the same number of records
    a block mode would send (None: until the end of the file)."""
    return None if max_blocks < 0 else max_blocks * records_per_block


def parse_timestamp_ms(field: bytes) -> float | None:
    """Epoch milliseconds of a timestamp field: a number (epoch ms) or an ISO-8601 datetime
    (naive ones read as UTC, so gaps never jump at daylight-saving changes); None if neither."""
    text = field.decode("utf-8", errors="replace").strip().strip("\"'")
    if not text:
        return None
    try:
        number = float(text)
    except ValueError:
        pass
    else:
        return number if math.isfinite(number) else None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() * 1000.0


@dataclass
class TimestampPacer:
    """Replays records at their original rhythm: the wait before record i is
    `(t_i - t_{i-1} + epsilonne) / scale` ms, never negative; the first record goes at once.

    A record without a timestamp (None) goes at once and leaves `t_{i-1}` as it was, so the
    next timed record still waits for the real gap since the last timed one.
    """

    epsilonne: float = 0.0
    scale: float = 1.0
    offset_ms: float = 0.0  # when the last record is due, counted from the first one
    _previous: float | None = None

    def gap_ms(self, timestamp_ms: float | None) -> float:
        if timestamp_ms is None:
            return 0.0
        previous, self._previous = self._previous, timestamp_ms
        if previous is None:
            return 0.0
        return max(0.0, (timestamp_ms - previous + self.epsilonne) / self.scale)

    def due_ms(self, timestamp_ms: float | None) -> float:
        """When this record is due, in ms after the first one: the gaps accumulate on a
        schedule, so time spent sending does not stretch the replay."""
        self.offset_ms += self.gap_ms(timestamp_ms)
        return self.offset_ms
