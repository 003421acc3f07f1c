"""Reading a Kibana saved-objects export (ndjson): which data views it defines, which fields
each object uses and how, and whether its references hold together.

The original dashboards aggregated fields that were never written and hard-coded one use case
(streamer-original.md §5); nothing checked them. This module lets a test hold the dashboard
against the real mappings: every field an aggregation, filter, query, control or data view
names must exist in the index behind its data view, with a type that suits the use.

Supported: data views (`index-pattern`), aggregation-based `visualization`s (including
`input_control_vis`), `lens` saved objects, `search`es and `dashboard`s whose panels are
references. Anything else that names fields (TSVB, Vega, by-value Lens panels) raises
`UnsupportedSavedObject`, so a new panel type cannot slip past the check unread.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

NUMERIC = frozenset(
    {"long", "integer", "short", "byte", "double", "float", "half_float", "scaled_float"}
    | {"unsigned_long"}
)
INTEGRAL = frozenset({"long", "integer", "short", "byte", "unsigned_long"})
DATES = frozenset({"date", "date_nanos"})
#: Exact values a terms-like bucket can group on (text is not aggregatable; doubles make
#: poor buckets).
TERMS = frozenset({"keyword", "constant_keyword", "boolean", "ip"}) | INTEGRAL
AGGREGATABLE = TERMS | NUMERIC | DATES
ANY = frozenset({"*"})

#: Which Elasticsearch field types each use accepts. A use missing here is an error.
COMPATIBLE: dict[str, frozenset[str]] = {
    **dict.fromkeys(
        ("avg", "sum", "median", "percentiles", "percentile_ranks", "std_dev", "histogram"),
        NUMERIC,
    ),
    **dict.fromkeys(("min", "max"), NUMERIC | DATES),
    **dict.fromkeys(("range",), NUMERIC),
    **dict.fromkeys(("terms", "significant_terms", "rare_terms"), TERMS),
    **dict.fromkeys(("date_histogram", "date_range", "time_field"), DATES),
    **dict.fromkeys(("cardinality", "value_count"), AGGREGATABLE),
    "top_hits": ANY,
    "top_hits:sort": NUMERIC | DATES,
    "control:list": TERMS,
    "control:range": NUMERIC,
    "filter": ANY,
    "query": ANY,
    # Lens operation types
    "lens:average": NUMERIC,
    "lens:sum": NUMERIC,
    "lens:median": NUMERIC,
    "lens:percentile": NUMERIC,
    "lens:standard_deviation": NUMERIC,
    "lens:min": NUMERIC | DATES,
    "lens:max": NUMERIC | DATES,
    "lens:range": NUMERIC,
    "lens:terms": TERMS,
    "lens:date_histogram": DATES,
    "lens:unique_count": AGGREGATABLE,
    "lens:count": ANY,
    "lens:last_value": ANY,
}

_NESTED_AGGS = ("orderAgg", "customMetric", "customBucket")
_FIELD_KEYS = frozenset({"field", "fieldName", "sortField", "sourceField", "timeFieldName"})
_LENS_RECORDS = "___records___"
_QUOTED = re.compile(r'"(?:\\.|[^"\\])*"')
_KQL_FIELD = re.compile(r"(?<![\w.@*\\-])([A-Za-z_@][\w.@*-]*)\s*(?:<=|>=|<|>|:)")
_LEAF_QUERIES = ("match_phrase", "match", "term", "terms", "range", "prefix", "wildcard", "regexp")


class UnsupportedSavedObject(ValueError):
    """A saved object this reader cannot vouch for (unknown type, missing reference...)."""


@dataclass(frozen=True)
class FieldUse:
    """One field named by one saved object, the data view it is read through, and how."""

    object_id: str
    data_view: str | None  # None: every data view of the dashboard (dashboard-level query)
    field: str
    use: str
    where: str


def load_saved_objects(text: str) -> list[dict[str, Any]]:
    """The objects of an ndjson export, without the trailing export summary line."""
    objects = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as error:
            raise UnsupportedSavedObject(f"line {number}: not JSON: {error}") from error
        if "exportedCount" in item and "type" not in item:
            continue
        for key in ("id", "type", "attributes"):
            if key not in item:
                raise UnsupportedSavedObject(f"line {number}: no {key!r}")
        objects.append(item)
    return objects


def data_views(objects: Iterable[Mapping[str, Any]]) -> dict[str, Mapping[str, Any]]:
    """Data views by id (their attributes: title = index pattern, timeFieldName...)."""
    return {obj["id"]: obj["attributes"] for obj in objects if obj["type"] == "index-pattern"}


def field_uses(objects: Iterable[Mapping[str, Any]]) -> list[FieldUse]:
    """Every field every object names, with its data view and use."""
    uses: list[FieldUse] = []
    for obj in objects:
        kind = obj["type"]
        if kind == "index-pattern":
            uses.extend(_data_view_uses(obj))
        elif kind in ("visualization", "search", "dashboard"):
            uses.extend(_saved_search_source_uses(obj))
            if kind == "visualization":
                uses.extend(_visualization_uses(obj))
            if kind == "dashboard":
                _check_panels_are_references(obj)
        elif kind == "lens":
            uses.extend(_lens_uses(obj))
        elif kind not in ("tag", "config"):
            raise UnsupportedSavedObject(f"{kind} {obj['id']}: type not supported")
    return uses


def flatten_mapping(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """{"a.b": "keyword", "reason.keyword": "keyword", ...} from an index mapping."""
    fields: dict[str, str] = {}
    for name, spec in mapping.get("properties", {}).items():
        path = f"{prefix}{name}"
        if "properties" in spec:
            fields.update(flatten_mapping(spec, f"{path}."))
            continue
        fields[path] = spec.get("type", "object")
        for sub, sub_spec in spec.get("fields", {}).items():
            fields[f"{path}.{sub}"] = sub_spec.get("type", "object")
    return fields


def check_field_uses(
    uses: Iterable[FieldUse], fields_by_data_view: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """Problems (empty when fine): unknown data view, missing field, unsuitable type."""
    problems = []
    for use in uses:
        views = [use.data_view] if use.data_view is not None else list(fields_by_data_view)
        for view in views:
            fields = fields_by_data_view.get(view)
            where = f"{use.object_id} {use.where}: {use.use} on {use.field!r}"
            if fields is None:
                problems.append(f"{where}: data view {view!r} is unknown")
                continue
            if use.field not in fields:
                problems.append(f"{where}: no such field in data view {view!r}")
                continue
            accepted = COMPATIBLE.get(use.use)
            if accepted is None:
                problems.append(f"{where}: use {use.use!r} has no type rule")
            elif accepted is not ANY and fields[use.field] not in accepted:
                problems.append(f"{where}: field type {fields[use.field]!r} does not suit it")
    return problems


def reference_problems(objects: Iterable[Mapping[str, Any]]) -> list[str]:
    """Broken links: references to objects absent from the export, panels without their
    reference, visualizations no dashboard shows."""
    objects = list(objects)
    present = {(obj["type"], obj["id"]) for obj in objects}
    problems = []
    for obj in objects:
        for ref in obj.get("references", []):
            if (ref["type"], ref["id"]) not in present:
                problems.append(
                    f"{obj['type']} {obj['id']}: reference {ref['name']!r} to missing "
                    f"{ref['type']} {ref['id']}"
                )
    shown: set[tuple[str, str]] = set()
    for dashboard in (obj for obj in objects if obj["type"] == "dashboard"):
        refs = {ref["name"]: ref for ref in dashboard.get("references", [])}
        panels = json.loads(dashboard["attributes"].get("panelsJSON", "[]"))
        for panel in panels:
            ref = _panel_reference(panel, refs)
            if ref is None:
                problems.append(
                    f"dashboard {dashboard['id']}: panel {panel.get('panelIndex')} has no "
                    f"reference {panel.get('panelRefName')!r}"
                )
                continue
            if panel.get("type") not in (None, ref["type"]):
                problems.append(
                    f"dashboard {dashboard['id']}: panel {panel.get('panelIndex')} is a "
                    f"{panel['type']} but its reference is a {ref['type']}"
                )
            shown.add((ref["type"], ref["id"]))
    for obj in objects:
        if obj["type"] in ("visualization", "lens", "search") and (
            (obj["type"], obj["id"]) not in shown
        ):
            problems.append(f"{obj['type']} {obj['id']} is on no dashboard")
    return problems


# -- per object type ---------------------------------------------------------------------------


def _data_view_uses(obj: Mapping[str, Any]) -> Iterator[FieldUse]:
    time_field = obj["attributes"].get("timeFieldName")
    if time_field:
        yield FieldUse(obj["id"], obj["id"], time_field, "time_field", "timeFieldName")


def _saved_search_source_uses(obj: Mapping[str, Any]) -> Iterator[FieldUse]:
    """Fields of a visualization's/search's/dashboard's query and filters."""
    meta = obj["attributes"].get("kibanaSavedObjectMeta", {})
    source = json.loads(meta.get("searchSourceJSON") or "{}")
    refs = _references(obj)
    if obj["type"] == "dashboard":
        default_view = None  # a dashboard's query applies to every panel's data view
    else:
        default_view = _resolve_view(obj, source, "indexRefName", "index", refs, required=False)
    query = source.get("query") or {}
    for name in _query_fields(query):
        yield FieldUse(obj["id"], default_view, name, "query", "searchSourceJSON.query")
    for number, item in enumerate(source.get("filter") or []):
        view = _resolve_view(
            obj, item.get("meta", {}), "indexRefName", "index", refs, required=False
        )
        view = view or default_view
        where = f"searchSourceJSON.filter[{number}]"
        for name in _filter_fields(item):
            yield FieldUse(obj["id"], view, name, "filter", where)


