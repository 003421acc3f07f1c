"""Documents, ids, templates and the sink's buffer, without Elasticsearch."""

from __future__ import annotations

import math
import re
import time
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pytest
from elasticsearch import AsyncElasticsearch

from shared.sinks.documents import (
    FIELD_NAME,
    INDICES,
    MAX_ID_BYTES,
    document_id,
    spec_for,
    validate_document,
)
from shared.sinks.elastic import (
    DEFAULT_PREFIX,
    ElasticSink,
    check_prefix,
    index_template,
)

T0 = 1_735_689_600_000


def metric_doc(n: int = 1, **overrides: object) -> dict:
    """The accuracy of evaluation `n` (which read offset n of partition 0); keyword arguments
    replace fields."""
    doc = {
        "@timestamp": T0 + n,
        "usecase": "kdd",
        "output_topic": "kdd.out",
        "output_offsets": f"0:{n}-{n}",
        "view": "cumulative",
        "evaluation": n,
        "metric": "accuracy",
        "value": 0.5,
        "defined": True,
        "pairs": 10,
    }
    doc.update(overrides)
    return doc


def metric_id(n: int) -> str:
    """The `_id` of metric_doc(n): what it describes, not a counter."""
    return f"kdd:kdd.out:0:{n}-{n}:cumulative:accuracy"


@pytest.fixture
async def sink():
    """A sink whose client is never used by these tests (nothing listens on port 1)."""
    created = ElasticSink(AsyncElasticsearch("http://127.0.0.1:1"), max_documents=5, batch_size=2)
    yield created
    await created._client.close()


# -- declarations ----------------------------------------------------------------------------


def test_every_index_is_declared():
    assert set(INDICES) == {
        "metrics",
        "leaderboard",
        "batches",
        "detections",
        "alerts",
        "models",
        "predictions",
        "reliability",
    }


@pytest.mark.parametrize("name", sorted(INDICES))
def test_field_names_are_flat_snake_case(name):
    bad = [field for field in INDICES[name].fields if not FIELD_NAME.match(field)]
    assert bad == []
    assert all(re.fullmatch(r"@timestamp|[a-z][a-z0-9_]*", f) for f in INDICES[name].fields)


@pytest.mark.parametrize("name", sorted(INDICES))
def test_every_index_has_time_and_use_case_and_a_strict_mapping(name):
    mappings = INDICES[name].mappings()
    assert mappings["dynamic"] is False
    assert mappings["properties"]["@timestamp"] == {"type": "date", "format": "epoch_millis"}
    assert mappings["properties"]["usecase"] == {"type": "keyword"}
    assert set(INDICES[name].id_fields) <= set(INDICES[name].fields)


@pytest.mark.parametrize("name", sorted(INDICES))
def test_every_example_is_valid(name):
    example = INDICES[name].example
    assert validate_document(name, example) == example


def test_declared_types_match_the_contract():
    types = {
        name: {field: spec.type for field, spec in INDICES[name].fields.items()} for name in INDICES
    }
    assert types["metrics"]["value"] == "double"
    assert types["metrics"]["defined"] == "boolean"
    assert types["detections"]["start_time"] == "date"
    assert types["alerts"]["metrics"] == "keyword" and INDICES["alerts"].fields["metrics"].multi
    assert INDICES["models"].mappings()["properties"]["reason"] == {
        "type": "text",
        "fields": {"keyword": {"type": "keyword", "ignore_above": 256}},
    }


# -- validation -------------------------------------------------------------------------------


def test_unknown_field_is_named():
    with pytest.raises(ValueError, match=r"unknown field\(s\) accuracy\.macro"):
        validate_document("metrics", metric_doc(**{"accuracy.macro": 1.0}))


def test_unknown_index_is_named():
    with pytest.raises(ValueError, match="unknown index 'evaluation'"):
        validate_document("evaluation", metric_doc())


