"""Replaying a file with its labels held back (`label.delay`, delayed labels).

Each line goes at once to the input topics with its target columns emptied (the record class
then reads it as a record without its label), and its label, as a `Label` message, goes to
`labelTopic` once the delay has passed: in the same Kafka transaction as the block being sent
at that point. So what read_committed readers see is always a prefix of the file's lines and,
on labelTopic, a prefix of their labels; a restart (services/producer/service.py `resume`)
finds where both end and holds again the labels of the lines in between, which the topics
hold without their label yet.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.producer.source import Line
from shared.labels import Delay, HeldLabels
from shared.records.base import RecordError, TimeRecord
from shared.wire.kafka import Label


class LabelSplitter:
    """Takes the label out of a line, as the use case's record class reads it."""

    def __init__(self, record_class: type[TimeRecord]):
        headers, targets = record_class.headers, record_class.target_columns
        self.columns = [headers.index(name) for name in targets if name in headers]
        if not self.columns:
            raise ValueError(
                f"{record_class.__name__} has no target column among its columns "
                f"({', '.join(headers) or 'unnamed'}): no label to hold back"
            )
        self.record_class = record_class
        self.separator = record_class.separator

    def split(self, value: bytes) -> tuple[bytes, list[str] | None]:
        """(the line without its label, the label's targets as the record class reads them);
        a line the record class refuses, or without a label, goes as it is, with None (the
        launcher dead-letters a bad line with the reason)."""
        try:
            text = value.decode("utf-8")
            record = self.record_class.parse(text)
        except (UnicodeDecodeError, RecordError):
            return value, None
        if not record.targets:
            return value, None
        fields = text.split(self.separator)
        for column in self.columns:
            fields[column] = ""
        return self.separator.join(fields).encode("utf-8"), [str(t) for t in record.targets]


class ProducerLabels:
    """The labels of one replay: split off each line sent, held, and released when due."""

    def __init__(self, topic: str, delay: Delay, splitter: LabelSplitter, source: str):
        self.topic = topic
        self.splitter = splitter
        self.source = source
        self.held: HeldLabels[bytes] = HeldLabels(delay)

    def send(self, lines: Iterable[Line], now_s: float) -> tuple[list[Line], list[Line]]:
        """The lines to send now (without their labels, which are held) and the labels due
        with them (as Lines: the record's line number and the `Label` message)."""
        stripped = [self.hold(line, now_s) for line in lines]
        return stripped, self.due(now_s)

    def hold(self, line: Line, now_s: float) -> Line:
        """Hold the line's label (when it has one); the line as it goes out."""
        value, targets = self.splitter.split(line.value)
        if targets is not None:
            message = Label(record_id=f"{self.source}:{line.number}", targets=targets)
            self.held.hold(line.number, message.encode(), now_s)
        return Line(line.number, value)

    def due(self, now_s: float) -> list[Line]:
        return [Line(number, value) for number, value in self.held.due(now_s)]

    def drain(self) -> list[Line]:
        return [Line(number, value) for number, value in self.held.drain()]
