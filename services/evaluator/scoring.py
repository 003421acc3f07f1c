"""The CPU side of one evaluation, without I/O: dedupe outputs by record id, score them in
the three views, run the detector, and describe what the sinks receive."""

from __future__ import annotations

import json
import statistics
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import ConsumerRecord

from shared.metrics.evaluation import MetricSet
from shared.monitoring.base import Detector
from shared.monitoring.detection import DetectionChange
from shared.monitoring.error_stream import record_errors


def records_per_second(
    records: int, time_ms: int, previous_ms: int | None, first_window_s: float
) -> float:
    """Outputs per second since the previous evaluation; the first one has no previous, so
    its records count over `first_window_s` (the batch wait)."""
    if previous_ms is not None and time_ms > previous_ms:
        return records / ((time_ms - previous_ms) / 1000)
    return records / first_window_s


class SeenIds:
    """Output ids already scored, bounded (oldest forgotten first): a replayed output counts
    once as long as it arrives within the last `capacity` outputs."""

    def __init__(self, capacity: int = 2_000_000):
        self.capacity = capacity
        self._ids: OrderedDict[str, None] = OrderedDict()

    def add(self, output_id: str) -> bool:
        """True when the id is new."""
        if output_id in self._ids:
            return False
        self._ids[output_id] = None
        if len(self._ids) > self.capacity:
            self._ids.popitem(last=False)
        return True


@dataclass
class EvaluationResult:
    index: int
    time_ms: int
    outputs: list[dict[str, Any]] = field(default_factory=list)
    duplicates: int = 0
    malformed: int = 0
    views: dict[str, dict[str, float | None]] = field(default_factory=dict)
    pairs: dict[str, int] = field(default_factory=dict)
    changes: list[DetectionChange] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)
    model_version: int | None = None

    def latency(self, q: float) -> float | None:
        if not self.latencies_ms:
            return None
        if len(self.latencies_ms) == 1:
            return self.latencies_ms[0]
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[int(q * 100) - 1]


class Scorer:
    """Everything the evaluator remembers between evaluations (metrics, detector, seen ids)."""

    def __init__(
        self,
        metric_set: MetricSet,
        detector: Detector | None,
        monitored: dict[str, str],
        view: str,
        regression: bool,
    ):
        self.metric_set = metric_set
        self.detector = detector
        self.monitored = monitored  # name in monitoring.props -> metric output name
        self.view = view
        self.regression = regression
        self.seen = SeenIds()
        self.index = 0
        self.records = 0
        self.pairs_seen = 0

    def evaluate(self, messages: Sequence[ConsumerRecord], now_ms: int) -> EvaluationResult:
        self.index += 1
        result = EvaluationResult(self.index, now_ms)
        pairs = []
        for message in messages:
            try:
                output = json.loads(message.value)
                output_id = str(output["id"])
            except (ValueError, KeyError, TypeError):
                result.malformed += 1
                continue
            if not self.seen.add(output_id):
                result.duplicates += 1
                continue
            result.outputs.append(output)
            targets = output.get("targets") or []
            if targets:
                pairs.append((targets[0], output.get("prediction")))
            produced = (output.get("timings") or {}).get("produced")
            if isinstance(produced, int | float):
                result.latencies_ms.append(float(message.timestamp - produced))
            version = output.get("model_version")
            if isinstance(version, int):
                result.model_version = max(result.model_version or 0, version)
        self.records += len(result.outputs)
        result.views = self.metric_set.update_batch(pairs)
        self.pairs_seen += len(pairs)
        window = min(self.pairs_seen, self.metric_set.window_size or 0)
        result.pairs = {"batch": len(pairs), "cumulative": self.pairs_seen, "window": window}
        if self.detector is not None and pairs:
            if self.detector.wants_errors:
                targets, predictions = zip(*pairs, strict=True)
                errors = record_errors(targets, predictions, regression=self.regression)
                result.changes = self.detector.observe_errors(self.index, now_ms, errors)
            else:
                values = result.views.get(self.view, {})
                watched = {name: values.get(metric) for name, metric in self.monitored.items()}
                result.changes = self.detector.observe(self.index, now_ms, watched)
        return result
