"""Input messages into records: what the launcher (to predict) and the trainer (to learn) both
do with a batch of raw lines, so that both see exactly the same records."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka.structs import ConsumerRecord

from shared.prepostprocessors import PrePostProcessor
from shared.records.base import RecordError, TimeRecord


@dataclass
class Rejected:
    """A message that could not be parsed, with the reason (bound for `<topic>.dlq`)."""

    message: ConsumerRecord
    reason: str


@dataclass
class ParsedBatch:
    """The records of a batch, each with its message and raw line, and the rejects."""

    records: list[TimeRecord] = field(default_factory=list)
    messages: list[ConsumerRecord] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)


def parse_messages(
    messages: Sequence[ConsumerRecord],
    record_class: type[TimeRecord],
    processor: PrePostProcessor | None,
) -> ParsedBatch:
    """Parse each message's line with the record class (the message key is the source), then
    pre-process the batch. CPU work: call it off the event loop."""
    batch = ParsedBatch()
    parse = record_class.parse
    for message in messages:
        try:
            line = (message.value or b"").decode("utf-8")
            source = (message.key or b"").decode("utf-8", "replace")
            batch.records.append(parse(line, source))
        except UnicodeDecodeError:
            batch.rejected.append(Rejected(message, "not UTF-8 text"))
            continue
        except RecordError as error:
            batch.rejected.append(Rejected(message, str(error)))
            continue
        batch.messages.append(message)
        batch.lines.append(line)
    if processor is not None and batch.records:
        batch.records = list(processor.preprocess(batch.records))
        if len(batch.records) != len(batch.messages):
            raise RuntimeError("a pre-processor must return one record per input record")
    return batch