@pytest.mark.parametrize("field", ["@timestamp", "usecase", "view", "evaluation", "metric"])
def test_required_fields(field):
    doc = metric_doc()
    del doc[field]
    with pytest.raises(ValueError, match=f"missing required field\\(s\\) {re.escape(field)}"):
        validate_document("metrics", doc)
    with pytest.raises(ValueError, match="missing required"):
        validate_document("metrics", metric_doc(**{field: None}))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("evaluation", "3", "expected an integer"),
        ("evaluation", True, "expected an integer"),
        ("value", "0.5", "expected a number"),
        ("value", False, "expected a number"),
        ("defined", 1, "expected true or false"),
        ("view", "sliding", "not one of batch, cumulative, window"),
        ("metric", ["accuracy"], "expected one value"),
        ("metric", {"a": 1}, "expected a string"),
        ("@timestamp", "2025-01-01", "epoch milliseconds"),
        ("@timestamp", 1_735_689_600, "looks like seconds"),
        ("@timestamp", datetime(2025, 1, 1), "needs a time zone"),
        ("@timestamp", math.nan, "epoch milliseconds"),
    ],
)
def test_wrong_types_are_refused_with_the_field_name(field, value, message):
    with pytest.raises(ValueError, match=rf"metrics\.{re.escape(field)}: .*{message}"):
        validate_document("metrics", metric_doc(**{field: value}))


def test_normalisation():
    doc = validate_document(
        "metrics",
        metric_doc(
            **{
                "@timestamp": datetime(2025, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))),
                "evaluation": np.int64(7),
                "value": np.float64("nan"),
                "defined": np.bool_(False),
                "pairs": np.int32(3),
            }
        ),
    )
    assert doc["@timestamp"] == T0
    assert doc["evaluation"] == 7 and type(doc["evaluation"]) is int
    assert doc["value"] is None  # undefined: null, never NaN (invalid JSON) nor 0
    assert doc["defined"] is False
    assert doc["pairs"] == 3 and type(doc["pairs"]) is int


def test_floats_in_integer_fields_are_rounded():
    model = validate_document("models", {**INDICES["models"].example, "lag_ms": 812.6})
    assert model["lag_ms"] == 813 and type(model["lag_ms"]) is int
    assert validate_document("metrics", metric_doc(pairs=math.nan))["pairs"] is None


def test_infinite_double_becomes_null_and_numeric_labels_become_strings():
    doc = validate_document("metrics", metric_doc(value=math.inf))
    assert doc["value"] is None
    prediction = validate_document(
        "predictions", {**INDICES["predictions"].example, "prediction": 3, "target": 2.5}
    )
    assert prediction["prediction"] == "3" and prediction["target"] == "2.5"


def test_multi_valued_fields_take_lists_only():
    alert = dict(INDICES["alerts"].example)
    assert validate_document("alerts", {**alert, "metrics": ("mae",)})["metrics"] == ["mae"]
    with pytest.raises(ValueError, match=r"alerts\.metrics: expected a list"):
        validate_document("alerts", {**alert, "metrics": "mae"})
    with pytest.raises(ValueError, match=r"alerts\.detection_ids: expected a string"):
        validate_document("alerts", {**alert, "detection_ids": [None]})


def test_optional_fields_may_be_absent_or_null():
    detection = {k: v for k, v in INDICES["detections"].example.items() if k != "stop"}
    assert "stop" not in validate_document("detections", detection)
    assert validate_document("detections", {**detection, "stop": None})["stop"] is None


# -- ids ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("metrics", "kdd-cup-99:kdd-cup-99.outputs:0:1100-1199:cumulative:accuracy"),
        ("batches", "kdd-cup-99:kdd-cup-99.outputs:0:1100-1199"),
        ("detections", "kdd-cup-99:kdd-cup-99.outputs:0:900-999:accuracy"),
        ("alerts", "kdd-cup-99:kdd-cup-99.outputs:0:1100-1199:started"),
        ("models", "kdd-cup-99:3"),
        ("predictions", "kdd-cup-99:0:1234"),
    ],
)
def test_ids_follow_the_contract(name, expected):
    assert document_id(name, INDICES[name].example) == expected


def test_id_does_not_depend_on_field_order_or_other_fields():
    doc = metric_doc(evaluation=4)
    shuffled = dict(reversed(list(doc.items())))
    assert document_id("metrics", doc) == document_id("metrics", shuffled)
    assert document_id("metrics", doc) == document_id("metrics", {**doc, "value": 0.9})
    assert document_id("metrics", doc) != document_id("metrics", {**doc, "view": "window"})


