"""The InfluxDB measurements: how they are written and how they are read back.

Records (`<usecase>`, written by the launcher, read by the trainer's refits and retrains): one
point per input record. Its identity is (tags `source`, `topic`, `partition`; time = the Kafka
offset as nanoseconds): unique, the same when a record is processed again after a crash (the
point is overwritten, not duplicated), and increasing in write order within a series. Fields:
the raw line (`_line`, parsed again by the record class when read: one string field costs the
server a sixth of the CPU of one field per value), its first label (`_target`), the event
time and the record id.

InfluxDB 1.x stores each field of a point separately, so a query during a write can see a
point with only some of its fields. After each successful batch the launcher writes a progress
point per topic/partition (`<usecase>_progress`, time 0, field `offset` = the batch's last
offset): every record point up to that offset is complete, and readers go no further.

Metrics (`<usecase>_metrics`, written by the evaluator, read by the API and the dashboard):
tags `view`, `metric`; fields `value`, `evaluation`; time = the evaluation's time. The
leaderboard (`<usecase>_leaderboard`, a use case with challengers): the same per model, tag
`model`, with the model's `role` at that evaluation and the `pairs` each view covers.
Reliability tables (`<usecase>_reliability`, calibration metrics): one point per non-empty
bin, tags `view`, `metric`, `bin`.

No other module writes InfluxQL: services call these readers (shared/clients/influx.py runs
the queries).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from shared.clients.line_protocol import encode_head, encode_point, encode_string
from shared.wire.kafka import partition_key

TAGS = ("source", "topic", "partition")
LINE = "_line"
TARGET = "_target"
EVENT_TIME = "_event_time"
RECORD_ID = "_record_id"
METRICS_SUFFIX = "_metrics"
LEADERBOARD_SUFFIX = "_leaderboard"
RELIABILITY_SUFFIX = "_reliability"
PROGRESS_SUFFIX = "_progress"
#: Records per query when reading everything.
PAGE = 20000


@dataclass(frozen=True)
class MeasurementSchema:
    """What a measurement holds, for docs/wire-format.md; tests/unit/test_wire_docs.py checks
    it against what the writer writes."""

    name: str
    written_by: str
    read_by: str
    tags: dict[str, str]
    fields: dict[str, str]
    time: str


RECORDS_SCHEMA = MeasurementSchema(
    name="<usecase>",
    written_by="the launcher",
    read_by="the trainer (refits, retrains)",
    tags={
        "source": "the data source (the input message's key)",
        "topic": "the input topic",
        "partition": "the input partition",
    },
    fields={
        LINE: "the raw line, parsed again by the record class when read",
        TARGET: "the record's first label (absent without one)",
        EVENT_TIME: "the record's event time, epoch ms",
        RECORD_ID: "the input's `record-id` header",
    },
    time="the input record's Kafka offset, as nanoseconds: the same point when a record is "
    "processed again",
)
PROGRESS_SCHEMA = MeasurementSchema(
    name="<usecase>" + PROGRESS_SUFFIX,
    written_by="the launcher, after each successful batch",
    read_by="the trainer, which reads no record past its partition's offset",
    tags={"topic": "the input topic", "partition": "the input partition"},
    fields={"offset": "every record point up to this offset is completely written"},
    time="0 (one point per topic/partition, overwritten)",
)
METRICS_SCHEMA = MeasurementSchema(
    name="<usecase>" + METRICS_SUFFIX,
    written_by="the evaluator",
    read_by="the API (`/usecases/{name}/metrics`) and the dashboard",
    tags={"view": "batch, cumulative or window", "metric": "the metric's name"},
    fields={"value": "the metric's value", "evaluation": "the evaluation's number"},
    time="the evaluation's time",
)


LEADERBOARD_SCHEMA = MeasurementSchema(
    name="<usecase>" + LEADERBOARD_SUFFIX,
    written_by="the evaluator, for a use case with challengers",
    read_by="the API (`/usecases/{name}/leaderboard`) and the dashboard",
    tags={
        "model": "the model's name in algs.props",
        "view": "batch, cumulative or window",
        "metric": "the metric's name",
    },
    fields={
        "value": "the metric's value (absent when undefined)",
        "pairs": "the (target, prediction) pairs the view covers",
        "role": "champion or challenger, at that evaluation",
        "evaluation": "the evaluation's number",
    },
    time="the evaluation's time",
)


RELIABILITY_SCHEMA = MeasurementSchema(
    name="<usecase>" + RELIABILITY_SUFFIX,
    written_by="the evaluator, for the calibration metrics of evaluation.metrics",
    read_by="the API (`/usecases/{name}/reliability`) and the dashboard",
    tags={
        "view": "batch, cumulative or window",
        "metric": "the calibration metric's name",
        "bin": "the bin's number, 0 for the lowest probabilities",
    },
    fields={
        "lower": "the bin's lower edge (excluded, except 0)",
        "upper": "the bin's upper edge (included)",
        "count": "records whose probability falls in the bin",
        "confidence": "their mean probability",
        "frequency": "how often the outcome happened among them",
        "evaluation": "the evaluation's number (a table is the rows of one evaluation)",
    },
    time="the evaluation's time",
)


class QueryRunner(Protocol):
    """What the readers need: InfluxQL in, rows (tags merged in) out."""

    async def query(self, influxql: str) -> list[dict[str, Any]]: ...


def quote_identifier(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(frozen=True)
class Series:
    """One series of records: a source's records of one input partition."""

    source: str
    topic: str
    partition: int

    def where(self) -> str:
        return (
            f'"source"={quote_string(self.source)} AND "topic"={quote_string(self.topic)} '
            f'AND "partition"={quote_string(str(self.partition))}'
        )


