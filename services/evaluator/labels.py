"""Delayed labels in the evaluator: predictions that came without their label wait for it, and
are scored when it arrives on `labelTopic` (joined by record id, shared/labels.py).

The waiting predictions, the labels that came first and where labelTopic was read up to live in
the scorer's `Progress`, which the checkpoint pickles with the metrics: a restarted evaluator
goes on with the same pairs waiting, and reads labelTopic from where the last checkpointed
evaluation stopped. A waiting prediction is kept as its message's bytes (a few hundred bytes:
`label.timeout` bounds how many).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import ConsumerRecord

from shared.labels import Delay, Expired, LabelJoin
from shared.wire.kafka import Label, Output

#: (target, prediction, probabilities): what the metrics are updated with
Pair = tuple[Any, Any, Any]


@dataclass
class DelayedLabels:
    """The join of outputs with their later labels, and how far labelTopic was read."""

    join: LabelJoin[bytes, list[str]]
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read
    read: int = 0  # label messages read
    malformed: int = 0  # label messages that are no `Label` (logged, not scored)

    @classmethod
    def waiting_at_most(cls, timeout: Delay) -> DelayedLabels:
        return cls(LabelJoin(timeout))

    def output(self, output: Output, value: bytes, now_s: float) -> Pair | None:
        """An output without its label: the pair to score when its label came first."""
        joined = self.join.add_item(output.record_id, value, now_s)
        return None if joined is None else (joined[1][0], output.prediction, output.probabilities)

    def labels(self, messages: Sequence[ConsumerRecord], now_s: float) -> list[Pair]:
        """Label messages: the pairs of the outputs that were waiting for them."""
        pairs = []
        for message in messages:
            self.read += 1
            self.offsets[message.partition] = message.offset + 1
            try:
                label = Label.decode(message.value)
            except ValueError:
                self.malformed += 1
                continue
            joined = self.join.add_label(label.record_id, label.targets, now_s)
            if joined is not None:
                value, targets = joined
                output = Output.decode(value)
                pairs.append((targets[0], output.prediction, output.probabilities))
        return pairs

    def expire(self, now_s: float) -> Expired:
        return self.join.expire(now_s)