def _visualization_uses(obj: Mapping[str, Any]) -> Iterator[FieldUse]:
    state = json.loads(obj["attributes"]["visState"])
    kind = state.get("type")
    if kind in ("metrics", "vega", "timelion"):
        raise UnsupportedSavedObject(f"visualization {obj['id']}: type {kind} not supported")
    refs = _references(obj)
    meta = obj["attributes"].get("kibanaSavedObjectMeta", {})
    source = json.loads(meta.get("searchSourceJSON") or "{}")
    view = _resolve_view(obj, source, "indexRefName", "index", refs, required=False)
    found: list[FieldUse] = []
    for number, agg in enumerate(state.get("aggs") or []):
        found.extend(_agg_uses(obj["id"], view, agg, f"visState.aggs[{number}]"))
    for number, control in enumerate((state.get("params") or {}).get("controls") or []):
        control_view = _resolve_view(
            obj, control, "indexPatternRefName", "indexPattern", refs, required=True
        )
        found.append(
            FieldUse(
                obj["id"],
                control_view,
                control["fieldName"],
                f"control:{control.get('type', 'list')}",
                f"visState.params.controls[{number}].fieldName",
            )
        )
    # Anything else that looks like a field name is a sign of a shape this reader misses.
    classified = {use.field for use in found}
    for path, value in _walk(state, "visState"):
        key = path.rsplit(".", 1)[-1]
        if key in _FIELD_KEYS and isinstance(value, str) and value and value not in classified:
            raise UnsupportedSavedObject(
                f"visualization {obj['id']}: {path} = {value!r} names a field this "
                "reader does not classify"
            )
    yield from found


