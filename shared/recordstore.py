"""How records are stored in InfluxDB, shared by the launcher (writes) and the trainer (reads).

One measurement per use case. A point's identity is (tags `source`, `topic`, `partition`; time =
the Kafka offset in nanoseconds): unique, the same when a record is processed again after a
crash (the point is overwritten, not duplicated), and increasing in write order within a series,
so the trainer's per-series cursor never skips a point written late. The event time is a field.

InfluxDB 1.x stores each field of a point separately, so a query running during a write can see
a point with only some of its fields. The launcher therefore writes, after each successful
batch, a progress point per topic/partition (measurement `<usecase>_progress`, time 0, field
`offset` = the batch's last offset): every point up to that offset is complete, and the trainer
reads no further.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.clients.line_protocol import encode_point
from shared.records.base import TimeRecord

TAGS = ("source", "topic", "partition")
EVENT_TIME = "_event_time"
RECORD_ID = "_record_id"
TARGET = "_target"
META_FIELDS = frozenset({EVENT_TIME, RECORD_ID})


def measurement_for(usecase: str) -> str:
    return usecase


def progress_measurement(measurement: str) -> str:
    return f"{measurement}_progress"


def progress_point(measurement: str, topic: str, partition: int, offset: int) -> str:
    """Every record point of topic/partition up to `offset` is completely written."""
    tags = {"topic": topic, "partition": str(partition)}
    return encode_point(progress_measurement(measurement), tags, {"offset": offset}, 0)


def record_point(
    measurement: str,
    record: TimeRecord,
    *,
    topic: str,
    partition: int,
    offset: int,
    event_time_ms: int,
    record_id: str,
) -> str:
    """The line-protocol point of one record (values typed, targets as `_target`, `_target_1`)."""
    fields: dict[str, Any] = dict(record.values)
    for index, target in enumerate(record.targets):
        fields[TARGET if index == 0 else f"{TARGET}_{index}"] = target
    fields[EVENT_TIME] = event_time_ms
    fields[RECORD_ID] = record_id
    tags = {"source": record.source, "topic": topic, "partition": str(partition)}
    return encode_point(measurement, tags, fields, offset)


@dataclass(frozen=True)
class StoredExample:
    """A record read back for training: features, first target, and where it sits."""

    x: dict[str, float | str]
    y: Any
    series: tuple[str, str, str]
    position: int
    event_time_ms: int


def examples_from_rows(rows: Iterable[dict[str, Any]]) -> list[StoredExample]:
    """Rows of `SELECT * ... GROUP BY *` (time in ns epoch) back into training examples."""
    examples = []
    for row in rows:
        if row.get(EVENT_TIME) is None:
            continue  # a point still being written (see the module docstring)
        x = {
            key: value
            for key, value in row.items()
            if value is not None
            and key != "time"
            and key not in TAGS
            and key not in META_FIELDS
            and not key.startswith(TARGET)
        }
        series = (str(row.get("source", "")), str(row.get("topic", "")), str(row.get("partition")))
        examples.append(
            StoredExample(x, row.get(TARGET), series, int(row["time"]), int(row[EVENT_TIME]))
        )
    return examples
