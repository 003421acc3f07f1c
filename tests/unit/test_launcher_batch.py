"""The launcher's batch logic: parse, dead letters, predict (or test-then-train), staleness,
what the sinks receive."""

from __future__ import annotations

import dataclasses
import json

from aiokafka.structs import ConsumerRecord, TopicPartition

from services.launcher.batch import ServingModel, process_batch
from shared.algorithms.base import Algorithm
from shared.algorithms.contenders import Contenders
from shared.prepostprocessors import PrePostProcessor
from shared.records import KDDClassificationRecord
from shared.wire.influx import RecordsMeasurement

GOOD = (
    "0,tcp,http,SF,181,5450,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,8,8,0.00,0.00,0.00,0.00,1.00,0.00,"
    "0.00,9,9,1.00,0.00,0.11,0.00,0.00,0.00,0.00,0.00,normal."
)


def message(value: bytes, offset: int, line: int | None = None) -> ConsumerRecord:
    headers = [("record-id", f"kdd:{line}".encode())] if line else []
    return ConsumerRecord(
        "in", 0, offset, 1_700_000_000_000 + offset, 0, b"kdd", value, None, 3, len(value), headers
    )


class Recorder(Algorithm):
    """Records the order of calls, to check predict-before-learn."""

    name = "Recorder"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.last: str | None = None

    def learn_one(self, x, y) -> None:
        self.calls.append(f"learn {y}")
        self.last = y

    def predict_one(self, x):
        self.calls.append("predict")
        return self.last


def outputs_of(result) -> list[tuple[bytes, bytes, object]]:
    """(key, value, input partition) of each output, in order."""
    return [(key, value, tp) for tp, pairs in result.outputs.items() for key, value in pairs]


def run(messages, model, processor=None):
    measurement = RecordsMeasurement("kdd")
    return process_batch(
        "kdd-uc", measurement, messages, KDDClassificationRecord, model, processor, 42
    )


def test_each_record_is_predicted_before_it_is_learned():
    model = ServingModel(Recorder(), 7, learn=True, predict=True)
    result = run(
        [message(GOOD.encode(), 0, 1), message(GOOD.replace("normal.", "smurf.").encode(), 1, 2)],
        model,
    )
    assert model.algorithm.calls == ["predict", "learn normal", "predict", "learn smurf"]
    assert result.scored == [(None, "normal"), ("normal", "smurf")]
    first = json.loads(outputs_of(result)[0][1])
    assert outputs_of(result)[0][0] == b"in/0/0"
    assert first["id"] == "in/0/0" and first["record_id"] == "kdd:1"
    assert first["prediction"] is None and first["targets"] == ["normal"]
    assert first["model_version"] == 7 and first["usecase"] == "kdd-uc"
    assert first["event_time"] == 1_700_000_000_000
    assert first["timings"]["produced"] == 1_700_000_000_000 and first["timings"]["consumed"] == 42


def test_inference_and_training_switches():
    model = ServingModel(Recorder(), None, learn=False, predict=True)
    run([message(GOOD.encode(), 0)], model)
    assert model.algorithm.calls == ["predict"]
    model = ServingModel(Recorder(), None, learn=True, predict=False)
    result = run([message(GOOD.encode(), 0)], model)
    assert model.algorithm.calls == ["learn normal"] and result.scored == [(None, "normal")]


def test_bad_lines_become_dead_letters_with_reasons_and_the_rest_goes_on():
    bad = [
        b"1,2,3",
        GOOD.replace("181", "abc").encode(),
        b"",
        bytes([0xFF, 0xFE, 0x00, 0x81]) * 8,
        b"x" * 1_000_000,
    ]
    messages = [message(value, offset) for offset, value in enumerate(bad)]
    messages.append(message(GOOD.encode(), 99, 100))
    result = run(messages, ServingModel(Recorder(), None, learn=True, predict=True))
    reasons = [dead.reason for dead in result.dead]
    assert reasons == [
        "expected 42 fields, got 3",
        "src_bytes: not a number: 'abc'",
        "empty line",
        "not UTF-8 text",
        "expected 42 fields, got 1",
    ]
    assert [dead.message.offset for dead in result.dead] == [0, 1, 2, 3, 4]
    assert len(outputs_of(result)) == 1 and len(result.influx_lines) == 1