@dataclass(frozen=True)
class StoredRecord:
    """A record read back: its raw line and where it sits."""

    line: str
    target: str | None
    series: Series
    offset: int
    event_time_ms: int
    record_id: str


class RecordsMeasurement:
    """The records of one use case."""

    def __init__(self, usecase: str):
        self.name = usecase
        self.progress_name = usecase + PROGRESS_SUFFIX
        self._heads: dict[tuple[str, str, int], str] = {}

    def point(
        self,
        line: str,
        *,
        source: str,
        topic: str,
        partition: int,
        offset: int,
        event_time_ms: int,
        record_id: str,
        target: str | None = None,
    ) -> str:
        # on the launcher's hot path: a series' head is encoded once, the fields by hand
        head = self._heads.get((source, topic, partition))
        if head is None:
            if len(self._heads) > 10_000:  # sources x partitions: stays small in practice
                self._heads.clear()
            tags = {"source": source, "topic": topic, "partition": str(partition)}
            head = self._heads[(source, topic, partition)] = encode_head(self.name, tags)
        fields = (
            f"{LINE}={encode_string(line)},{EVENT_TIME}={int(event_time_ms)}i,"
            f"{RECORD_ID}={encode_string(record_id)}"
        )
        if target is not None:
            fields += f",{TARGET}={encode_string(str(target))}"
        return f"{head} {fields} {int(offset)}"

    def progress_point(self, topic: str, partition: int, offset: int) -> str:
        """Every record point of topic/partition up to `offset` is completely written."""
        tags = {"topic": topic, "partition": str(partition)}
        return encode_point(self.progress_name, tags, {"offset": offset}, 0)

    async def complete_series(self, store: QueryRunner) -> list[tuple[Series, int]]:
        """Each series with the offset up to which its points are completely written (a
        series without a progress point has nothing complete yet)."""
        progress = await store.query(
            f'SELECT "offset" FROM {quote_identifier(self.progress_name)} GROUP BY *'
        )
        complete = {
            (str(row["topic"]), str(row["partition"])): int(row["offset"]) for row in progress
        }
        found = []
        for row in await store.query(f"SHOW SERIES FROM {quote_identifier(self.name)}"):
            tags = dict(part.split("=", 1) for part in str(row["key"]).split(",")[1:])
            topic, partition = tags.get("topic", ""), tags.get("partition", "")
            if (topic, partition) in complete and partition.isdigit():
                series = Series(tags.get("source", ""), topic, int(partition))
                found.append((series, complete[(topic, partition)]))
        return found

    async def read(
        self,
        store: QueryRunner,
        series: Series,
        *,
        after: int = -1,
        until: int,
        limit: int,
        newest_first: bool = False,
    ) -> list[StoredRecord]:
        """At most `limit` complete records of `series` with after < offset <= until, oldest
        first (or newest first)."""
        order = "DESC" if newest_first else "ASC"
        rows = await store.query(
            f"SELECT * FROM {quote_identifier(self.name)} WHERE {series.where()} "
            f"AND time > {after} AND time <= {until} ORDER BY time {order} LIMIT {limit}"
        )
        return records_from_rows(rows, series)

    async def recent(
        self,
        store: QueryRunner,
        limit: int,
        between_pages: Callable[[], None] = lambda: None,
        since: Mapping[str, int] | None = None,
    ) -> tuple[list[StoredRecord], dict[str, int]]:
        """The most recent `limit` complete records (-1: all), oldest first, and per input
        partition (`<topic>/<partition>`) the offset after its last complete record. With
        `since` (`<topic>/<partition>` -> offset), only the records at or after its offset in
        the partitions it names (a retrain since a change). `between_pages` is called before
        each query (it may raise to abandon the read)."""
        records: list[StoredRecord] = []
        ends: dict[str, int] = {}
        for series, watermark in await self.complete_series(store):
            key = partition_key(series.topic, series.partition)
            ends[key] = max(ends.get(key, 0), watermark + 1)
            after = (since or {}).get(key, 0) - 1
            while True:
                between_pages()
                page = limit if limit > 0 else PAGE
                rows = await self.read(
                    store, series, after=after, until=watermark, limit=page, newest_first=limit > 0
                )
                records += rows
                if limit > 0 or len(rows) < page:
                    break
                after = rows[-1].offset
        records.sort(key=lambda record: (record.event_time_ms, record.offset))
        return (records[-limit:] if limit > 0 else records), ends


