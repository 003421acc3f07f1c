"""The CPU side of one evaluation, without I/O: validate the outputs (shared.wire.kafka.Output),
drop replayed ones, score them in the three views, run the detector, and describe what the
sinks receive.

Duplicates. The launcher writes the outputs of input partition p to output partition p (modulo
the output partitions) in input order, and commits its input offsets only after their outputs
were written, so whoever writes a partition's outputs next starts right after the last output
written. A new output's input offset is therefore above every input offset of its input
partition scored before, and a replayed output (a launcher killed before its commit, when
transactions are off) is at or below it. One high-water mark per input partition is all the
dedup needs: a few bytes in the checkpoint, where the former set of seen ids (two million of
them) could neither be checkpointed at every evaluation nor catch a replay older than its bound.

Order. The messages of an evaluation are scored in (partition, offset) order, whatever order
Kafka returned them in: the window view and the per-record error stream depend on the order,
and a restarted evaluator must score its replayed evaluation exactly as the first time.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiokafka.structs import ConsumerRecord
from pydantic import ValidationError

from services.evaluator.labels import DelayedLabels
from services.evaluator.leaderboard import Leaderboard, Promotion, PromotionRule, Standing
from services.evaluator.origins import InputOrigins
from shared.labels import Expired
from shared.metrics.evaluation import MetricSet, Tables
from shared.monitoring.base import Detector
from shared.monitoring.detection import DetectionChange
from shared.monitoring.error_stream import record_errors
from shared.wire.kafka import Output, parse_input_id, partition_key

#: The longest reason a dead letter carries.
MAX_REASON = 1000


def records_per_second(
    records: int, time_ms: int, previous_ms: int | None, first_window_s: float
) -> float:
    """Outputs per second since the previous evaluation; the first one has no previous, so
    its records count over `first_window_s` (the batch wait)."""
    if previous_ms is not None and time_ms > previous_ms:
        return records / ((time_ms - previous_ms) / 1000)
    return records / first_window_s


def in_order(messages: Sequence[ConsumerRecord]) -> list[ConsumerRecord]:
    """The messages by (partition, offset): the order an evaluation scores them in."""
    return sorted(messages, key=lambda message: (message.partition, message.offset))


@dataclass(frozen=True)
class Span:
    """The outputTopic offsets an evaluation read: per partition, the first and the last
    (inclusive). It identifies the evaluation in every document written about it."""

    topic: str
    ranges: tuple[tuple[int, int, int], ...]  # (partition, first, last), by partition

    @classmethod
    def of(cls, topic: str, messages: Sequence[ConsumerRecord]) -> Span:
        bounds: dict[int, tuple[int, int]] = {}
        for message in messages:
            first, last = bounds.get(message.partition, (message.offset, message.offset))
            bounds[message.partition] = (min(first, message.offset), max(last, message.offset))
        return cls(topic, tuple((p, first, last) for p, (first, last) in sorted(bounds.items())))

    @classmethod
    def parse(cls, topic: str, text: str) -> Span:
        """The span of a `text` (ValueError naming it when malformed)."""
        ranges = []
        try:
            for part in filter(None, text.split(",")):
                partition, _, bounds = part.partition(":")
                first, _, last = bounds.partition("-")
                ranges.append((int(partition), int(first), int(last)))
        except ValueError:
            raise ValueError(f"{text!r} is not <partition>:<first>-<last>,...") from None
        return cls(topic, tuple(sorted(ranges)))

    @property
    def text(self) -> str:
        """`<partition>:<first>-<last>`, comma-separated (documents' `output_offsets`)."""
        return ",".join(f"{p}:{first}-{last}" for p, first, last in self.ranges)

    @property
    def ends(self) -> dict[int, int]:
        """Partition -> the last offset read."""
        return {p: last for p, _, last in self.ranges}

    def next_offsets(self) -> dict[int, int]:
        """Partition -> the offset to read next."""
        return {p: last + 1 for p, _, last in self.ranges}


@dataclass(frozen=True)
class Rejected:
    """A message that is not a valid output, and why (its dead letter's `error`)."""

    message: ConsumerRecord
    reason: str


class InputHighWater:
    """Per input partition, the highest input offset whose output was scored (see the module
    docstring for why this is enough to recognise a replayed output)."""

    def __init__(self, marks: dict[str, int] | None = None):
        self.marks: dict[str, int] = dict(marks or {})

    def first_time(self, topic: str, partition: int, offset: int) -> bool:
        """True (and remembered) when no output of this input offset was scored yet."""
        key = partition_key(topic, partition)
        if offset <= self.marks.get(key, -1):
            return False
        self.marks[key] = offset
        return True


@dataclass
class EvaluationResult:
    index: int
    time_ms: int
    span: Span
    outputs: list[Output] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[Rejected] = field(default_factory=list)
    views: dict[str, dict[str, float | None]] = field(default_factory=dict)
    tables: Tables = field(default_factory=dict)  # reliability tables, by view and metric
    pairs: dict[str, int] = field(default_factory=dict)
    changes: list[DetectionChange] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    model_version: int | None = None
    standing: Standing | None = None  # the leaderboard after it (with challengers)
    promotion: Promotion | None = None  # what the promotion rule decided
    expired: Expired | None = None  # labelTopic: what waited beyond label.timeout, dropped

    @property
    def malformed(self) -> int:
        return len(self.rejected)

    def latency(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q * 100) - 1]