def _agg_uses(
    object_id: str, view: str | None, agg: Mapping[str, Any], where: str
) -> Iterator[FieldUse]:
    # Disabled aggregations are checked too: enabling one again must not break the panel.
    kind = agg.get("type", "")
    params = agg.get("params") or {}
    field = params.get("field")
    if field:
        if view is None:
            raise UnsupportedSavedObject(f"{object_id} {where}: a field but no data view")
        yield FieldUse(object_id, view, field, kind, f"{where}.params.field")
    if params.get("sortField"):
        yield FieldUse(
            object_id, view, params["sortField"], "top_hits:sort", f"{where}.params.sortField"
        )
    for key in _NESTED_AGGS:
        if isinstance(params.get(key), Mapping):
            yield from _agg_uses(object_id, view, params[key], f"{where}.params.{key}")
    if kind == "filters":
        for number, item in enumerate(params.get("filters") or []):
            for name in _query_fields(item.get("input") or {}):
                yield FieldUse(object_id, view, name, "query", f"{where}.filters[{number}]")


def _lens_uses(obj: Mapping[str, Any]) -> Iterator[FieldUse]:
    state = obj["attributes"].get("state") or {}
    refs = _references(obj)
    datasources = state.get("datasourceStates") or {}
    views: set[str] = set()
    for datasource in ("formBased", "indexpattern"):
        layers = (datasources.get(datasource) or {}).get("layers") or {}
        for layer_id, layer in layers.items():
            ref = refs.get(f"indexpattern-datasource-layer-{layer_id}")
            if ref is None:
                raise UnsupportedSavedObject(f"lens {obj['id']}: layer {layer_id} has no data view")
            views.add(ref["id"])
            for column_id, column in (layer.get("columns") or {}).items():
                name = column.get("sourceField")
                if name and name != _LENS_RECORDS:
                    yield FieldUse(
                        obj["id"],
                        ref["id"],
                        name,
                        f"lens:{column.get('operationType')}",
                        f"layers.{layer_id}.columns.{column_id}",
                    )
                for name in _query_fields(column.get("filter") or {}):
                    yield FieldUse(obj["id"], ref["id"], name, "query", f"columns.{column_id}")
    if (datasources.get("textBased") or {}).get("layers"):
        raise UnsupportedSavedObject(f"lens {obj['id']}: ES|QL layers not supported")
    for view in sorted(views):
        for name in _query_fields(state.get("query") or {}):
            yield FieldUse(obj["id"], view, name, "query", "state.query")
        for number, item in enumerate(state.get("filters") or []):
            for name in _filter_fields(item):
                yield FieldUse(obj["id"], view, name, "filter", f"state.filters[{number}]")