def records_from_rows(rows: Iterable[dict[str, Any]], series: Series) -> list[StoredRecord]:
    """Rows of `SELECT *` (time in ns epoch) back into records; a point still being written
    (without its line or its event time) is left out."""
    records = []
    for row in rows:
        line, event_time = row.get(LINE), row.get(EVENT_TIME)
        if line is None or event_time is None:
            continue
        target = row.get(TARGET)
        records.append(
            StoredRecord(
                line=str(line),
                target=None if target is None else str(target),
                series=series,
                offset=int(row["time"]),
                event_time_ms=int(event_time),
                record_id=str(row.get(RECORD_ID) or ""),
            )
        )
    return records


@dataclass(frozen=True)
class MetricPoint:
    """One metric value read back."""

    view: str
    metric: str
    time_ms: int
    value: float | None


class MetricsMeasurement:
    """The evaluator's metric values of one use case."""

    def __init__(self, usecase: str):
        self.name = usecase + METRICS_SUFFIX

    def point(self, view: str, metric: str, value: float, evaluation: int, time_ms: int) -> str:
        tags = {"view": view, "metric": metric}
        return encode_point(
            self.name, tags, {"value": float(value), "evaluation": evaluation}, time_ms * 1_000_000
        )

    def _where(self, clauses: list[str]) -> str:
        return f" WHERE {' AND '.join(clauses)}" if clauses else ""

    async def latest(self, store: QueryRunner, view: str | None = None) -> list[MetricPoint]:
        """The last value of each (view, metric)."""
        where = self._where([f'"view" = {quote_string(view)}'] if view else [])
        rows = await store.query(
            f'SELECT last("value") AS "value" FROM {quote_identifier(self.name)}{where} '
            'GROUP BY "view","metric"'
        )
        return [_metric(row) for row in rows]

    async def recent(
        self, store: QueryRunner, since_s: int, view: str | None = None, points: int = 1000
    ) -> list[MetricPoint]:
        """The newest `points` values of each (view, metric) of the last `since_s` seconds."""
        clauses = [f"time > now() - {int(since_s)}s"]
        if view:
            clauses.append(f'"view" = {quote_string(view)}')
        rows = await store.query(
            f'SELECT "value" FROM {quote_identifier(self.name)}{self._where(clauses)} '
            f'GROUP BY "view","metric" ORDER BY time DESC LIMIT {int(points)}'
        )
        return [_metric(row) for row in rows]

    async def buckets(self, store: QueryRunner, start_ms: int, bucket_ms: int) -> list[MetricPoint]:
        """The last value of each (view, metric) per bucket of `bucket_ms` since `start_ms`."""
        rows = await store.query(
            f'SELECT last("value") AS "value" FROM {quote_identifier(self.name)} '
            f"WHERE time >= {int(start_ms)}ms GROUP BY time({int(bucket_ms)}ms), "
            '"view", "metric" fill(none)'
        )
        return [_metric(row) for row in rows]


def _metric(row: dict[str, Any]) -> MetricPoint:
    value = row.get("value")
    return MetricPoint(
        view=str(row.get("view", "")),
        metric=str(row.get("metric", "")),
        time_ms=int(row["time"]) // 1_000_000,
        value=float(value) if isinstance(value, int | float) else None,
    )


@dataclass(frozen=True)
class ModelScore:
    """One value of the leaderboard read back."""

    model: str
    view: str
    metric: str
    time_ms: int
    value: float | None
    pairs: int | None = None
    role: str | None = None


