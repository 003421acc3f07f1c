"""docs/wire-format.md's reference is generated from shared/wire (`make docs`): it must be up
to date, and the InfluxDB schemas it shows must be what the writers write."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.wire import reference
from shared.wire.influx import (
    LEADERBOARD_SCHEMA,
    METRICS_SCHEMA,
    PROGRESS_SCHEMA,
    RECORDS_SCHEMA,
    RELIABILITY_SCHEMA,
    LeaderboardMeasurement,
    MeasurementSchema,
    MetricsMeasurement,
    RecordsMeasurement,
    ReliabilityMeasurement,
)
from shared.wire.keys import UseCaseKeys

DOC = Path(__file__).resolve().parents[2] / "docs" / "wire-format.md"


def test_the_generated_reference_is_up_to_date():
    text = DOC.read_text(encoding="utf-8")
    assert reference.embed(text, reference.markdown()) == text, (
        "docs/wire-format.md is out of date: run `make docs`"
    )


def test_every_use_case_key_is_in_the_reference():
    keys = UseCaseKeys("<usecase>")
    built = [keys.model("<version>"), keys.model_meta("<version>"), keys.external_lock("<phase>")]
    properties = [name for name, value in vars(UseCaseKeys).items() if isinstance(value, property)]
    named = [getattr(keys, name) for name in properties]
    text = reference.markdown()
    assert [key for key in built + named if f"`{key}`" not in text] == []
    assert "trainer:cursor" not in DOC.read_text(encoding="utf-8")


def test_embedding_needs_both_markers():
    with pytest.raises(ValueError, match="lacks the markers"):
        reference.embed("no markers here", "x")
    document = f"before\n{reference.BEGIN}\nold\n{reference.END}\nafter\n"
    assert reference.embed(document, "new\n") == (
        f"before\n{reference.BEGIN}\n\nnew\n\n{reference.END}\nafter\n"
    )


def names_in(line: str) -> tuple[str, set[str], set[str]]:
    """(measurement, tag keys, field keys) of a line-protocol point whose names and values
    hold no space, comma or equals sign."""
    head, fields, _time = line.split(" ")
    measurement, *tags = head.split(",")
    return (
        measurement,
        {tag.split("=")[0] for tag in tags},
        {field.split("=")[0] for field in fields.split(",")},
    )


@pytest.mark.parametrize(
    ("schema", "line"),
    [
        (
            RECORDS_SCHEMA,
            RecordsMeasurement("<usecase>").point(
                "a;b", source="s", topic="t", partition=0, offset=7, event_time_ms=5,
                record_id="s:8", target="x",
            ),
        ),
        (PROGRESS_SCHEMA, RecordsMeasurement("<usecase>").progress_point("t", 0, 7)),
        (METRICS_SCHEMA, MetricsMeasurement("<usecase>").point("window", "accuracy", 0.5, 3, 9)),
        (
            LEADERBOARD_SCHEMA,
            LeaderboardMeasurement("<usecase>").point(
                "moa.HoeffdingTree", "window", "accuracy", 0.5, pairs=9, role="champion",
                evaluation=3, time_ms=9,
            ),
        ),
        (
            RELIABILITY_SCHEMA,
            ReliabilityMeasurement("<usecase>").point(
                "window", "calibration_error",
                {"bin": 3, "lower": 0.3, "upper": 0.4, "count": 5, "confidence": 0.35,
                 "frequency": 0.4},
                evaluation=3, time_ms=9,
            ),
        ),
    ],
)  # fmt: skip
def test_the_documented_measurements_are_what_the_writers_write(schema: MeasurementSchema, line):
    assert names_in(line) == (schema.name, set(schema.tags), set(schema.fields))


def test_bounded_probabilities_keep_the_top_k_and_the_predicted_class() -> None:
    from shared.wire.kafka import Probabilities

    distribution = {"x": 0.2, "y": 0.2, "z": 0.5, 3: 0.1}
    assert Probabilities.bounded(distribution, "z", 2) == Probabilities(
        top={"z": 0.5, "x": 0.2}, omitted=2
    )  # a tie is broken by the label
    assert Probabilities.bounded(distribution, 3, 1).top == {"z": 0.5, "3": 0.1}
    assert Probabilities.bounded(distribution, "unknown", 4).top["unknown"] == 0.0
    assert Probabilities.bounded(distribution, "z", 0) is None
    assert Probabilities.bounded(None, "z", 3) is None
    assert Probabilities.bounded({"x": float("nan")}, "x", 3) is None