def _check_panels_are_references(obj: Mapping[str, Any]) -> None:
    for panel in json.loads(obj["attributes"].get("panelsJSON", "[]")):
        config = panel.get("embeddableConfig") or {}
        if "attributes" in config or "savedVis" in config:
            raise UnsupportedSavedObject(
                f"dashboard {obj['id']}: panel {panel.get('panelIndex')} is by value; "
                "save it as its own object so its fields can be checked"
            )


# -- helpers -------------------------------------------------------------------------------------


def _references(obj: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {ref["name"]: ref for ref in obj.get("references", [])}


def _resolve_view(
    obj: Mapping[str, Any],
    holder: Mapping[str, Any],
    ref_key: str,
    inline_key: str,
    refs: Mapping[str, Mapping[str, Any]],
    *,
    required: bool,
) -> str | None:
    """The data view id a holder points at, through a reference name or an inline id."""
    name = holder.get(ref_key)
    if name:
        ref = refs.get(name)
        if ref is None:
            raise UnsupportedSavedObject(f"{obj['type']} {obj['id']}: no reference {name!r}")
        if ref["type"] != "index-pattern":
            raise UnsupportedSavedObject(
                f"{obj['type']} {obj['id']}: {name!r} points at a {ref['type']}"
            )
        return str(ref["id"])
    inline = holder.get(inline_key)
    if isinstance(inline, str) and inline:
        return inline
    if required:
        raise UnsupportedSavedObject(f"{obj['type']} {obj['id']}: no data view in {ref_key}")
    return None


def _panel_reference(
    panel: Mapping[str, Any], refs: Mapping[str, Mapping[str, Any]]
) -> Mapping[str, Any] | None:
    """Kibana 8 names a panel's reference `<panelIndex>:<panelRefName>`; 7.x plain."""
    name = panel.get("panelRefName")
    if not name:
        return None
    return refs.get(f"{panel.get('panelIndex')}:{name}") or refs.get(name)


def _query_fields(query: Mapping[str, Any]) -> list[str]:
    """Field names in a KQL or Lucene query string (quoted values removed first)."""
    text = query.get("query")
    if not isinstance(text, str) or not text.strip():
        return []
    return sorted(set(_KQL_FIELD.findall(_QUOTED.sub('""', text))))


def _filter_fields(item: Mapping[str, Any]) -> list[str]:
    """Field names of one filter pill: its meta key and every leaf of its query DSL."""
    names: set[str] = set()
    meta = item.get("meta") or {}
    if meta.get("disabled"):
        return []
    if meta.get("key") and meta.get("type") in ("phrase", "phrases", "range", "exists"):
        names.add(meta["key"])
    names.update(_dsl_fields(item.get("query") or {}))
    for key in ("range", "exists"):  # legacy filters keep these at the top level
        if key in item:
            names.update(_dsl_fields({key: item[key]}))
    return sorted(names)


def _dsl_fields(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in _LEAF_QUERIES and isinstance(value, Mapping):
                names.update(str(name) for name in value if not str(name).startswith("_"))
            elif key == "exists" and isinstance(value, Mapping) and "field" in value:
                names.add(str(value["field"]))
            elif key == "query_string" and isinstance(value, Mapping):
                names.update(_query_fields(value))
            else:
                names.update(_dsl_fields(value))
    elif isinstance(node, list):
        for value in node:
            names.update(_dsl_fields(value))
    return names


def _walk(node: Any, path: str) -> Iterator[tuple[str, Any]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            yield f"{path}.{key}", value
            yield from _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for number, value in enumerate(node):
            yield from _walk(value, f"{path}[{number}]")