def test_an_id_beyond_elasticsearchs_limit_keeps_its_head_and_ends_with_its_digest():
    many = ",".join(f"{p}:{p * 1000}-{p * 1000 + 999}" for p in range(64))  # 64 partitions
    doc = metric_doc(output_offsets=many)
    doc_id = document_id("metrics", doc)
    assert len(doc_id.encode()) == MAX_ID_BYTES and doc_id.startswith("kdd:kdd.out:0:0-999,")
    other = document_id("metrics", {**doc, "output_offsets": many.replace("63999", "63998")})
    assert other != doc_id and other[:200] == doc_id[:200]


async def test_add_derives_the_id_and_refuses_another(sink):
    assert sink.add("metrics", None, metric_doc(3)) == metric_id(3)
    assert sink.add("metrics", metric_id(3), metric_doc(3)) == (metric_id(3))
    with pytest.raises(ValueError, match=f"differs from '{metric_id(3)}'"):
        sink.add("metrics", "random-id", metric_doc(3))
    with pytest.raises(ValueError, match="unknown field"):
        sink.add("metrics", None, metric_doc(3, extra=1))
    assert sink.stats.pending == 1


# -- templates ---------------------------------------------------------------------------------


def test_template_shape():
    template = index_template("streamer-", spec_for("metrics"))
    assert template["name"] == "streamer-metrics"
    assert template["index_patterns"] == ["streamer-metrics*"]
    assert template["template"]["settings"] == {"number_of_shards": 1, "number_of_replicas": 0}
    assert template["template"]["mappings"] == INDICES["metrics"].mappings()
    assert "data_stream" not in template  # documents are overwritten by _id: plain indices


@pytest.mark.parametrize("prefix", ["Streamer-", "_x", "-x", "", "a b", "a*"])
def test_bad_prefixes(prefix):
    with pytest.raises(ValueError, match="index prefix"):
        check_prefix(prefix)
    with pytest.raises(ValueError, match="index prefix"):
        ElasticSink(AsyncElasticsearch("http://127.0.0.1:1"), prefix=prefix)


def test_default_prefix():
    assert check_prefix(DEFAULT_PREFIX) == "streamer-"


# -- buffer ---------------------------------------------------------------------------------------


async def test_buffer_keeps_the_newest_documents_up_to_the_bound(sink):
    for evaluation in range(8):
        sink.add("metrics", None, metric_doc(evaluation))
    assert sink.stats.pending == 5
    assert sink.stats.dropped == 3
    kept = [doc_id for _, doc_id in sink.pending_documents()]
    assert kept == [metric_id(n) for n in range(3, 8)]


async def test_a_newer_version_replaces_the_pending_one(sink):
    sink.add("detections", None, INDICES["detections"].example)
    sink.add("metrics", None, metric_doc(1))
    sink.add("detections", None, {**INDICES["detections"].example, "stop": 14, "active": False})
    assert sink.stats.pending == 2 and sink.stats.dropped == 0
    assert sink.pending_documents()[-1] == (
        "detections",
        "kdd-cup-99:kdd-cup-99.outputs:0:900-999:accuracy",
    )
    assert sink._buffer[sink.pending_documents()[-1]]["stop"] == 14


async def test_requeued_documents_go_back_in_front_and_yield_to_newer_versions(sink):
    for evaluation in range(3):
        sink.add("metrics", None, metric_doc(evaluation))
    chunk = sink._take(2)  # evaluations 0 and 1 in flight
    assert sink.stats.pending == 3
    sink.add("metrics", None, metric_doc(1, value=0.9))  # newer version of one in flight
    sink.add("metrics", None, metric_doc(3))
    sink.add("metrics", None, metric_doc(4))  # 3 buffered + 2 in flight = the bound
    assert sink.stats.dropped == 0
    sink._requeue(chunk)  # the bulk failed
    ids = [doc_id for _, doc_id in sink.pending_documents()]
    assert ids == [metric_id(n) for n in (0, 2, 1, 3, 4)]
    assert sink._buffer[("metrics", metric_id(1))]["value"] == 0.9
    assert sink.stats.pending == 5 and sink.stats.dropped == 0


