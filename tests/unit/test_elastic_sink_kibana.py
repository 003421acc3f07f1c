"""The saved-objects reader on small hand-made samples, then on the real dashboard file
against the declared mappings (the integration test repeats that against Elasticsearch)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from shared.sinks.documents import INDICES
from shared.sinks.elastic import DEFAULT_PREFIX
from shared.sinks.kibana import (
    FieldUse,
    UnsupportedSavedObject,
    check_field_uses,
    data_views,
    field_uses,
    flatten_mapping,
    load_saved_objects,
    reference_problems,
)

KIBANA_DIR = Path(__file__).resolve().parents[2] / "compose" / "kibana"
DASHBOARD = KIBANA_DIR / "dashboard.ndjson"


def dumps(value: object) -> str:
    return json.dumps(value)


def data_view(view_id: str, title: str) -> dict:
    attributes = {"title": title, "timeFieldName": "@timestamp", "fields": "[]"}
    return {"id": view_id, "type": "index-pattern", "attributes": attributes, "references": []}


def vis(vis_id: str, state: dict, source: dict, references: list[dict]) -> dict:
    attributes = {
        "title": vis_id,
        "visState": dumps(state),
        "kibanaSavedObjectMeta": {"searchSourceJSON": dumps(source)},
    }
    return {
        "id": vis_id,
        "type": "visualization",
        "attributes": attributes,
        "references": references,
    }


def ref(name: str, object_id: str, kind: str = "index-pattern") -> dict:
    return {"name": name, "id": object_id, "type": kind}


INDEX_REF = "kibanaSavedObjectMeta.searchSourceJSON.index"
FILTER_REF = "kibanaSavedObjectMeta.searchSourceJSON.filter[0].meta.index"

LINE = vis(
    "line",
    {
        "type": "line",
        "params": {"labels": {"filter": True}},
        "aggs": [
            {"id": "1", "type": "avg", "schema": "metric", "params": {"field": "value"}},
            {"id": "2", "type": "date_histogram", "params": {"field": "@timestamp"}},
            {
                "id": "3",
                "type": "terms",
                "params": {
                    "field": "metric",
                    "orderBy": "custom",
                    "orderAgg": {"id": "3-o", "type": "max", "params": {"field": "pairs"}},
                },
            },
            {
                "id": "4",
                "type": "top_hits",
                "params": {"field": "defined", "sortField": "@timestamp"},
            },
            {"id": "5", "enabled": False, "type": "avg", "params": {"field": "disabled_field"}},
            {
                "id": "6",
                "type": "filters",
                "params": {
                    "filters": [
                        {"input": {"query": 'view : "a:b" and pairs >= 3', "language": "kuery"}}
                    ]
                },
            },
            {"id": "7", "type": "count", "params": {}},
        ],
    },
    {
        "indexRefName": INDEX_REF,
        "query": {"query": "usecase:kdd AND NOT view:batch", "language": "lucene"},
        "filter": [
            {
                "meta": {"key": "view", "type": "phrase", "indexRefName": FILTER_REF},
                "query": {"match_phrase": {"view": "window"}},
            },
            {
                "meta": {"type": "custom", "key": "query", "index": "dv-other"},
                "query": {"bool": {"filter": [{"range": {"evaluation": {"gte": 3}}}]}},
            },
            {"meta": {"disabled": True, "key": "ignored", "type": "phrase"}},
        ],
    },
    [ref(INDEX_REF, "dv-metrics"), ref(FILTER_REF, "dv-metrics")],
)

CONTROL = vis(
    "control",
    {
        "type": "input_control_vis",
        "aggs": [],
        "params": {
            "controls": [
                {"fieldName": "usecase", "type": "list", "indexPatternRefName": "control_0"},
                {"fieldName": "records", "type": "range", "indexPattern": "dv-batches"},
            ]
        },
    },
    {"query": {"query": "", "language": "kuery"}, "filter": []},
    [ref("control_0", "dv-batches")],
)

LENS = {
    "id": "lens",
    "type": "lens",
    "attributes": {
        "title": "lens",
        "state": {
            "datasourceStates": {
                "formBased": {
                    "layers": {
                        "L1": {
                            "columns": {
                                "c1": {"operationType": "count", "sourceField": "___records___"},
                                "c2": {"operationType": "average", "sourceField": "latency_ms_p50"},
                                "c3": {
                                    "operationType": "date_histogram",
                                    "sourceField": "@timestamp",
                                    "filter": {"query": "alert : true", "language": "kuery"},
                                },
                            }
                        }
                    }
                }
            },
            "query": {"query": "", "language": "kuery"},
            "filters": [{"meta": {}, "query": {"exists": {"field": "model_version"}}}],
        },
    },
    "references": [ref("indexpattern-datasource-layer-L1", "dv-batches")],
}


def dashboard(panels: list[dict], references: list[dict]) -> dict:
    attributes = {
        "title": "d",
        "panelsJSON": dumps(panels),
        "kibanaSavedObjectMeta": {
            "searchSourceJSON": dumps({"query": {"query": "usecase : kdd", "language": "kuery"}})
        },
    }
    return {"id": "d", "type": "dashboard", "attributes": attributes, "references": references}


def panel(index: str) -> dict:
    return {"type": "visualization", "panelIndex": index, "panelRefName": f"panel_{index}"}


SAMPLE = [
    data_view("dv-metrics", "streamer-metrics*"),
    data_view("dv-batches", "streamer-batches*"),
    LINE,
    CONTROL,
    LENS,
    dashboard(
        [panel("1"), panel("2"), {**panel("3"), "type": "lens"}],
        [
            ref("1:panel_1", "line", "visualization"),  # Kibana 8 export naming
            ref("panel_2", "control", "visualization"),  # 7.x naming, still accepted
            ref("3:panel_3", "lens", "lens"),
        ],
    ),
]


def uses_of(object_id: str) -> set[tuple[str | None, str, str]]:
    return {(u.data_view, u.field, u.use) for u in field_uses(SAMPLE) if u.object_id == object_id}


def test_aggregation_fields_filters_and_queries():
    assert uses_of("line") == {
        ("dv-metrics", "value", "avg"),
        ("dv-metrics", "@timestamp", "date_histogram"),
        ("dv-metrics", "metric", "terms"),
        ("dv-metrics", "pairs", "max"),  # the terms' custom order
        ("dv-metrics", "defined", "top_hits"),
        ("dv-metrics", "disabled_field", "avg"),  # disabled aggregations are checked too
        ("dv-metrics", "@timestamp", "top_hits:sort"),
        ("dv-metrics", "view", "query"),  # KQL of a filters agg; the quoted "a:b" is a value
        ("dv-metrics", "pairs", "query"),
        ("dv-metrics", "usecase", "query"),  # Lucene query of the search source
        ("dv-metrics", "view", "filter"),
        ("dv-other", "evaluation", "filter"),  # the custom filter's own data view
    }


def test_controls_use_their_own_data_view():
    assert uses_of("control") == {
        ("dv-batches", "usecase", "control:list"),
        ("dv-batches", "records", "control:range"),
    }


def test_lens_columns_and_filters():
    assert uses_of("lens") == {
        ("dv-batches", "latency_ms_p50", "lens:average"),
        ("dv-batches", "@timestamp", "lens:date_histogram"),
        ("dv-batches", "alert", "query"),
        ("dv-batches", "model_version", "filter"),
    }


def test_data_view_time_fields_and_dashboard_query():
    assert uses_of("dv-metrics") == {("dv-metrics", "@timestamp", "time_field")}
    assert uses_of("d") == {(None, "usecase", "query")}  # None: every data view


def test_unclassified_field_names_are_not_silently_skipped():
    state = {"type": "line", "aggs": [], "params": {"thresholdLine": {"field": "surprise"}}}
    odd = vis("odd", state, {"indexRefName": INDEX_REF}, [ref(INDEX_REF, "dv-metrics")])
    with pytest.raises(UnsupportedSavedObject, match="surprise"):
        field_uses([odd])


@pytest.mark.parametrize("kind", ["metrics", "vega"])
def test_unsupported_visualizations(kind):
    with pytest.raises(UnsupportedSavedObject, match=kind):
        field_uses([vis("tsvb", {"type": kind, "params": {}}, {}, [])])


def test_missing_reference_and_by_value_panels():
    broken = vis("b", {"type": "line", "aggs": []}, {"indexRefName": INDEX_REF}, [])
    with pytest.raises(UnsupportedSavedObject, match="no reference"):
        field_uses([broken])
    by_value = dashboard([{"panelIndex": "1", "embeddableConfig": {"attributes": {}}}], [])
    with pytest.raises(UnsupportedSavedObject, match="by value"):
        field_uses([by_value])


def test_check_field_uses():
    fields = {"dv": {"value": "double", "metric": "keyword", "reason": "text", "t": "date"}}
    uses = [
        FieldUse("v", "dv", "value", "avg", "a"),
        FieldUse("v", "dv", "t", "max", "b"),
        FieldUse("v", "dv", "metric", "avg", "c"),
        FieldUse("v", "dv", "reason", "terms", "d"),
        FieldUse("v", "dv", "nope", "filter", "e"),
        FieldUse("v", "dv", "value", "terms", "f"),
        FieldUse("v", "other", "value", "avg", "g"),
        FieldUse("v", "dv", "value", "mystery", "h"),
        FieldUse("v", None, "metric", "query", "i"),
    ]
    problems = check_field_uses(uses, fields)
    assert [p.split(":")[0] for p in problems] == ["v c", "v d", "v e", "v f", "v g", "v h"]
    assert "field type 'keyword' does not suit it" in problems[0]
    assert "no such field" in problems[2]
    assert "data view 'other' is unknown" in problems[4]
    assert "no type rule" in problems[5]


def test_flatten_mapping():
    mapping = {
        "properties": {
            "reason": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
            "host": {"properties": {"name": {"type": "keyword"}}},
            "n": {"type": "long"},
        }
    }
    assert flatten_mapping(mapping) == {
        "reason": "text",
        "reason.keyword": "keyword",
        "host.name": "keyword",
        "n": "long",
    }


def test_reference_problems():
    assert reference_problems(SAMPLE) == []
    orphan = vis("orphan", {"type": "line", "aggs": []}, {}, [ref("x", "dv-gone")])
    lost_panel = dashboard([panel("9")], [])
    problems = reference_problems([*SAMPLE[:-1], orphan, lost_panel])
    assert problems == [
        "visualization orphan: reference 'x' to missing index-pattern dv-gone",
        "dashboard d: panel 9 has no reference 'panel_9'",
        "visualization line is on no dashboard",
        "visualization control is on no dashboard",
        "lens lens is on no dashboard",
        "visualization orphan is on no dashboard",
    ]


def test_load_skips_the_export_summary():
    text = dumps(SAMPLE[0]) + "\n\n" + dumps({"exportedCount": 1, "missingRefCount": 0}) + "\n"
    assert load_saved_objects(text) == [SAMPLE[0]]
    with pytest.raises(UnsupportedSavedObject, match="line 1: not JSON"):
        load_saved_objects("{nope\n")


# -- the real dashboard against the declared mappings ---------------------------------------------


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return load_saved_objects(DASHBOARD.read_text(encoding="utf-8"))


def test_dashboard_file_is_what_the_builder_writes():
    spec = importlib.util.spec_from_file_location(
        "build_dashboard", KIBANA_DIR / "build_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    assert DASHBOARD.read_text(encoding="utf-8") == builder.build(), (
        "run: python compose/kibana/build_dashboard.py"
    )


def test_dashboard_fields_exist_in_the_declared_mappings(objects):
    fields = {}
    for view_id, attributes in data_views(objects).items():
        title = attributes["title"]
        assert title.startswith(DEFAULT_PREFIX) and title.endswith("*"), title
        name = title.removeprefix(DEFAULT_PREFIX).removesuffix("*")
        assert name in INDICES, f"data view {view_id} names no declared index: {title}"
        fields[view_id] = flatten_mapping(INDICES[name].mappings())
    assert len(fields) == len(INDICES)  # one data view per index
    assert check_field_uses(field_uses(objects), fields) == []


def test_dashboard_references_hold_together(objects):
    assert reference_problems(objects) == []
    assert [obj["type"] for obj in objects].count("dashboard") == 1
