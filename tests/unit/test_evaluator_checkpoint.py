"""The evaluator's checkpoint without Redis: a scorer resumed from its sealed state continues
exactly like one that never stopped (metrics, window, detector, dedup), a tampered state is
refused, the documents of an evaluation are named after the offsets it read."""

from __future__ import annotations

import random

import pytest
from aiokafka.structs import ConsumerRecord
from sklearn.metrics import accuracy_score, f1_score

from services.evaluator import documents
from services.evaluator.checkpoint import (
    EvaluatorState,
    Pending,
    seal_state,
    settings_of,
    unseal_state,
)
from services.evaluator.scoring import Scorer, Span
from shared.config import MonitoringConfig
from shared.metrics.evaluation import MetricSet
from shared.metrics.registry import build_metrics
from shared.modelstore import ModelIntegrityError
from shared.monitoring.factory import build_detector
from shared.sinks.documents import document_id, validate_document
from shared.wire.kafka import Output, Timings
from shared.wire.store import ModelMeta

SECRET = b"unit-test-secret"
T0 = 1_735_689_600_000
LABELS = ("normal.", "smurf.", "neptune.")


def message(partition: int, offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(
        "out", partition, offset, T0 + 40, 0, b"k", value, None, 1, len(value), []
    )


def output(input_offset: int, target: str, prediction: str) -> bytes:
    return Output(
        id=f"in/{input_offset % 2}/{input_offset}",
        record_id=f"s:{input_offset}",
        usecase="uc",
        source="s",
        event_time=T0,
        targets=[target],
        prediction=prediction,
        model_version=1,
        timings=Timings(produced=T0, consumed=T0 + 5, predicted=T0 + 9),
    ).encode()


def stream(count: int, seed: int = 7) -> tuple[list[list[ConsumerRecord]], list[tuple[str, str]]]:
    """Batches of outputs (two partitions) whose accuracy drifts down then up, with replays
    and malformed messages mixed in; and the (target, prediction) pairs scored once each."""
    rng = random.Random(seed)
    batches, pairs, offsets = [], [], [0, 0]
    written: list[tuple[int, bytes]] = []
    for index in range(count):
        correct = 0.95 if index < 40 or index >= 100 else 0.4  # a drift in the middle
        target = rng.choice(LABELS)
        prediction = target if rng.random() < correct else rng.choice(LABELS)
        pairs.append((target, prediction))
        written.append((index % 2, output(index, target, prediction)))
        if index % 37 == 36:  # a launcher replay: an earlier output of this partition again
            written.append(written[-5])
        if index % 53 == 52:
            written.append((index % 2, b'{"id": "in/0/1"'))  # cut short: not an output
    batch: list[ConsumerRecord] = []
    for partition, value in written:
        batch.append(message(partition, offsets[partition], value))
        offsets[partition] += 1
        if len(batch) == 10:
            batches.append(batch)
            batch = []
    if batch:
        batches.append(batch)
    return batches, pairs


def scorer() -> Scorer:
    monitoring = MonitoringConfig.model_validate(
        {
            "metrics": "Accuracy",
            "detector": "ThresholdDetector",
            "threshold.robustness": "2",
            "threshold.threshold": "0.8",
            "threshold.threshold.alert-if-greater": "false",
            "threshold.threshold.abs": "false",
        }
    )
    metrics = build_metrics(["Accuracy", "MacroF1"])
    detector = build_detector(monitoring, "uc")
    monitored = {"Accuracy": "accuracy"}
    return Scorer(MetricSet(metrics, window=50), detector, monitored, "batch", False, "out")


def summary(result) -> tuple:
    return (
        result.index,
        result.views,
        result.pairs,
        result.duplicates,
        result.malformed,
        [(change.kind, change.detection) for change in result.changes],
        result.span,
    )


@pytest.mark.parametrize("cut", [1, 7, 12, 15])
def test_a_scorer_resumed_from_its_sealed_state_continues_exactly(cut):
    batches, pairs = stream(160)
    reference = scorer()
    expected = [summary(reference.evaluate(batch, 1000 * i)) for i, batch in enumerate(batches)]

    first = scorer()
    for i, batch in enumerate(batches[:cut]):
        first.evaluate(batch, 1000 * i)
    state = EvaluatorState("settings", first.views, first.progress)
    sealed = seal_state(SECRET, "uc", state)
    del first

    resumed = scorer()
    saved = unseal_state(SECRET, "uc", cut, sealed)
    resumed.views, resumed.progress = saved.views, saved.progress
    got = [summary(resumed.evaluate(b, 1000 * i)) for i, b in enumerate(batches) if i >= cut]
    assert got == expected[cut:]
    assert any(result[5] for result in expected), "the stream must make the detector change"

    # and the end is what scikit-learn says of every output scored once
    targets, predictions = zip(*pairs, strict=True)
    final = got[-1][1]["cumulative"]
    assert final["accuracy"] == pytest.approx(accuracy_score(targets, predictions), abs=1e-12)
    assert final["macro_f1"] == pytest.approx(
        f1_score(targets, predictions, average="macro"), abs=1e-12
    )
    assert got[-1][2]["cumulative"] == len(pairs)


def test_a_tampered_or_foreign_checkpoint_is_refused():
    subject = scorer()
    sealed = seal_state(SECRET, "uc", EvaluatorState("s", subject.views, subject.progress))
    tampered = sealed[:-1] + bytes([sealed[-1] ^ 1])
    with pytest.raises(ModelIntegrityError):
        unseal_state(SECRET, "uc", 0, tampered)
    with pytest.raises(ModelIntegrityError):
        unseal_state(b"another secret", "uc", 0, sealed)
    with pytest.raises(ModelIntegrityError):
        unseal_state(SECRET, "other-usecase", 0, sealed)
    with pytest.raises(ModelIntegrityError):
        unseal_state(SECRET, "uc", 1, sealed)  # an older state passed off as a newer one


def test_the_pending_evaluation_round_trips():
    pending = Pending(12, 1_735_689_600_000, {0: 99, 3: 1042})
    assert Pending.decode(pending.encode().encode()) == pending


def test_only_metric_and_monitoring_settings_make_a_checkpoint_foreign(tmp_path):
    from dataclasses import replace

    from shared.config.usecase import load_usecase

    folder = tmp_path / "uc"
    folder.mkdir()
    (folder / "streaming.props").write_text("mainTopic=a\noutputTopic=b\nproblem.type=Generic\n")
    (folder / "algs.props").write_text("algorithm=X\nevaluation.metrics=Accuracy\n")
    usecase = load_usecase(folder)
    base = settings_of(usecase)
    later = replace(usecase, algs=usecase.algs.model_copy(update={"training_interval": 5}))
    assert settings_of(later) == base
    window = replace(usecase, algs=usecase.algs.model_copy(update={"evaluation_window": 7}))
    assert settings_of(window) != base
    (folder / "metrics.py").write_text("class Mine: ...\n")
    assert settings_of(usecase) != base


def test_a_span_names_the_offsets_an_evaluation_read():
    batches, _ = stream(30)
    span = Span.of("out", batches[1])
    assert span.text == "0:5-9,1:5-9"
    assert Span.parse("out", span.text) == span
    assert span.next_offsets() == {0: 10, 1: 10} and span.ends == {0: 9, 1: 9}
    with pytest.raises(ValueError, match="is not <partition>:<first>-<last>"):
        Span.parse("out", "0:5")


def test_each_document_of_an_evaluation_is_valid_and_named_after_its_offsets():
    batches, _ = stream(160)
    subject = scorer()
    results = [subject.evaluate(batch, T0 + i) for i, batch in enumerate(batches)]
    result = next(r for r in results if r.changes)
    prefix = f"uc:out:{result.span.text}"

    metric_docs = documents.metric_documents("uc", result)
    assert len(metric_docs) == 3 * 2  # three views, two metrics
    for document in metric_docs:
        validate_document("metrics", document)
    assert {document_id("metrics", d) for d in metric_docs} == {
        f"{prefix}:{view}:{metric}"
        for view in ("batch", "cumulative", "window")
        for metric in ("accuracy", "macro_f1")
    }
    batch = documents.batch_document("uc", result, 12.5, alert=True)
    assert document_id("batches", validate_document("batches", batch)) == prefix
    assert batch["duplicates"] == result.duplicates and batch["malformed"] == result.malformed
    alert = documents.alert_document(
        "uc", result, active=True, metrics=["accuracy"], retrain_requested=True, detection_ids=[]
    )
    assert document_id("alerts", validate_document("alerts", alert)) == f"{prefix}:started"
    start = Span.parse("out", "0:1-2")
    detection = documents.detection_document("uc", result.changes[0], start, result.time_ms)
    assert document_id("detections", validate_document("detections", detection)) == (
        "uc:out:0:1-2:Accuracy"
    )
    prediction = documents.prediction_document("uc", result.outputs[0], result.time_ms)
    assert document_id("predictions", validate_document("predictions", prediction)) == (
        result.outputs[0].id
    )
    assert prediction["latency_ms"] == 9.0 and prediction["@timestamp"] == T0
    meta = ModelMeta(version=4, created_at=1_735_689_600.5, mode="stream", records_learned=9)
    model = validate_document("models", documents.model_document("uc", meta))
    assert model["@timestamp"] == 1_735_689_600_500 and document_id("models", model) == "uc:4"


def test_malformed_outputs_say_what_is_wrong():
    subject = scorer()
    bad = [
        message(0, 0, b"not json"),
        message(0, 1, b'{"id": "in/0/1"}'),
        message(0, 2, output(2, "a", "a").replace(b'"in/0/2"', b'"no-offset"')),
    ]
    reasons = [rejected.reason for rejected in subject.evaluate(bad, 1).rejected]
    assert reasons[0].startswith("not an output: value: Invalid JSON")
    assert "record_id: Field required" in reasons[1] and "timings: Field required" in reasons[1]
    assert reasons[2] == "not an output: id 'no-offset' is not <topic>/<partition>/<offset>"