async def test_requeue_beyond_the_bound_drops_the_oldest(sink):
    for evaluation in range(5):
        sink.add("metrics", None, metric_doc(evaluation))
    chunk = sink._take(2)  # 0 and 1 in flight, 2..4 buffered
    sink.add("metrics", None, metric_doc(5))
    sink.add("metrics", None, metric_doc(6))
    assert sink.stats.dropped == 0  # a batch in flight does not count against the bound
    sink._requeue(chunk)  # the bulk failed: 0 and 1 come back as the oldest, and go first
    ids = [doc_id for _, doc_id in sink.pending_documents()]
    assert ids == [metric_id(n) for n in range(2, 7)]
    assert sink.stats.pending == 5
    assert sink.stats.dropped == 2


async def test_drain_waits_for_the_write_but_not_through_a_backoff(sink):
    sink.add("metrics", None, metric_doc(1))
    started = time.monotonic()
    assert await sink.drain(5.0) is False  # nothing listens: a failure, then a backoff
    assert await sink.drain(5.0) is False  # backing off: no new attempt, no wait
    assert time.monotonic() - started < 4.0
    assert sink.stats.pending == 1 and sink.stats.consecutive_failures == 1


def test_bad_sizes():
    client = AsyncElasticsearch("http://127.0.0.1:1")
    with pytest.raises(ValueError, match="at least 1"):
        ElasticSink(client, max_documents=0)
    with pytest.raises(ValueError, match="initial_backoff"):
        ElasticSink(client, initial_backoff=5, max_backoff=1)
    assert ElasticSink(client, max_documents=3, batch_size=100).batch_size == 3


async def test_backoff_doubles_up_to_the_cap(sink):
    sink.initial_backoff, sink.max_backoff = 1.0, 5.0
    delays = []
    for _ in range(5):
        sink._note_failure("test")
        delays.append(sink._retry_at - time.monotonic())
    assert delays == pytest.approx([1, 2, 4, 5, 5], abs=0.05)
    assert sink._backing_off()
    assert sink.stats.consecutive_failures == 5
    assert not sink.stats.healthy
    assert sink.stats.last_error == "test"
    sink.add("metrics", None, metric_doc(1))
    assert await sink.flush() is False  # backing off: no attempt (port 1 is never dialled)
    assert sink.stats.consecutive_failures == 5 and sink.stats.pending == 1
    sink._note_success()
    assert sink.stats.healthy and sink.stats.last_error is None
    assert not sink._backing_off()


async def test_add_after_close_is_counted_not_raised():
    created = ElasticSink(AsyncElasticsearch("http://127.0.0.1:1"), close_timeout=0.5)
    await created.close()
    created.add("metrics", None, metric_doc(1))
    assert created.stats.dropped == 1 and created.stats.pending == 0


def test_utc_datetime_is_epoch_millis():
    doc = validate_document(
        "metrics", metric_doc(**{"@timestamp": datetime(2025, 1, 1, tzinfo=UTC)})
    )
    assert doc["@timestamp"] == T0


class BrokenClient:
    """Stands for a client with a bug in it (not an outage): bulk raises RuntimeError."""

    class indices:  # mimics client.indices
        @staticmethod
        async def put_index_template(**template: object) -> None:
            return None

        @staticmethod
        async def put_mapping(**mapping: object) -> None:
            return None

    async def bulk(self, **request: object) -> None:
        raise RuntimeError("bug")

    async def close(self) -> None:
        return None


async def test_an_unexpected_error_keeps_the_documents_and_reaches_no_caller(caplog):
    sink = ElasticSink(BrokenClient(), close_timeout=0.5)  # type: ignore[arg-type]
    sink.add("metrics", None, metric_doc(1))
    assert await sink.flush() is False
    assert sink.stats.pending == 1 and sink.stats.consecutive_failures == 1
    assert "unexpected error while flushing" in caplog.text
    await sink.close()
    assert sink.stats.dropped == 1