@dataclass
class Progress:
    """What keeps counting across evaluations, restarts and configuration changes."""

    index: int = 0  # evaluations so far
    records: int = 0  # outputs scored
    pairs_seen: int = 0  # (target, prediction) pairs scored
    high_water: InputHighWater = field(default_factory=InputHighWater)
    # labelTopic: outputs waiting for their label (a class default: older checkpoints load)
    labels: DelayedLabels | None = None


#: The shape of what `Views` pickles, part of the checkpoint's settings (checkpoint.py): bumped
#: when it changes, so that an older checkpoint's views start afresh instead of failing later.
VIEWS_FORMAT = 2


@dataclass
class Views:
    """What belongs to one configuration of metrics and detector (started afresh when it
    changes); `origins` locate the detector's evaluations in the input topics."""

    metric_set: MetricSet
    detector: Detector | None
    # per model, with challengers (None: none seen yet; a class default, so that a checkpoint
    # written before leaderboards existed still loads)
    leaderboard: Leaderboard | None = None
    origins: InputOrigins = field(default_factory=InputOrigins)


class Scorer:
    """Everything the evaluator remembers between evaluations: `views` (metrics, detector) and
    `progress` (counters, dedup); both are plain objects the checkpoint pickles."""

    def __init__(
        self,
        metric_set: MetricSet,
        detector: Detector | None,
        monitored: dict[str, str],
        view: str,
        regression: bool,
        topic: str = "",
    ):
        self.views = Views(metric_set, detector)
        self.monitored = monitored  # name in monitoring.props -> metric output name
        self.view = view
        self.regression = regression
        self.topic = topic
        self.progress = Progress()
        self.promotion: PromotionRule | None = None  # algs.props' rule: not checkpointed

    @property
    def metric_set(self) -> MetricSet:
        return self.views.metric_set

    @property
    def detector(self) -> Detector | None:
        return self.views.detector

    @property
    def index(self) -> int:
        return self.progress.index

    @property
    def records(self) -> int:
        return self.progress.records

    def evaluate(
        self,
        messages: Sequence[ConsumerRecord],
        now_ms: int,
        labels: Sequence[ConsumerRecord] = (),
    ) -> EvaluationResult:
        """Score the outputs; with labelTopic (`progress.labels`), those without their label
        wait for it, and the `labels` read meanwhile score the outputs they complete."""
        progress = self.progress
        delayed, now_s = progress.labels, now_ms / 1000
        progress.index += 1
        messages = in_order(messages)
        result = EvaluationResult(progress.index, now_ms, Span.of(self.topic, messages))
        scored_before = dict(progress.high_water.marks)
        firsts: dict[str, int] = {}
        pairs = []
        for message in messages:
            try:
                output = Output.decode(message.value)
                topic, partition, offset = parse_input_id(output.id)
            except ValueError as error:  # pydantic's ValidationError is a ValueError
                result.rejected.append(Rejected(message, reason_of(error)))
                continue
            if not progress.high_water.first_time(topic, partition, offset):
                result.duplicates += 1
                continue
            result.outputs.append(output)
            firsts.setdefault(partition_key(topic, partition), offset)
            if output.targets:
                pairs.append((output.targets[0], output.prediction, output.probabilities))
            elif delayed is not None and message.value is not None:
                joined = delayed.output(output, message.value, now_s)
                pairs.extend([joined] if joined is not None else [])
            produced = output.timings.produced
            if produced is not None:
                result.latencies_ms.append(float(message.timestamp - produced))
            if output.model_version is not None:
                result.model_version = max(result.model_version or 0, output.model_version)
        progress.records += len(result.outputs)
        if delayed is not None:
            pairs.extend(delayed.labels(in_order(labels), now_s))
            result.expired = delayed.expire(now_s)
        metric_set, detector = self.views.metric_set, self.views.detector
        if detector is not None:
            self.views.origins.note(progress.index, scored_before, firsts)
        result.views = metric_set.update_batch(pairs)
        result.tables = metric_set.tables()
        progress.pairs_seen += len(pairs)
        window = min(progress.pairs_seen, metric_set.window_size or 0)
        result.pairs = {"batch": len(pairs), "cumulative": progress.pairs_seen, "window": window}
        self._rank(result)
        if detector is not None and pairs:
            if detector.wants_errors:
                targets = [pair[0] for pair in pairs]
                predictions = [pair[1] for pair in pairs]
                errors = record_errors(targets, predictions, regression=self.regression)
                result.changes = detector.observe_errors(progress.index, now_ms, errors)
            else:
                values = result.views.get(self.view, {})
                watched = {name: values.get(metric) for name, metric in self.monitored.items()}
                result.changes = detector.observe(progress.index, now_ms, watched)
        return result

    def leaderboard(self) -> Leaderboard:
        """The leaderboard of the current views (created on first use)."""
        if self.views.leaderboard is None:
            self.views.leaderboard = Leaderboard(self.views.metric_set)
        return self.views.leaderboard

    def _rank(self, result: EvaluationResult) -> None:
        """Each model's metrics (outputs with challengers only) and the promotion rule."""
        if self.views.leaderboard is None and all(o.champion is None for o in result.outputs):
            return
        board = self.leaderboard()
        result.standing = board.score(result.outputs)
        result.promotion = board.decide(self.promotion, result.standing, result.time_ms)


def reason_of(error: ValueError) -> str:
    """A dead letter's reason: what is wrong, field by field, on one line."""
    if isinstance(error, ValidationError):
        problems = [
            f"{'.'.join(map(str, detail['loc'])) or 'value'}: {detail['msg']}"
            for detail in error.errors(include_url=False)
        ]
        text = "not an output: " + "; ".join(problems)
    else:
        text = f"not an output: id {error}"
    return text[:MAX_REASON]
