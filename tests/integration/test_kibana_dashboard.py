"""THE dashboard test: every field compose/kibana/dashboard.ndjson uses must exist, with a
suitable type, in the real Elasticsearch index behind its data view.

Kibana cannot run here, so the saved objects are read with shared.sinks.kibana and held
against what Elasticsearch reports for indices created from our templates. The data views
name `streamer-*` indices; the test swaps that prefix for a unique one, exactly as a
deployment with another prefix would have to.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from elasticsearch import AsyncElasticsearch

from shared.clients.elastic import connect_elasticsearch
from shared.config import ConnectionSettings
from shared.sinks.documents import INDICES
from shared.sinks.elastic import DEFAULT_PREFIX, ElasticSink
from shared.sinks.kibana import (
    check_field_uses,
    data_views,
    field_uses,
    flatten_mapping,
    load_saved_objects,
    reference_problems,
)

DASHBOARD = Path(__file__).resolve().parents[2] / "compose" / "kibana" / "dashboard.ndjson"
#: Uses that only read documents (_source or a query): no aggregatable field needed.
NOT_AGGREGATED = {"filter", "query", "top_hits"}


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    return load_saved_objects(DASHBOARD.read_text(encoding="utf-8"))


@pytest.fixture
async def elastic(connections: ConnectionSettings):
    client = connect_elasticsearch(connections)
    yield client
    await client.close()


@pytest.fixture
async def indices(connections: ConnectionSettings, elastic: AsyncElasticsearch, unique: str):
    """Our templates under a unique prefix and one example document per index, written by
    the sink itself."""
    prefix = f"{unique}-"
    sink = ElasticSink.connect(connections, prefix=prefix)
    try:
        for name, spec in INDICES.items():
            sink.add(name, None, spec.example)
        assert await sink.flush() is True
        assert sink.stats.indexed == len(INDICES)
    finally:
        await sink.close()
    await elastic.indices.refresh(index=f"{prefix}*")
    yield prefix
    for name in await elastic.indices.get(index=f"{prefix}*", allow_no_indices=True):
        await elastic.indices.delete(index=name)
    for name in INDICES:
        await elastic.indices.delete_index_template(name=f"{prefix}{name}")


def index_pattern(title: str, prefix: str) -> str:
    assert title.startswith(DEFAULT_PREFIX), f"data view {title!r} ignores the index prefix"
    return prefix + title.removeprefix(DEFAULT_PREFIX)


async def test_every_field_the_dashboard_uses_exists_with_a_suitable_type(
    objects, elastic, indices
):
    views = data_views(objects)
    assert len(views) == len(INDICES)
    fields_by_view: dict[str, dict[str, str]] = {}
    aggregatable: dict[str, set[str]] = {}
    for view_id, attributes in views.items():
        pattern = index_pattern(attributes["title"], indices)
        mapping = await elastic.indices.get_mapping(index=pattern)
        name = attributes["title"].removeprefix(DEFAULT_PREFIX).removesuffix("*")
        assert sorted(mapping) == [f"{indices}{name}"], f"{pattern} matches {sorted(mapping)}"
        fields_by_view[view_id] = flatten_mapping(mapping[f"{indices}{name}"]["mappings"])
        # What Kibana itself asks for a data view's fields.
        caps = await elastic.field_caps(index=pattern, fields="*")
        aggregatable[view_id] = {
            field
            for field, by_type in caps["fields"].items()
            if all(cap.get("aggregatable") for cap in by_type.values())
        }

    uses = field_uses(objects)
    assert {use.data_view for use in uses} >= set(views)  # every data view is used
    assert check_field_uses(uses, fields_by_view) == []
    not_aggregatable = sorted(
        f"{use.object_id}: {use.use} on {use.field}"
        for use in uses
        if use.use not in NOT_AGGREGATED
        and use.data_view is not None
        and use.field not in aggregatable[use.data_view]
    )
    assert not_aggregatable == []


async def test_the_data_views_time_field_is_a_date_in_every_index(objects, elastic, indices):
    for attributes in data_views(objects).values():
        pattern = index_pattern(attributes["title"], indices)
        caps = await elastic.field_caps(index=pattern, fields=attributes["timeFieldName"])
        assert list(caps["fields"][attributes["timeFieldName"]]) == ["date"]


def test_every_object_the_dashboard_references_is_in_the_file_and_every_panel_is_shown(objects):
    assert reference_problems(objects) == []
    dashboards = [obj for obj in objects if obj["type"] == "dashboard"]
    assert len(dashboards) == 1
    panels = json.loads(dashboards[0]["attributes"]["panelsJSON"])
    visualizations = [obj for obj in objects if obj["type"] == "visualization"]
    assert len(panels) == len(visualizations)
    assert len({panel["panelIndex"] for panel in panels}) == len(panels)


def test_one_use_case_can_be_chosen(objects):
    controls = [
        use
        for use in field_uses(objects)
        if use.use.startswith("control:") and use.field == "usecase"
    ]
    assert len(controls) == 1
    state = next(
        json.loads(obj["attributes"]["visState"])
        for obj in objects
        if obj["id"] == controls[0].object_id
    )
    assert state["params"]["controls"][0]["options"]["multiselect"] is False
