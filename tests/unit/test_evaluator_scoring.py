"""The evaluator's scoring step: duplicates count once, three views, the detector sees the
monitored view, latencies come from the records' timings."""

from __future__ import annotations

from aiokafka.structs import ConsumerRecord

from services.evaluator.scoring import InputHighWater, Scorer, records_per_second
from shared.config import MonitoringConfig
from shared.metrics.evaluation import MetricSet
from shared.metrics.registry import build_metrics
from shared.monitoring.factory import build_detector
from shared.wire.kafka import Output, Timings


def output(
    offset: int, target: str, prediction: str | None, produced: int = 1000
) -> ConsumerRecord:
    value = Output(
        id=f"in/0/{offset}",
        record_id=f"s:{offset}",
        usecase="uc",
        source="s",
        event_time=produced,
        targets=[target],
        prediction=prediction,
        model_version=2,
        timings=Timings(produced=produced, consumed=None, predicted=None),
    ).encode()
    return ConsumerRecord("out", 0, offset, produced + 40, 0, b"k", value, None, 1, len(value), [])


def scorer(window: int = 4, detector=None, monitored=None) -> Scorer:
    metrics = build_metrics(["Accuracy"])
    return Scorer(MetricSet(metrics, window=window), detector, monitored or {}, "batch", False)


def test_duplicated_outputs_count_once_and_malformed_ones_are_counted():
    subject = scorer()
    first = subject.evaluate([output(0, "a", "a"), output(1, "a", "b"), output(0, "a", "a")], 1)
    assert first.duplicates == 1 and len(first.outputs) == 2
    assert first.views["batch"]["accuracy"] == 0.5
    bad = ConsumerRecord("out", 0, 9, 1, 0, b"k", b"not json", None, 1, 8, [])
    second = subject.evaluate([output(1, "a", "b"), bad, output(2, "b", "b")], 2)
    assert second.duplicates == 1 and second.malformed == 1
    assert second.views["batch"]["accuracy"] == 1.0
    assert second.views["cumulative"]["accuracy"] == 2 / 3
    assert second.pairs == {"batch": 1, "cumulative": 3, "window": 3}
    assert second.latencies_ms == [40.0] and second.model_version == 2


def test_the_window_view_covers_the_last_records_only():
    subject = scorer(window=2)
    subject.evaluate([output(0, "a", "b"), output(1, "a", "b")], 1)
    result = subject.evaluate([output(2, "a", "a"), output(3, "a", "a")], 2)
    assert result.views["window"]["accuracy"] == 1.0
    assert result.views["cumulative"]["accuracy"] == 0.5


def test_undefined_metrics_stay_undefined():
    result = scorer().evaluate([output(0, "a", None)], 1)
    assert result.outputs and result.views["batch"]["accuracy"] is None


def test_the_detector_watches_the_monitored_metric_and_alerts_after_robustness():
    config = MonitoringConfig.model_validate(
        {
            "metrics": "Accuracy",
            "detector": "ThresholdDetector",
            "threshold.robustness": "2",
            "threshold.threshold": "0.8",
            "threshold.threshold.alert-if-greater": "false",
            "threshold.threshold.abs": "false",
        }
    )
    detector = build_detector(config, "uc")
    subject = scorer(detector=detector, monitored={"Accuracy": "accuracy"})
    offset = 0

    def batch(correct: int, wrong: int):
        nonlocal offset
        messages = []
        for index in range(correct + wrong):
            messages.append(output(offset, "a", "a" if index < correct else "b"))
            offset += 1
        return subject.evaluate(messages, offset)

    assert batch(10, 0).changes == [] and not detector.alert
    assert batch(2, 8).changes == [] and not detector.alert  # one bad batch: not yet
    started = batch(2, 8).changes
    assert [c.kind.value for c in started] == ["started"] and detector.alert
    batch(10, 0)
    stopped = batch(10, 0).changes
    assert [c.kind.value for c in stopped] == ["stopped"] and not detector.alert


def test_a_replayed_output_is_recognised_by_its_input_partition_high_water_mark():
    seen = InputHighWater()
    assert seen.first_time("in", 0, 5) and seen.first_time("in", 1, 2)
    assert not seen.first_time("in", 0, 5) and not seen.first_time("in", 0, 3)
    assert seen.first_time("in", 0, 6) and seen.first_time("other", 0, 0)
    assert seen.marks == {"in/0": 6, "in/1": 2, "other/0": 0}


def test_throughput_is_measured_between_evaluations_not_assumed_from_the_batch_wait():
    """1,000 outputs 4 s after the previous evaluation are 250/s, whatever the batch wait; the
    first evaluation has no previous one and counts over the batch wait."""
    assert records_per_second(1000, 14_000, 10_000, first_window_s=0.2) == 250.0
    assert records_per_second(1000, 14_000, None, first_window_s=0.2) == 5000.0
    assert records_per_second(50, 10_000, 10_000, first_window_s=0.5) == 100.0  # same ms
