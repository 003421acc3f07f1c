"""The output message's fast encoding (the launcher's, one per record) is the model's."""

from __future__ import annotations

import inspect
import json
import math

import pytest

from shared.wire.kafka import Output, Probabilities, Timings

TIMINGS = ("produced", "consumed", "predicted")
PLAIN = {
    "id": "in/0/7",
    "record_id": "kdd:8",
    "usecase": "uc",
    "source": "kdd",
    "event_time": 1_700_000_000_000,
    "prediction": "smurf",
    "champion": None,
    "challengers": {},
    "probabilities": None,
    "challenger_probabilities": {},
    "targets": ["smurf"],
    "model_version": 3,
    "staleness": 0,
    "produced": 1,
    "consumed": 2,
    "predicted": 3,
}
SHARES = Probabilities(top={"smurf": 0.75, "normal": 0.25}, omitted=2)
CASES = [
    PLAIN,
    PLAIN
    | {
        "champion": "tree",
        "challengers": {"moa": "normal", "nb": {"a": 1}},
        "probabilities": SHARES,
        "challenger_probabilities": {"moa": SHARES},
    },
    PLAIN
    | {
        "event_time": None,
        "prediction": math.nan,
        "challengers": {"x": math.inf},
        "targets": [],
        "model_version": None,
        "staleness": None,
        "produced": None,
    },
    PLAIN | {"prediction": 2.5, "source": 'a "quoted" \\ source', "targets": ["1", "é"]},
    PLAIN | {"prediction": True},
    PLAIN | {"prediction": 7},
]


@pytest.mark.parametrize("fields", CASES)
def test_the_fast_encoding_is_the_models(fields):
    timings = Timings(**{name: fields[name] for name in TIMINGS})
    model = Output(**{k: v for k, v in fields.items() if k not in TIMINGS}, timings=timings)
    encoded = Output.encode_fields(**fields)
    assert encoded == model.encode()
    assert Output.decode(encoded) == Output.decode(model.encode())
    json.loads(encoded)  # plain JSON: NaN and infinities became null


def test_the_fast_encoding_takes_every_field_of_the_model():
    parameters = set(inspect.signature(Output.encode_fields).parameters)
    assert parameters == (set(Output.model_fields) - {"timings"}) | set(TIMINGS)
    assert set(Timings.model_fields) == set(TIMINGS)