def test_influx_point_is_keyed_by_offset_and_holds_the_raw_line():
    result = run([message(GOOD.encode(), 12, 1)], ServingModel(None, None))
    line = result.influx_lines[0]
    assert line.startswith("kdd,partition=0,source=kdd,topic=in ")
    assert line.endswith(" 12")
    assert f'_line="{GOOD}"' in line
    assert '_target="normal"' in line and "_event_time=1700000000012i" in line
    assert result.progress_lines == ["kdd_progress,partition=0,topic=in offset=12i 0"]
    assert result.next_offsets == {TopicPartition("in", 0): 13}


def test_prepostprocessor_sees_the_batch_before_and_after_the_model():
    seen = []

    class Tagging(PrePostProcessor):
        def preprocess(self, records):
            seen.append(("pre", [r.outputs for r in records]))
            return records

        def postprocess(self, records):
            seen.append(("post", [r.outputs for r in records]))
            for record in records:
                record.outputs = ["changed"]
            return records

    result = run([message(GOOD.encode(), 0)], ServingModel(Recorder(), None, learn=True), Tagging())
    assert seen == [("pre", [[]]), ("post", [[None]])]
    assert json.loads(outputs_of(result)[0][1])["prediction"] == "changed"


class BatchOnly(Recorder):
    """A batch model: the launcher must call predict_many once, with the targets."""

    incremental = False

    def predict_many(self, xs, ys=None):
        self.calls.append(f"predict_many {len(xs)} {list(ys)}")
        return ["b"] * len(xs)


def test_a_batch_model_predicts_once_per_batch_and_does_not_learn_here():
    model = ServingModel(BatchOnly(), 3, learn=True, predict=True)
    result = run([message(GOOD.encode(), 0), message(GOOD.encode(), 1)], model)
    assert model.algorithm.calls == ["predict_many 2 ['normal', 'normal']"]
    assert result.scored == [("b", "normal"), ("b", "normal")]


def test_by_default_the_launcher_predicts_once_per_batch_and_never_learns():
    model = ServingModel(Recorder(), 4, positions={"in/0": 10})
    result = run([message(GOOD.encode(), 10), message(GOOD.encode(), 15)], model)
    assert model.algorithm.calls == ["predict", "predict"]
    outputs = [json.loads(value) for _, value, _ in outputs_of(result)]
    assert [output["model_version"] for output in outputs] == [4, 4]
    # offset 10 is the first the version had not learnt: fresh; 15 comes 5 records later
    assert [output["staleness"] for output in outputs] == [0, 5]
    assert [tp.partition for _, _, tp in outputs_of(result)] == [0, 0]


def test_staleness_counts_from_the_start_of_a_partition_the_version_never_learnt():
    model = ServingModel(Recorder(), 2, positions={"other/0": 100})
    result = run([message(GOOD.encode(), 30)], model)
    assert json.loads(outputs_of(result)[0][1])["staleness"] == 30


def test_without_a_model_staleness_is_unknown():
    result = run([message(GOOD.encode(), 3)], ServingModel(None, None))
    output = json.loads(outputs_of(result)[0][1])
    assert output["prediction"] is None and output["staleness"] is None


def test_a_learning_launcher_is_never_stale_after_its_first_record():
    model = ServingModel(Recorder(), None, learn=True)
    result = run([message(GOOD.encode(), offset) for offset in (5, 6, 7)], model)
    assert [json.loads(value)["staleness"] for _, value, _ in outputs_of(result)] == [5, 0, 0]
    assert model.positions == {"in/0": 8}