class LeaderboardMeasurement:
    """The evaluator's metric values per model (champion and challengers) of one use case."""

    def __init__(self, usecase: str):
        self.name = usecase + LEADERBOARD_SUFFIX

    def point(
        self,
        model: str,
        view: str,
        metric: str,
        value: float | None,
        *,
        pairs: int,
        role: str,
        evaluation: int,
        time_ms: int,
    ) -> str:
        fields: dict[str, Any] = {"pairs": pairs, "role": role, "evaluation": evaluation}
        if value is not None:
            fields["value"] = float(value)
        tags = {"model": model, "view": view, "metric": metric}
        return encode_point(self.name, tags, fields, time_ms * 1_000_000)

    async def latest(self, store: QueryRunner, view: str | None = None) -> list[ModelScore]:
        """The newest point of each (model, view, metric): its value (None when undefined
        then), pairs and role."""
        where = f' WHERE "view" = {quote_string(view)}' if view else ""
        rows = await store.query(
            f'SELECT "value", "pairs", "role" FROM {quote_identifier(self.name)}{where} '
            'GROUP BY "model", "view", "metric" ORDER BY time DESC LIMIT 1'
        )
        return [_score(row) for row in rows]

    async def buckets(
        self, store: QueryRunner, start_ms: int, bucket_ms: int, view: str, metric: str
    ) -> list[ModelScore]:
        """The last value of each model's `metric` in `view` per bucket since `start_ms`."""
        rows = await store.query(
            f'SELECT last("value") AS "value" FROM {quote_identifier(self.name)} '
            f'WHERE time >= {int(start_ms)}ms AND "view" = {quote_string(view)} '
            f'AND "metric" = {quote_string(metric)} '
            f'GROUP BY time({int(bucket_ms)}ms), "model", "view", "metric" fill(none)'
        )
        return [_score(row) for row in rows]


def _score(row: dict[str, Any]) -> ModelScore:
    value, pairs, role = row.get("value"), row.get("pairs"), row.get("role")
    return ModelScore(
        model=str(row.get("model", "")),
        view=str(row.get("view", "")),
        metric=str(row.get("metric", "")),
        time_ms=int(row["time"]) // 1_000_000,
        value=float(value) if isinstance(value, int | float) else None,
        pairs=int(pairs) if isinstance(pairs, int | float) else None,
        role=str(role) if role is not None else None,
    )


@dataclass(frozen=True)
class ReliabilityRow:
    """One bin of a reliability table read back."""

    view: str
    metric: str
    bin: int
    lower: float
    upper: float
    count: int
    confidence: float
    frequency: float
    evaluation: int
    time_ms: int


class ReliabilityMeasurement:
    """The reliability tables of a use case's calibration metrics (one row per non-empty bin
    per evaluation)."""

    def __init__(self, usecase: str):
        self.name = usecase + RELIABILITY_SUFFIX

    def point(
        self, view: str, metric: str, row: dict[str, Any], evaluation: int, time_ms: int
    ) -> str:
        """`row`: a bin of `Calibration.table()`."""
        tags = {"view": view, "metric": metric, "bin": str(int(row["bin"]))}
        fields = {
            "lower": float(row["lower"]),
            "upper": float(row["upper"]),
            "count": int(row["count"]),
            "confidence": float(row["confidence"]),
            "frequency": float(row["frequency"]),
            "evaluation": evaluation,
        }
        return encode_point(self.name, tags, fields, time_ms * 1_000_000)

    async def latest(self, store: QueryRunner, view: str | None = None) -> list[ReliabilityRow]:
        """The newest table of each (view, metric): the bins its last evaluation wrote (a bin
        the window view emptied since is left out), lowest first. An evaluation's points share
        its time, which also orders evaluations of an evaluator that started again from 1."""
        where = f' WHERE "view" = {quote_string(view)}' if view else ""
        rows = await store.query(
            f"SELECT * FROM {quote_identifier(self.name)}{where} "
            'GROUP BY "view", "metric", "bin" ORDER BY time DESC LIMIT 1'
        )
        found = [_reliability(row) for row in rows]
        newest: dict[tuple[str, str], int] = {}
        for row in found:
            key = (row.view, row.metric)
            newest[key] = max(newest.get(key, row.time_ms), row.time_ms)
        return sorted(
            (row for row in found if row.time_ms == newest[(row.view, row.metric)]),
            key=lambda row: (row.view, row.metric, row.bin),
        )


def _reliability(row: dict[str, Any]) -> ReliabilityRow:
    return ReliabilityRow(
        view=str(row.get("view", "")),
        metric=str(row.get("metric", "")),
        bin=int(row.get("bin", 0)),
        lower=float(row.get("lower") or 0.0),
        upper=float(row.get("upper") or 0.0),
        count=int(row.get("count") or 0),
        confidence=float(row.get("confidence") or 0.0),
        frequency=float(row.get("frequency") or 0.0),
        evaluation=int(row.get("evaluation") or 0),
        time_ms=int(row["time"]) // 1_000_000,
    )


async def usecases_with_metrics(store: QueryRunner) -> set[str]:
    """Use cases whose evaluator has written metrics."""
    rows = await store.query("SHOW MEASUREMENTS")
    return {
        str(row["name"]).removesuffix(METRICS_SUFFIX)
        for row in rows
        if str(row.get("name", "")).endswith(METRICS_SUFFIX)
    }
