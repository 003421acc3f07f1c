"""The evaluator's scoring step: duplicates count once, three views, the detector sees the
monitored view, latencies come from the records' timings, probability metrics get the outputs'
probabilities and their reliability tables reach the result and its documents."""

from __future__ import annotations

import math

import pytest
from aiokafka.structs import ConsumerRecord

from services.evaluator.documents import reliability_documents
from services.evaluator.origins import ORIGIN_EVALUATIONS, InputOrigins, change_origin
from services.evaluator.scoring import InputHighWater, Scorer, records_per_second
from shared.config import MonitoringConfig
from shared.metrics.evaluation import MetricSet
from shared.metrics.registry import build_metrics
from shared.monitoring.factory import build_detector
from shared.wire.kafka import Output, Probabilities, Timings


def output(
    offset: int,
    target: str,
    prediction: str | None,
    produced: int = 1000,
    input_partition: int = 0,
    input_offset: int | None = None,
    probabilities: dict[str, float] | None = None,
) -> ConsumerRecord:
    value = Output(
        id=f"in/{input_partition}/{offset if input_offset is None else input_offset}",
        record_id=f"s:{offset}",
        usecase="uc",
        source="s",
        event_time=produced,
        targets=[target],
        prediction=prediction,
        model_version=2,
        timings=Timings(produced=produced, consumed=None, predicted=None),
        probabilities=Probabilities(top=probabilities) if probabilities else None,
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


def accuracy_below(threshold: float, robustness: int) -> MonitoringConfig:
    return MonitoringConfig.model_validate(
        {
            "metrics": "Accuracy",
            "detector": "ThresholdDetector",
            "threshold.robustness": str(robustness),
            "threshold.threshold": str(threshold),
            "threshold.threshold.alert-if-greater": "false",
            "threshold.threshold.abs": "false",
        }
    )


def test_the_detector_watches_the_monitored_metric_and_alerts_after_robustness():
    detector = build_detector(accuracy_below(0.8, robustness=2), "uc")
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


def test_an_alert_locates_its_change_in_the_input_partitions():
    """Two input partitions, 10 outputs of each per evaluation (input offsets with gaps: a
    transaction marker takes one); accuracy falls from evaluation 3: the change begins after
    the last input offsets scored before evaluation 3."""
    detector = build_detector(accuracy_below(0.8, robustness=2), "uc")
    subject = scorer(detector=detector, monitored={"Accuracy": "accuracy"})
    out_offset, next_input = 0, {0: 0, 1: 100}
    for evaluation in range(1, 5):
        messages = []
        for partition in (0, 1):
            for index in range(10):
                prediction = "a" if evaluation < 3 or index < 2 else "b"
                messages.append(
                    output(out_offset, "a", prediction, 1000, partition, next_input[partition])
                )
                out_offset += 1
                next_input[partition] += 1
            next_input[partition] += 1  # the marker of the block's transaction
        subject.evaluate(messages, evaluation)
    assert detector.alert and change_origin(detector) == 3
    # the offset after the last one scored before evaluation 3: the marker, 21 (a reader seeking
    # there gets 22 first), not evaluation 2's last record
    assert subject.views.origins.since(3) == {"in/0": 21, "in/1": 121}
    assert subject.views.origins.since(1) == {"in/0": 0, "in/1": 100}  # first seen there


def test_input_origins_are_bounded_and_clamp_older_evaluations_to_the_oldest_kept():
    origins = InputOrigins()
    assert origins.since(1) == {}
    for evaluation in range(1, ORIGIN_EVALUATIONS + 11):
        origins.note(evaluation, {"in/0": 10 * evaluation - 1}, {"in/0": 10 * evaluation})
    assert len(origins.by_evaluation) == ORIGIN_EVALUATIONS
    assert origins.since(11) == {"in/0": 110}
    assert origins.since(3) == origins.since(11)  # forgotten: the oldest kept
    assert origins.since(10**6) == {"in/0": 10 * (ORIGIN_EVALUATIONS + 10)}
    origins.note(10**6, {}, {"in/1": 7})  # a partition first seen: its first scored offset
    assert origins.since(10**6) == {"in/1": 7}


def test_probability_metrics_score_the_outputs_probabilities_and_tables_reach_the_documents():
    metrics = build_metrics(["Accuracy", "LogLossMetric", "CalibrationMetric"])
    subject = Scorer(MetricSet(metrics, window=2), None, {}, "batch", False)
    result = subject.evaluate(
        [
            output(0, "1", "1", probabilities={"1": 0.8, "0": 0.2}),
            output(1, "0", "1", probabilities={"1": 0.6, "0": 0.4}),
            output(2, "0", None),  # before any model version: no probabilities, no pair
            output(3, "0", "0", probabilities={"0": 0.95, "1": 0.05}),
        ],
        1,
    )
    cumulative = result.views["cumulative"]
    wanted = (-math.log(0.8) - math.log(0.4) - math.log(0.95)) / 3
    assert cumulative["log_loss"] == pytest.approx(wanted, rel=1e-12)
    assert cumulative["accuracy"] == 2 / 3
    table = result.tables["cumulative"]["calibration_error"]
    # top-label confidences 0.8 (right), 0.6 (wrong), 0.95 (right)
    assert [(row["bin"], row["count"], row["frequency"]) for row in table] == [
        (5, 1, 0.0), (7, 1, 1.0), (9, 1, 1.0),
    ]  # fmt: skip
    # the window's last two pairs: one without probabilities (skipped, yet counted), one 0.95
    assert [row["bin"] for row in result.tables["window"]["calibration_error"]] == [9]
    documents = reliability_documents("uc", result)
    assert len(documents) == 3 + 3 + 1  # batch, cumulative, window
    assert {(d["view"], d["metric"], d["evaluation"]) for d in documents} >= {
        ("window", "calibration_error", 1)
    }
    assert documents[0]["output_offsets"] == "0:0-3"