def test_with_challengers_each_output_carries_every_models_prediction():
    champion, challenger = Recorder(), Recorder()
    challenger.last = "smurf"  # it predicts otherwise until it learns
    models = Contenders({"recorder": champion, "other": challenger}, "recorder")
    smurf = GOOD.replace("normal.", "smurf.").encode()
    predicting = ServingModel(models, 3, predict=True)
    result = run([message(smurf, 0)], predicting)
    outputs = [json.loads(value) for _, value, _ in outputs_of(result)]
    assert [(o["prediction"], o["champion"], o["challengers"]) for o in outputs] == [
        (None, "recorder", {"other": "smurf"})
    ]
    assert champion.calls == challenger.calls == ["predict"]  # nothing learnt by predicting
    # learning here: each model test-then-trains (its prediction made before it learns)
    learning = ServingModel(models, 3, learn=True, predict=True)
    result = run([message(GOOD.encode(), 1), message(smurf, 2)], learning)
    outputs = [json.loads(value) for _, value, _ in outputs_of(result)]
    assert [(o["prediction"], o["challengers"]) for o in outputs] == [
        (None, {"other": "smurf"}),
        ("normal", {"other": "normal"}),
    ]
    assert challenger.calls[1:] == ["predict", "learn normal", "predict", "learn smurf"]
    models.promote("other")
    outputs = [json.loads(v) for _, v, _ in outputs_of(run([message(GOOD.encode(), 3)], learning))]
    assert [(o["prediction"], o["champion"], o["challengers"]) for o in outputs] == [
        ("smurf", "other", {"recorder": "smurf"})
    ]


def test_without_challengers_outputs_name_no_champion():
    outputs = outputs_of(run([message(GOOD.encode(), 0)], ServingModel(Recorder(), 1)))
    output = json.loads(outputs[0][1])
    assert output["champion"] is None and output["challengers"] == {}


class Probabilistic(Algorithm):
    """Fixed probabilities over four classes; predicts a class that is not the most probable,
    as a post-processed or thresholded classifier may."""

    name = "Probabilistic"

    def __init__(self, predicted: str = "c") -> None:
        self.predicted = predicted

    def learn_one(self, x, y) -> None:
        pass

    def predict_one(self, x):
        return self.predicted

    def predict_proba_one(self, x):
        return {"a": 0.5, "b": 0.3, "c": 0.15, "d": 0.05}


def test_outputs_carry_the_top_k_probabilities_and_the_predicted_class():
    model = ServingModel(Probabilistic(), 3, probabilities=1)
    output = json.loads(outputs_of(run([message(GOOD.encode(), 0, 1)], model))[0][1])
    assert output["prediction"] == "c"
    assert output["probabilities"] == {"top": {"a": 0.5, "c": 0.15}, "omitted": 2}
    model = ServingModel(Probabilistic(), 3, probabilities=0)
    assert (
        json.loads(outputs_of(run([message(GOOD.encode(), 0, 1)], model))[0][1])["probabilities"]
        is None
    )


def test_each_challenger_publishes_its_own_probabilities():
    models = Contenders(
        {"one": Probabilistic("a"), "two": Probabilistic("d"), "none": Recorder()}, "one"
    )
    model = ServingModel(models, 3, probabilities=2)
    output = json.loads(outputs_of(run([message(GOOD.encode(), 0, 1)], model))[0][1])
    assert output["probabilities"] == {"top": {"a": 0.5, "b": 0.3}, "omitted": 2}
    assert output["challenger_probabilities"] == {
        "two": {"top": {"a": 0.5, "b": 0.3, "d": 0.05}, "omitted": 1}
    }  # the Recorder gives none: absent


def test_a_learning_launcher_publishes_no_probabilities():
    model = ServingModel(Probabilistic(), 3, learn=True, probabilities=3)
    output = json.loads(outputs_of(run([message(GOOD.encode(), 0, 1)], model))[0][1])
    assert output["probabilities"] is None


def test_outputs_are_grouped_by_input_partition_in_order():
    first, second = message(GOOD.encode(), 3), message(GOOD.encode(), 4)
    other = dataclasses.replace(first, partition=1)  # partition 1, offset 3
    result = run([first, other, second], ServingModel(Recorder(), 1))
    assert {tp: [key for key, _ in pairs] for tp, pairs in result.outputs.items()} == {
        TopicPartition("in", 0): [b"in/0/3", b"in/0/4"],
        TopicPartition("in", 1): [b"in/1/3"],
    }
    assert result.output_count() == 3
    assert result.next_offsets == {TopicPartition("in", 0): 5, TopicPartition("in", 1): 4}
