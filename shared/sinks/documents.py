"""The documents STREAMER writes to Elasticsearch: one declaration per index, from which the
index templates, the `_id`s and the boundary validation are all derived.

The original wrote dotted, spaced, slashed field names with the use case inside them and no
mapping (streamer-original.md §5, §9.20): dashboards had to hard-code a use case and pointed at
fields that were never written. Here field names are flat snake_case, the use case is a value
(`usecase`), every index has an explicit mapping with `dynamic: false`, and a document with a
field the mapping does not declare is refused before it leaves the process.

Every `_id` is built from what the document describes, never from a counter of the process
that wrote it: an evaluation is identified by the output offsets it scored (`output_topic`,
`output_offsets`), a model by its version, a prediction by its input record. A restarted
evaluator therefore overwrites a document only when it writes the same thing again (its replay
of the evaluation it was killed in), and never an older, different one.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from numbers import Integral, Real
from typing import Any

FIELD_NAME = re.compile(r"^(@timestamp|[a-z][a-z0-9_]*)$")
#: Elasticsearch refuses longer `_id`s; a longer one keeps its head and ends with its digest.
MAX_ID_BYTES = 512

#: Elasticsearch mapping of each field type we use; "text_keyword" is searchable text with an
#: aggregatable `.keyword` sub-field (Kibana's terms need the keyword).
FIELD_MAPPINGS: dict[str, dict[str, Any]] = {
    "date": {"type": "date", "format": "epoch_millis"},
    "keyword": {"type": "keyword"},
    "long": {"type": "long"},
    "double": {"type": "double"},
    "boolean": {"type": "boolean"},
    "text_keyword": {
        "type": "text",
        "fields": {"keyword": {"type": "keyword", "ignore_above": 256}},
    },
}


@dataclass(frozen=True)
class Field:
    """One field of a document: its type, whether it holds a list, which values it accepts."""

    type: str
    multi: bool = False
    choices: tuple[str, ...] | None = None
    doc: str = ""

    def mapping(self) -> dict[str, Any]:
        return FIELD_MAPPINGS[self.type]


@dataclass(frozen=True)
class IndexSpec:
    """An index: its fields, the fields its `_id` is built from (and others every document
    must carry), and an example document."""

    name: str
    fields: dict[str, Field]
    id_fields: tuple[str, ...]
    doc: str
    example: dict[str, Any] = field(default_factory=dict)
    also_required: tuple[str, ...] = ()

    @property
    def required(self) -> frozenset[str]:
        """Fields every document must carry: the time, the use case, the id's parts and
        `also_required`."""
        return frozenset(("@timestamp", "usecase", *self.id_fields, *self.also_required))

    def mappings(self) -> dict[str, Any]:
        """The index mapping; `dynamic: false` so a stray field can never add a mapping."""
        return {
            "dynamic": False,
            "properties": {name: spec.mapping() for name, spec in self.fields.items()},
        }

    def document_id(self, document: Mapping[str, Any]) -> str:
        """The deterministic `_id`: a replay overwrites the same document instead of adding one.
        An evaluation of many partitions can exceed Elasticsearch's limit: such an id keeps
        its beginning (readable) and ends with the SHA-256 of the whole (unique)."""
        joined = ":".join(str(document[name]) for name in self.id_fields)
        raw = joined.encode()
        if len(raw) <= MAX_ID_BYTES:
            return joined
        digest = hashlib.sha256(raw).hexdigest()
        head = raw[: MAX_ID_BYTES - len(digest) - 1].decode(errors="ignore")
        return f"{head}#{digest}"


#: Epoch milliseconds below this (1973-03-03) are almost surely seconds passed by mistake.
_SECONDS_LOOKALIKE = 100_000_000_000
_T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z, for the examples


def _common(**fields: Field) -> dict[str, Field]:
    return {
        "@timestamp": Field("date", doc="when the evaluator wrote it (epoch ms)"),
        "usecase": Field("keyword", doc="use case id"),
        **fields,
    }


def _scored(**fields: Field) -> dict[str, Field]:
    """Fields of a document about one evaluation: where in outputTopic it read."""
    return _common(
        output_topic=Field("keyword", doc="the outputTopic the evaluation read"),
        output_offsets=Field(
            "keyword",
            doc="offsets the evaluation scored: `<partition>:<first>-<last>` (inclusive), "
            "comma-separated, by partition",
        ),
        **fields,
    )


_SPECS = (
    IndexSpec(
        name="metrics",
        doc="one document per metric per view per evaluation",
        id_fields=("usecase", "output_topic", "output_offsets", "view", "metric"),
        also_required=("evaluation",),
        fields=_scored(
            view=Field("keyword", choices=("batch", "cumulative", "window")),
            evaluation=Field("long", doc="the evaluator's batch number (kept across restarts)"),
            metric=Field("keyword", doc="e.g. accuracy, macro_f1, mae"),
            value=Field("double", doc="absent or null when the metric is undefined"),
            defined=Field("boolean"),
            pairs=Field("long", doc="(target, prediction) pairs in that view"),
        ),
        example={
            "@timestamp": _T0,
            "usecase": "kdd-cup-99",
            "output_topic": "kdd-cup-99.outputs",
            "output_offsets": "0:1100-1199",
            "view": "cumulative",
            "evaluation": 12,
            "metric": "accuracy",
            "value": 0.97,
            "defined": True,
            "pairs": 1200,
        },
    ),
    IndexSpec(
        name="leaderboard",
        doc="with challengers: one document per model per metric per view per evaluation",
        id_fields=("usecase", "output_topic", "output_offsets", "model", "view", "metric"),
        also_required=("evaluation",),
        fields=_scored(
            model=Field("keyword", doc="the model's name in algs.props"),
            role=Field("keyword", choices=("champion", "challenger")),
            view=Field("keyword", choices=("batch", "cumulative", "window")),
            evaluation=Field("long"),
            metric=Field("keyword"),
            value=Field("double", doc="absent or null when the metric is undefined"),
            defined=Field("boolean"),
            pairs=Field("long", doc="(target, prediction) pairs of that model in that view"),
        ),
        example={
            "@timestamp": _T0,
            "usecase": "kdd-cup-99",
            "output_topic": "kdd-cup-99.outputs",
            "output_offsets": "0:1100-1199",
            "model": "moa.HoeffdingTree",
            "role": "challenger",
            "view": "window",
            "evaluation": 12,
            "metric": "accuracy",
            "value": 0.98,
            "defined": True,
            "pairs": 1000,
        },
    ),
    IndexSpec(
        name="reliability",
        doc="calibration metrics: one document per non-empty bin of the reliability table, per "
        "view per evaluation",
        id_fields=("usecase", "output_topic", "output_offsets", "view", "metric", "bin"),
        also_required=("evaluation",),
        fields=_scored(
            view=Field("keyword", choices=("batch", "cumulative", "window")),
            evaluation=Field("long"),
            metric=Field("keyword", doc="e.g. calibration_error"),
            bin=Field("long", doc="the bin's number, 0 for the lowest probabilities"),
            lower=Field("double", doc="the bin's lower edge (excluded, except 0)"),
            upper=Field("double", doc="the bin's upper edge (included)"),
            count=Field("long", doc="records whose probability falls in the bin"),
            confidence=Field("double", doc="their mean probability"),
            frequency=Field("double", doc="how often the outcome happened among them"),
        ),
        example={
            "@timestamp": _T0,
            "usecase": "kdd-cup-99",
            "output_topic": "kdd-cup-99.outputs",
            "output_offsets": "0:1100-1199",
            "view": "cumulative",
            "evaluation": 12,
            "metric": "calibration_error",
            "bin": 9,
            "lower": 0.9,
            "upper": 1.0,
            "count": 1150,
            "confidence": 0.985,
            "frequency": 0.99,
        },
    ),
    IndexSpec(
        name="batches",
        doc="one document per evaluation",
        id_fields=("usecase", "output_topic", "output_offsets"),
        also_required=("evaluation",),
        fields=_scored(
            evaluation=Field("long"),
            records=Field("long", doc="outputs scored"),
            duplicates=Field("long", doc="replayed outputs, not scored again"),
            malformed=Field("long", doc="messages that are no output (sent to the dead letters)"),
            records_per_s=Field("double"),
            latency_ms_p50=Field("double", doc="produce-to-output latency"),
            latency_ms_p95=Field("double"),
            latency_ms_max=Field("double"),
            model_version=Field("long"),
            alert=Field("boolean"),
        ),
        example={
            "@timestamp": _T0,
            "usecase": "kdd-cup-99",
            "output_topic": "kdd-cup-99.outputs",
            "output_offsets": "0:1100-1199",
            "evaluation": 12,
            "records": 100,
            "duplicates": 0,
            "malformed": 0,
            "records_per_s": 250.0,
            "latency_ms_p50": 12.5,
            "latency_ms_p95": 40.0,
            "latency_ms_max": 55.0,
            "model_version": 3,
            "alert": False,
        },
    ),
    IndexSpec(
        name="detections",
        doc="one document per detection, rewritten as it progresses; `output_offsets` are "
        "those of the evaluation it started at",
        id_fields=("usecase", "output_topic", "output_offsets", "metric"),
        fields=_scored(
            detection_id=Field("keyword", doc="the detector's name for it (alerts list it)"),
            metric=Field("keyword"),
            detector=Field("keyword"),
            start=Field("long", doc="evaluation number"),
            stop=Field("long", doc="evaluation number; absent while ongoing"),
            touched=Field("long", doc="evaluation number"),
            start_time=Field("date"),
            stop_time=Field("date"),
            touched_time=Field("date"),
            magnitude=Field("double"),
            change_start=Field(
                "long", doc="evaluation number where the change is estimated to have begun"
            ),
            active=Field("boolean"),
        ),
        example={
            "@timestamp": _T0,
            "usecase": "kdd-cup-99",
            "output_topic": "kdd-cup-99.outputs",
            "output_offsets": "0:900-999",
            "detection_id": "kdd-cup-99:accuracy:10",
            "metric": "accuracy",
            "detector": "threshold",
            "start": 10,
            "touched": 12,
            "start_time": _T0 - 2000,
            "touched_time": _T0,
            "magnitude": 0.2,
            "active": True,
        },
    ),
    IndexSpec(
        name="alerts",
        doc="one document per alert state change",
        id_fields=("usecase", "output_topic", "output_offsets", "state"),
        also_required=("evaluation",),
        fields=_scored(
            state=Field("keyword", choices=("started", "stopped")),
            metrics=Field("keyword", multi=True),
            evaluation=Field("long"),
            retrain_requested=Field("boolean"),
            detection_ids=Field("keyword", multi=True),
        ),
        example={
            "@timestamp": _T0,
            "usecase": "kdd-cup-99",
            "output_topic": "kdd-cup-99.outputs",
            "output_offsets": "0:1100-1199",
            "state": "started",
            "metrics": ["accuracy", "macro_f1"],
            "evaluation": 12,
            "retrain_requested": True,
            "detection_ids": ["kdd-cup-99:accuracy:10"],
        },
    ),
    IndexSpec(
        name="models",
        doc="one document per model version",
        id_fields=("usecase", "version"),
        fields=_common(
            version=Field("long"),
            mode=Field("keyword"),
            reason=Field("text_keyword"),
            algorithm=Field("keyword"),
            records_learned=Field("long"),
            new_records=Field("long"),
            training_seconds=Field("double"),
            size_bytes=Field("long"),
            lag_ms=Field("long"),
        ),
        example={
            "@timestamp": _T0,
            "usecase": "kdd-cup-99",
            "version": 3,
            "mode": "incremental",
            "reason": "retrain requested by an alert",
            "algorithm": "river.tree.HoeffdingTreeClassifier",
            "records_learned": 30000,
            "new_records": 10000,
            "training_seconds": 1.5,
            "size_bytes": 1048576,
            "lag_ms": 800,
        },
    ),
    IndexSpec(
        name="predictions",
        doc="a sample of the predictions",
        id_fields=("output_id",),
        fields=_common(
            output_id=Field("keyword"),
            record_id=Field("keyword"),
            prediction=Field("keyword"),
            target=Field("keyword"),
            correct=Field("boolean"),
            latency_ms=Field("double"),
            model_version=Field("long"),
        ),
        example={
            "@timestamp": _T0,
            "usecase": "kdd-cup-99",
            "output_id": "kdd-cup-99:0:1234",
            "record_id": "kddcup.csv:1234",
            "prediction": "normal.",
            "target": "normal.",
            "correct": True,
            "latency_ms": 14.2,
            "model_version": 3,
        },
    ),
)

#: Every index by its short name (the real index is `<prefix><name>`, e.g. `streamer-metrics`).
INDICES: dict[str, IndexSpec] = {spec.name: spec for spec in _SPECS}


def spec_for(index_name: str) -> IndexSpec:
    """The declaration of `index_name`; an unknown name is a programming error."""
    try:
        return INDICES[index_name]
    except KeyError:
        raise ValueError(
            f"unknown index {index_name!r}; known: {', '.join(sorted(INDICES))}"
        ) from None


def document_id(index_name: str, document: Mapping[str, Any]) -> str:
    """The `_id` of a (validated) document of `index_name`."""
    return spec_for(index_name).document_id(document)


def validate_document(index_name: str, document: Mapping[str, Any]) -> dict[str, Any]:
    """Check `document` against the declaration of `index_name` and return it normalised
    (plain ints/floats/bools, floats in integer fields rounded, dates as epoch ms, non-finite
    numbers as null, numbers in keyword fields as strings). Raise ValueError
    naming the offending field: callers are our own services, so a mismatch is a bug to fix,
    not data to index half-way."""
    spec = spec_for(index_name)
    if not isinstance(document, Mapping):
        raise ValueError(f"{index_name}: a document must be a mapping, not {type(document)}")
    unknown = sorted(str(name) for name in document if name not in spec.fields)
    if unknown:
        raise ValueError(
            f"{index_name}: unknown field(s) {', '.join(unknown)}; "
            f"declared: {', '.join(spec.fields)}"
        )
    missing = sorted(name for name in spec.required if document.get(name) is None)
    if missing:
        raise ValueError(f"{index_name}: missing required field(s) {', '.join(missing)}")
    return {
        name: _normalise(index_name, name, spec.fields[name], value)
        for name, value in document.items()
    }


def _normalise(index_name: str, name: str, spec: Field, value: Any) -> Any:
    where = f"{index_name}.{name}"
    value = _plain(value)
    if value is None:
        return None
    if spec.multi:
        if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
            raise ValueError(f"{where}: expected a list of values, got {value!r}")
        return [_scalar(where, spec, _plain(item)) for item in value]
    if isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(f"{where}: expected one value, got a list")
    return _scalar(where, spec, value)


def _plain(value: Any) -> Any:
    """numpy scalars (np.float64, np.bool_, np.int64) to Python ones, without importing numpy."""
    if hasattr(value, "dtype") and hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    return value


def _scalar(where: str, spec: Field, value: Any) -> Any:
    kind = spec.type
    if kind == "date":
        return _epoch_millis(where, value)
    if kind == "long":
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, Integral):
            return int(value)
        number = float(value)  # e.g. a lag computed in float ms: rounded, as ES would coerce
        return round(number) if math.isfinite(number) else None
    if kind == "double":
        if isinstance(value, bool) or not isinstance(value, Real):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        number = float(value)
        return number if math.isfinite(number) else None  # JSON has no NaN: undefined = null
    if kind == "boolean":
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind in ("keyword", "text_keyword"):
        if isinstance(value, bool) or not isinstance(value, (str, Integral, Real)):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        text = value if isinstance(value, str) else str(value)  # numeric labels are fine
        if spec.choices is not None and text not in spec.choices:
            raise ValueError(f"{where}: {text!r} is not one of {', '.join(spec.choices)}")
        return text
    raise AssertionError(f"{where}: no rule for field type {kind!r}")


def _epoch_millis(where: str, value: Any) -> int:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{where}: a datetime needs a time zone, got {value!r}")
        return round(value.timestamp() * 1000)
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"{where}: expected epoch milliseconds or a datetime, got {value!r}")
    if abs(value) < _SECONDS_LOOKALIKE:
        raise ValueError(f"{where}: {value!r} looks like seconds; dates are epoch milliseconds")
    return int(value)
