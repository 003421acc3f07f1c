"""Where a restarted producer continues, as pure logic: no Kafka, no files.

The topics themselves record how far a source was replayed: every record carries the `record-id`
`<source>:<line>`, and the producer commits one block (FAST: one group of chunks) per Kafka
transaction, strictly one after the other, so what read_committed readers see of all partitions
of all topics is always a prefix of the block sequence. A restart therefore continues after the
highest line number found in the committed tails (services/producer/tails.py reads them). Why
this design rather than a position kept in Redis: see services/producer/replay.py.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from services.producer.source import Line

FIRST_TAIL_WINDOW = 1024  # offsets read back from a partition's end at first
TAIL_WINDOW_GROWTH = 8  # then 8 times more each time no record of the source was found


class PositionError(ValueError):
    """What the topics hold cannot be continued; the message says why and what to do."""


@dataclass(frozen=True)
class Tail:
    """The last committed record of one source in one partition."""

    topic: str
    partition: int
    offset: int
    line: int
    value: bytes


@dataclass(frozen=True)
class Resume:
    """Where a replay starts: after `line` (0: from the first line), whose bytes the topics
    hold as `last.value`; `next_partition`: per topic, the partition after the one that got
    the last block, so a restart keeps the round-robin going instead of starting it over."""

    line: int = 0
    last: Tail | None = None
    next_partition: Mapping[str, int] = field(default_factory=dict)


FROM_START = Resume()


def line_of(record_id: bytes | None, source: bytes) -> int | None:
    """The line number of a `record-id` header `<source>:<line>`; None if it is not that."""
    if record_id is None:
        return None
    prefix, colon, number = record_id.rpartition(b":")
    if not colon or prefix != source or not number.isdigit():
        return None
    return int(number)


def tail_windows(begin: int, end: int) -> Iterator[tuple[int, int]]:
    """Offset ranges [start, stop) to read backwards from a partition's end until a record of
    the source shows up: small first (the last block is normally right before the end), then
    growing, so an aborted block or another source's records in between cost few reads."""
    stop, width = end, FIRST_TAIL_WINDOW
    while stop > begin:
        start = max(begin, stop - width)
        yield start, stop
        stop, width = start, width * TAIL_WINDOW_GROWTH


def next_partition(partitions: Sequence[int], last: int) -> int:
    """The partition after `last` in the round-robin over `partitions` (sorted)."""
    ordered = sorted(partitions)
    if last not in ordered:
        return ordered[0]
    return ordered[(ordered.index(last) + 1) % len(ordered)]


def resume_point(
    tails: Mapping[str, Sequence[Tail]], partitions: Mapping[str, Sequence[int]]
) -> Resume:
    """Where to continue, from the last committed record of the source in each partition of
    each topic (`tails`: every topic, even one without such a record).

    Every topic gets every line, in the same transactions, so all topics must end at the same
    line; if they do not (a topic added to mainTopic since, or records written by something
    else), continuing would duplicate lines in some of them or skip lines in others.
    """
    last_of = {
        topic: max(found, key=lambda t: t.line, default=None) for topic, found in tails.items()
    }
    lines = {topic: 0 if last is None else last.line for topic, last in last_of.items()}
    if len(set(lines.values())) > 1:
        held = ", ".join(f"{topic} up to line {line}" for topic, line in lines.items())
        raise PositionError(f"the topics do not end at the same line of the file ({held})")
    last = next((tail for tail in last_of.values() if tail is not None), None)
    if last is None:
        return FROM_START
    following = {
        topic: next_partition(partitions[topic], tail.partition)
        for topic, tail in last_of.items()
        if tail is not None and partitions.get(topic)
    }
    return Resume(last.line, last, following)


def check_resumed_line(resume: Resume, found: Line | None) -> str | None:
    """Why the file cannot be continued after `resume.line` (None: it can). `found`: the first
    non-blank line numbered `resume.line` or more, None when the file ended before."""
    last = resume.last
    if last is None:
        return None
    where = f"{last.topic} (partition {last.partition}, offset {last.offset})"
    if found is None:
        return f"the file has no line {last.line}, the last line {where} holds"
    if found.number != last.line or found.value != last.value:
        return f"line {last.line} differs from the line {where} holds for it"
    return None
