"""Delayed labels as pure logic: a delay in records or in time, and the join of what waits for
its label (a record, a prediction) with labels that arrive later, both keyed by record id.

Real streams (fraud, intrusion, churn) label a record long after it was predicted, if ever. A
use case that names a `labelTopic` gets its labels there, later; the producer holds them back
by `label.delay` when it replays a file, and the trainer and the evaluator join them to what
they saw earlier with a `LabelJoin`, whose `label.timeout` bounds its memory: what waits
longer is dropped and counted.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

_UNITS_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_DELAY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


@dataclass(frozen=True)
class Delay:
    """A delay in records (`records`) or in seconds (`seconds`): exactly one is set."""

    records: int | None = None
    seconds: float | None = None

    def __post_init__(self) -> None:
        if (self.records is None) == (self.seconds is None):
            raise ValueError("a delay is in records or in time, not both nor neither")

    def __str__(self) -> str:
        """As written in the props files (`parse_delay` reads it back)."""
        if self.records is not None:
            return str(self.records)
        return f"{self.seconds:g}s"

    def passed(self, records_since: int, seconds_since: float) -> bool:
        """Whether this delay has passed for something that saw `records_since` records and
        `seconds_since` seconds go by since it arrived."""
        if self.records is not None:
            return records_since >= self.records
        assert self.seconds is not None
        return seconds_since >= self.seconds


def parse_delay(text: str | int | Delay) -> Delay:
    """`1000` (records), `5s`, `250ms`, `2m`, `1h` (time); ValueError naming the text else."""
    if isinstance(text, Delay):
        return text
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    match = _DELAY.match(text) if isinstance(text, str) else None
    if match is None:
        raise ValueError(
            f"{text!r} is no delay: a number of records (1000) or a time (250ms, 5s, 2m, 1h)"
        )
    number, unit = match.groups()
    if unit is None:
        if "." in number:
            raise ValueError(f"{text!r}: a delay in records is a whole number")
        return Delay(records=int(number))
    return Delay(seconds=float(number) * _UNITS_S[unit])


Item = TypeVar("Item")
Held = TypeVar("Held")  # what waits: an item or a label
Label = TypeVar("Label")


@dataclass
class _Waiting(Generic[Item]):
    value: Item
    tick: int  # items that had arrived before it
    at_s: float  # when it arrived


@dataclass
class Expired:
    """What a `LabelJoin.expire` dropped: items whose label did not come in time, and labels
    whose item never came."""

    items: int = 0
    labels: int = 0


class LabelJoin(Generic[Item, Label]):
    """Items (records or predictions without their label) and labels, joined by record id
    whichever comes first; each side waits at most `timeout` (in items arrived since, or in
    seconds), then `expire` drops it.

    Plain data (ordered dicts): it pickles with its owner's checkpoint. Waiting entries are kept
    in arrival order, so expiry only looks at the oldest ones.
    """

    def __init__(self, timeout: Delay):
        self.timeout = timeout
        self.items: OrderedDict[str, _Waiting[Item]] = OrderedDict()
        self.labels: OrderedDict[str, _Waiting[Label]] = OrderedDict()
        self.ticks = 0  # items seen so far
        self.joined = 0
        self.expired = Expired()

    def __len__(self) -> int:
        return len(self.items) + len(self.labels)

    def add_item(self, record_id: str, item: Item, now_s: float) -> tuple[Item, Label] | None:
        """An item without its label: the pair when its label was waiting, else None (it
        waits). An item seen again (a replay) replaces the waiting one."""
        self.ticks += 1
        label = self.labels.pop(record_id, None)
        if label is not None:
            self.joined += 1
            return item, label.value
        self.items[record_id] = _Waiting(item, self.ticks, now_s)
        self.items.move_to_end(record_id)
        return None

    def add_label(self, record_id: str, label: Label, now_s: float) -> tuple[Item, Label] | None:
        """A label: the pair when its item was waiting, else None (the label waits for it)."""
        item = self.items.pop(record_id, None)
        if item is not None:
            self.joined += 1
            return item.value, label
        self.labels[record_id] = _Waiting(label, self.ticks, now_s)
        self.labels.move_to_end(record_id)
        return None

    def expire(self, now_s: float) -> Expired:
        """Drop (and count) what waited longer than the timeout; returns what this call dropped."""
        dropped = Expired(
            items=self._expire(self.items, now_s), labels=self._expire(self.labels, now_s)
        )
        self.expired.items += dropped.items
        self.expired.labels += dropped.labels
        return dropped

    def _expire(self, waiting: OrderedDict[str, _Waiting[Held]], now_s: float) -> int:
        dropped = 0
        while waiting:
            oldest = next(iter(waiting.values()))
            if not self.timeout.passed(self.ticks - oldest.tick, now_s - oldest.at_s):
                break
            waiting.popitem(last=False)
            dropped += 1
        return dropped

    def early_labels(self) -> dict[str, Label]:
        """The labels waiting for their item (record id -> label), oldest first: a checkpoint
        keeps them, since the positions it resumes from are past them on the label side."""
        return {record_id: waiting.value for record_id, waiting in self.labels.items()}

    def restore_labels(self, labels: dict[str, Label], now_s: float) -> None:
        """Labels that were waiting when a checkpoint was taken wait again, as if they had just
        arrived (their timeout starts over)."""
        for record_id, label in labels.items():
            self.labels[record_id] = _Waiting(label, self.ticks, now_s)

    def oldest_item(self) -> Item | None:
        """The item that has waited longest (None when none waits)."""
        return next(iter(self.items.values())).value if self.items else None


class HeldLabels(Generic[Label]):
    """The producer's labels held back: each is due once `delay` passed since its record was
    sent (`delay` records sent after it, or `delay` seconds). What River's
    `stream.simulate_qa(..., delay=D)` does: the label of record i comes before record i + D."""

    def __init__(self, delay: Delay):
        self.delay = delay
        self.waiting: OrderedDict[int, _Waiting[Label]] = OrderedDict()  # by line number
        self.sent = 0  # records sent so far

    def __len__(self) -> int:
        return len(self.waiting)

    def hold(self, line: int, label: Label, now_s: float) -> None:
        """The record of `line` is being sent now: its label waits."""
        self.sent += 1
        self.waiting[line] = _Waiting(label, self.sent, now_s)

    def due(self, now_s: float) -> list[tuple[int, Label]]:
        """(line, label) of the labels due now, oldest first: with a delay of D records, the
        label of record i once record i + D is held (it travels with it, as River reveals it
        right before record i + D)."""
        ready = []
        while self.waiting:
            line, oldest = next(iter(self.waiting.items()))
            if not self.delay.passed(self.sent - oldest.tick, now_s - oldest.at_s):
                break
            self.waiting.popitem(last=False)
            ready.append((line, oldest.value))
        return ready

    def seconds_to_next(self, now_s: float) -> float | None:
        """A time delay: how long until the oldest label is due (None: none, or in records)."""
        if not self.waiting or self.delay.seconds is None:
            return None
        oldest = next(iter(self.waiting.values()))
        return max(0.0, oldest.at_s + self.delay.seconds - now_s)

    def drain(self) -> list[tuple[int, Label]]:
        """Every label still held (the file ended: River reveals them all at its end)."""
        ready = [(line, waiting.value) for line, waiting in self.waiting.items()]
        self.waiting.clear()
        return ready
