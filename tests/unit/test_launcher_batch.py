"""The launcher's batch logic: parse, dead letters, test-then-train, what the sinks receive."""

from __future__ import annotations

import json

from aiokafka.structs import ConsumerRecord

from services.launcher.batch import ModelSlot, process_batch
from shared.algorithms.base import Algorithm
from shared.prepostprocessors import PrePostProcessor
from shared.records import KDDClassificationRecord

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


def run(messages, model, processor=None):
    return process_batch("kdd-uc", "kdd", messages, KDDClassificationRecord, model, processor, 42)


def test_each_record_is_predicted_before_it_is_learned():
    model = ModelSlot(Recorder(), 7, learn=True, predict=True)
    result = run(
        [message(GOOD.encode(), 0, 1), message(GOOD.replace("normal.", "smurf.").encode(), 1, 2)],
        model,
    )
    assert model.algorithm.calls == ["predict", "learn normal", "predict", "learn smurf"]
    assert result.scored == [(None, "normal"), ("normal", "smurf")]
    first = json.loads(result.outputs[0][1])
    assert result.outputs[0][0] == b"in/0/0"
    assert first["id"] == "in/0/0" and first["record_id"] == "kdd:1"
    assert first["prediction"] is None and first["targets"] == ["normal"]
    assert first["model_version"] == 7 and first["usecase"] == "kdd-uc"
    assert first["event_time"] == 1_700_000_000_000
    assert first["timings"]["produced"] == 1_700_000_000_000 and first["timings"]["consumed"] == 42


def test_inference_and_training_switches():
    model = ModelSlot(Recorder(), None, learn=False, predict=True)
    run([message(GOOD.encode(), 0)], model)
    assert model.algorithm.calls == ["predict"]
    model = ModelSlot(Recorder(), None, learn=True, predict=False)
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
    result = run(messages, ModelSlot(Recorder(), None, learn=True, predict=True))
    reasons = [dead.reason for dead in result.dead]
    assert reasons == [
        "expected 42 fields, got 3",
        "src_bytes: not a number: 'abc'",
        "empty line",
        "not UTF-8 text",
        "expected 42 fields, got 1",
    ]
    assert [dead.message.offset for dead in result.dead] == [0, 1, 2, 3, 4]
    assert len(result.outputs) == 1 and len(result.influx_lines) == 1


def test_influx_point_is_keyed_by_offset_and_typed():
    result = run([message(GOOD.encode(), 12, 1)], ModelSlot(None, None, learn=True, predict=True))
    line = result.influx_lines[0]
    assert line.startswith("kdd,partition=0,source=kdd,topic=in ")
    assert line.endswith(" 12")
    assert 'protocol_type="tcp"' in line and "src_bytes=181.0" in line
    assert '_target="normal"' in line and "_event_time=1700000000012i" in line


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

    result = run([message(GOOD.encode(), 0)], ModelSlot(Recorder(), None, True, True), Tagging())
    assert seen == [("pre", [[]]), ("post", [[None]])]
    assert json.loads(result.outputs[0][1])["prediction"] == "changed"


class BatchOnly(Recorder):
    """A batch model: the launcher must call predict_many once, with the targets."""

    incremental = False

    def predict_many(self, xs, ys=None):
        self.calls.append(f"predict_many {len(xs)} {list(ys)}")
        return ["b"] * len(xs)


def test_a_batch_model_predicts_once_per_batch_and_does_not_learn_here():
    model = ModelSlot(BatchOnly(), 3, learn=True, predict=True)
    result = run([message(GOOD.encode(), 0), message(GOOD.encode(), 1)], model)
    assert model.algorithm.calls == ["predict_many 2 ['normal', 'normal']"]
    assert result.scored == [("b", "normal"), ("b", "normal")]
