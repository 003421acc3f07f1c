"""Writes dashboard.ndjson, the Kibana 8 saved objects of the STREAMER dashboard.

Saved objects nest JSON inside JSON strings (visState, searchSourceJSON, panelsJSON); writing
them by hand invites escaping mistakes, so they are built here and dumped in Kibana's export
shape (references by id, `typeMigrationVersion`s Kibana 8.19 migrates from).

    python compose/kibana/build_dashboard.py      # rewrite dashboard.ndjson next to this file

The field names must match shared/sinks/documents.py: tests/integration/test_kibana_dashboard.py
checks every one against the real Elasticsearch mappings. Standard library only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("dashboard.ndjson")
PREFIX = "streamer-"
DASHBOARD_ID = "streamer-evaluation"
CORE_MIGRATION = "8.8.0"
#: Migration versions of the exported types as written by Kibana 8.x exports; Kibana applies
#: every later migration on import.
TYPE_MIGRATION = {"index-pattern": "8.0.0", "visualization": "8.5.0", "dashboard": "8.9.0"}
EMPTY_QUERY = {"query": "", "language": "kuery"}
VIEWS = ("cumulative", "window", "batch")
#: Metric names of the class-probability metrics (shared/metrics/probabilistic.py).
PROBABILITY_METRICS = ("roc_auc", "log_loss", "calibration_error", "binary_calibration_error")


def data_view_id(index: str) -> str:
    return f"streamer-dv-{index}"


def saved_object(kind: str, object_id: str, attributes: dict[str, Any], references: list) -> dict:
    return {
        "attributes": attributes,
        "coreMigrationVersion": CORE_MIGRATION,
        "id": object_id,
        "managed": False,
        "references": references,
        "type": kind,
        "typeMigrationVersion": TYPE_MIGRATION[kind],
    }


def data_view(index: str, name: str) -> dict:
    return saved_object(
        "index-pattern",
        data_view_id(index),
        {
            "allowHidden": False,
            "fieldAttrs": "{}",
            "fieldFormatMap": "{}",
            "fields": "[]",
            "name": name,
            "runtimeFieldMap": "{}",
            "sourceFilters": "[]",
            "timeFieldName": "@timestamp",
            "title": f"{PREFIX}{index}*",
        },
        [],
    )


# -- aggregations ----------------------------------------------------------------------------


def agg(agg_id: int, kind: str, schema: str, **params: Any) -> dict:
    return {"id": str(agg_id), "enabled": True, "type": kind, "params": params, "schema": schema}


def metric(agg_id: int, kind: str, field: str, label: str) -> dict:
    return agg(agg_id, kind, "metric", field=field, customLabel=label)


def latest(agg_id: int, field: str, label: str, schema: str = "metric") -> dict:
    """The value of `field` in the newest document of the bucket (top hit by @timestamp)."""
    return agg(
        agg_id,
        "top_hits",
        schema,
        field=field,
        aggregate="concat",
        size=1,
        sortField="@timestamp",
        sortOrder="desc",
        customLabel=label,
    )


def over_time(agg_id: int, field: str = "@timestamp") -> dict:
    return agg(
        agg_id,
        "date_histogram",
        "segment",
        field=field,
        useNormalizedEsInterval=True,
        scaleMetricValues=False,
        interval="auto",
        drop_partials=False,
        min_doc_count=1,
        extended_bounds={},
    )


def terms(agg_id: int, field: str, schema: str, size: int = 20, **extra: Any) -> dict:
    params = {
        "field": field,
        "orderBy": "_key",
        "order": "asc",
        "size": size,
        "otherBucket": False,
        "otherBucketLabel": "Other",
        "missingBucket": False,
        "missingBucketLabel": "Missing",
        **extra,
    }
    return agg(agg_id, "terms", schema, **params)


# -- visualization params --------------------------------------------------------------------


def xy_params(chart: str, series: list[tuple[str, str, str]], axes: list[tuple[str, str]]) -> dict:
    """Aggregation-based line/bar chart: `series` = (agg id, label, axis id), `axes` =
    (axis id, title); the first axis is on the left, a second one on the right."""
    value_axes = [
        {
            "id": axis_id,
            "name": f"{'LeftAxis' if n == 0 else 'RightAxis'}-{n + 1}",
            "type": "value",
            "position": "left" if n == 0 else "right",
            "show": True,
            "style": {},
            "scale": {"type": "linear", "mode": "normal"},
            "labels": {"show": True, "rotate": 0, "filter": False, "truncate": 100},
            "title": {"text": title},
        }
        for n, (axis_id, title) in enumerate(axes)
    ]
    return {
        "type": chart,
        "grid": {"categoryLines": False},
        "categoryAxes": [
            {
                "id": "CategoryAxis-1",
                "type": "category",
                "position": "bottom",
                "show": True,
                "style": {},
                "scale": {"type": "linear"},
                "labels": {"show": True, "filter": True, "truncate": 100},
                "title": {},
            }
        ],
        "valueAxes": value_axes,
        "seriesParams": [
            {
                "show": True,
                "type": chart,
                "mode": "normal",
                "data": {"label": label, "id": agg_id},
                "valueAxis": axis,
                "drawLinesBetweenPoints": True,
                "lineWidth": 2,
                "interpolate": "linear",
                "showCircles": True,
            }
            for agg_id, label, axis in series
        ],
        "addTooltip": True,
        "addLegend": True,
        "legendPosition": "right",
        "times": [],
        "addTimeMarker": False,
        "labels": {"show": False},
        "thresholdLine": {
            "show": False,
            "value": 10,
            "width": 1,
            "style": "full",
            "color": "#E7664C",
        },
        "palette": {"type": "palette", "name": "default"},
        "isVislibVis": True,
        "detailedTooltip": True,
        "fittingFunction": "linear",
        "legendSize": "auto",
    }


METRIC_PARAMS = {
    "addTooltip": True,
    "addLegend": False,
    "type": "metric",
    "metric": {
        "percentageMode": False,
        "useRanges": False,
        "colorSchema": "Green to Red",
        "metricColorMode": "None",
        "colorsRange": [{"from": 0, "to": 10000}],
        "labels": {"show": True},
        "invertColors": False,
        "style": {
            "bgFill": "#000",
            "bgColor": False,
            "labelColor": False,
            "subText": "",
            "fontSize": 36,
        },
    },
}

TABLE_PARAMS = {
    "perPage": 10,
    "showPartialRows": False,
    "showMetricsAtAllLevels": False,
    "showToolbar": True,
    "showTotal": False,
    "totalFunc": "sum",
    "percentageCol": "",
    "autoFitRowToContent": False,
}


def phrase_filter(number: int, field: str, value: str) -> dict:
    """A filter pill `field: value`, its data view given by reference like Kibana exports."""
    return {
        "meta": {
            "alias": None,
            "negate": False,
            "disabled": False,
            "type": "phrase",
            "key": field,
            "params": {"query": value},
            "indexRefName": f"kibanaSavedObjectMeta.searchSourceJSON.filter[{number}].meta.index",
        },
        "query": {"match_phrase": {field: value}},
        "$state": {"store": "appState"},
    }


def visualization(
    vis_id: str,
    title: str,
    index: str,
    kind: str,
    aggs: list[dict],
    params: dict,
    description: str,
    filters: tuple[tuple[str, str], ...] = (),
    query: str = "",
) -> dict:
    """An aggregation-based visualization on one data view, with optional filter pills and
    KQL query."""
    references = [
        {
            "id": data_view_id(index),
            "name": "kibanaSavedObjectMeta.searchSourceJSON.index",
            "type": "index-pattern",
        }
    ]
    pills = []
    for number, (field, value) in enumerate(filters):
        pills.append(phrase_filter(number, field, value))
        references.append(
            {
                "id": data_view_id(index),
                "name": f"kibanaSavedObjectMeta.searchSourceJSON.filter[{number}].meta.index",
                "type": "index-pattern",
            }
        )
    source = {
        "query": {"query": query, "language": "kuery"},
        "filter": pills,
        "indexRefName": "kibanaSavedObjectMeta.searchSourceJSON.index",
    }
    state = {"title": title, "type": kind, "aggs": aggs, "params": params}
    return saved_object(
        "visualization",
        vis_id,
        {
            "description": description,
            "kibanaSavedObjectMeta": {"searchSourceJSON": dumps(source)},
            "title": title,
            "uiStateJSON": "{}",
            "version": 1,
            "visState": dumps(state),
        },
        references,
    )


def use_case_control() -> dict:
    """The use-case selector: an options list on `usecase` that filters every panel."""
    state = {
        "title": "Use case",
        "type": "input_control_vis",
        "aggs": [],
        "params": {
            "controls": [
                {
                    "id": "1",
                    "fieldName": "usecase",
                    "parent": "",
                    "label": "Use case",
                    "type": "list",
                    "options": {
                        "type": "terms",
                        "multiselect": False,
                        "dynamicOptions": True,
                        "size": 100,
                        "order": "asc",
                    },
                    "indexPatternRefName": "control_0_index_pattern",
                }
            ],
            "updateFiltersOnChange": True,
            "useTimeFilter": False,
            "pinFilters": False,
        },
    }
    return saved_object(
        "visualization",
        "streamer-vis-usecase-control",
        {
            "description": "Choose one use case; the filter applies to every panel.",
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": dumps({"query": EMPTY_QUERY, "filter": []})
            },
            "title": "Use case",
            "uiStateJSON": "{}",
            "version": 1,
            "visState": dumps(state),
        },
        [
            {
                "id": data_view_id("batches"),
                "name": "control_0_index_pattern",
                "type": "index-pattern",
            }
        ],
    )


def visualizations() -> list[dict]:
    line = "line"
    bar = "histogram"
    items = [use_case_control()]
    items.append(
        visualization(
            "streamer-vis-latest-metrics",
            "Latest metrics (cumulative)",
            "metrics",
            "metric",
            [latest(1, "value", "latest"), terms(2, "metric", "group")],
            METRIC_PARAMS,
            "Newest cumulative value of each metric (empty when undefined).",
            filters=(("view", "cumulative"),),
        )
    )
    items.append(
        visualization(
            "streamer-vis-latest-window",
            "Latest metrics (window)",
            "metrics",
            "metric",
            [latest(1, "value", "latest"), terms(2, "metric", "group")],
            METRIC_PARAMS,
            "Newest value of each metric over the sliding window.",
            filters=(("view", "window"),),
        )
    )
    items.append(
        visualization(
            "streamer-vis-pipeline-totals",
            "Pipeline",
            "batches",
            "metric",
            [
                metric(1, "sum", "records", "records evaluated"),
                metric(2, "sum", "duplicates", "duplicates"),
                latest(3, "model_version", "model version"),
                latest(4, "records_per_s", "records/s (latest)"),
            ],
            METRIC_PARAMS,
            "Records evaluated in the time range, duplicates seen, current model version.",
        )
    )
    for view in VIEWS:
        items.append(
            visualization(
                f"streamer-vis-metrics-{view}",
                f"Metrics over time ({view})",
                "metrics",
                line,
                [
                    metric(1, "avg", "value", "value"),
                    over_time(2),
                    terms(3, "metric", "group"),
                    terms(4, "usecase", "split", size=10, row=True),
                ],
                xy_params(line, [("1", "value", "ValueAxis-1")], [("ValueAxis-1", "value")]),
                f"Each metric's {view} value per evaluation, one chart per use case.",
                filters=(("view", view),),
            )
        )
    items.append(
        visualization(
            "streamer-vis-alerts",
            "Alerts",
            "alerts",
            bar,
            [
                agg(1, "count", "metric", customLabel="alerts"),
                over_time(2),
                terms(3, "state", "group"),
            ],
            xy_params(bar, [("1", "alerts", "ValueAxis-1")], [("ValueAxis-1", "alerts")]),
            "Alerts started and stopped over time.",
        )
    )
    items.append(
        visualization(
            "streamer-vis-detections-timeline",
            "Detections over time",
            "detections",
            bar,
            [metric(1, "max", "magnitude", "magnitude"), over_time(2), terms(3, "metric", "group")],
            xy_params(bar, [("1", "magnitude", "ValueAxis-1")], [("ValueAxis-1", "magnitude")]),
            "Magnitude of the detections by metric, when they were updated.",
        )
    )
    items.append(
        visualization(
            "streamer-vis-detections-table",
            "Detections",
            "detections",
            "table",
            [
                metric(1, "max", "@timestamp", "updated"),
                latest(2, "metric", "metric"),
                latest(3, "detector", "detector"),
                latest(4, "start", "start (evaluation)"),
                latest(5, "stop", "stop (evaluation)"),
                metric(6, "min", "start_time", "started"),
                metric(7, "max", "stop_time", "stopped"),
                latest(8, "active", "active"),
                metric(9, "max", "magnitude", "magnitude"),
                terms(10, "detection_id", "bucket", size=50, orderBy="1", order="desc"),
            ],
            TABLE_PARAMS,
            "One row per detection, newest first; stop is empty while it is ongoing.",
        )
    )
    items.append(
        visualization(
            "streamer-vis-throughput",
            "Throughput (records/s)",
            "batches",
            line,
            [
                metric(1, "avg", "records_per_s", "records/s"),
                over_time(2),
                terms(3, "usecase", "group"),
            ],
            xy_params(line, [("1", "records/s", "ValueAxis-1")], [("ValueAxis-1", "records/s")]),
            "Records evaluated per second.",
        )
    )
    items.append(
        visualization(
            "streamer-vis-latency",
            "Latency, produce to output (ms)",
            "batches",
            line,
            [
                metric(1, "avg", "latency_ms_p50", "p50"),
                metric(2, "avg", "latency_ms_p95", "p95"),
                metric(3, "max", "latency_ms_max", "max"),
                over_time(4),
            ],
            xy_params(
                line,
                [
                    ("1", "p50", "ValueAxis-1"),
                    ("2", "p95", "ValueAxis-1"),
                    ("3", "max", "ValueAxis-1"),
                ],
                [("ValueAxis-1", "ms")],
            ),
            "Median, 95th percentile and maximum latency of the evaluated records.",
        )
    )
    items.append(
        visualization(
            "streamer-vis-models",
            "Model versions",
            "models",
            line,
            [
                metric(1, "max", "version", "version"),
                metric(2, "max", "records_learned", "records learned"),
                over_time(3),
                terms(4, "usecase", "group"),
            ],
            xy_params(
                line,
                [("1", "version", "ValueAxis-1"), ("2", "records learned", "ValueAxis-2")],
                [("ValueAxis-1", "version"), ("ValueAxis-2", "records learned")],
            ),
            "Model version and the records it has learned, per use case.",
        )
    )
    items.append(
        visualization(
            "streamer-vis-leaderboard",
            "Leaderboard (window)",
            "leaderboard",
            "table",
            [
                latest(1, "value", "latest value"),
                latest(2, "role", "role"),
                latest(3, "pairs", "records in the window"),
                terms(4, "model", "bucket", size=50),
                terms(5, "metric", "bucket", size=20),
            ],
            TABLE_PARAMS,
            "With challengers: each model's newest window-view value of each metric, and its "
            "role (champion or challenger).",
            filters=(("view", "window"),),
        )
    )
    items.append(
        visualization(
            "streamer-vis-leaderboard-timeline",
            "Models over time (window)",
            "leaderboard",
            line,
            [
                metric(1, "avg", "value", "value"),
                over_time(2),
                terms(3, "model", "group"),
                terms(4, "metric", "split", size=10, row=True),
            ],
            xy_params(line, [("1", "value", "ValueAxis-1")], [("ValueAxis-1", "value")]),
            "With challengers: each model's window-view value per evaluation, one chart per "
            "metric; a promotion shows as the champion's role moving to another model.",
            filters=(("view", "window"),),
        )
    )
    items.append(
        visualization(
            "streamer-vis-probability-metrics",
            "ROC AUC, log-loss and calibration error (cumulative)",
            "metrics",
            line,
            [
                metric(1, "avg", "value", "value"),
                over_time(2),
                terms(3, "metric", "group"),
                terms(4, "usecase", "split", size=10, row=True),
            ],
            xy_params(line, [("1", "value", "ValueAxis-1")], [("ValueAxis-1", "value")]),
            "The metrics of the class probabilities outputs carry (output.probabilities), "
            "when evaluation.metrics names them.",
            filters=(("view", "cumulative"),),
            query=" or ".join(f'metric : "{name}"' for name in PROBABILITY_METRICS),
        )
    )
    items.append(
        visualization(
            "streamer-vis-reliability",
            "Reliability table (cumulative)",
            "reliability",
            "table",
            [
                latest(1, "lower", "above"),
                latest(2, "upper", "up to"),
                latest(3, "count", "records"),
                latest(4, "confidence", "mean probability"),
                latest(5, "frequency", "observed frequency"),
                terms(6, "metric", "bucket", size=5),
                terms(7, "bin", "bucket", size=100),
            ],
            TABLE_PARAMS,
            "Per bin of probability, the newest cumulative count, mean probability and how "
            "often the outcome happened: calibrated when they agree. Choose one use case.",
            filters=(("view", "cumulative"),),
        )
    )
    items.append(
        visualization(
            "streamer-vis-predictions",
            "Sampled predictions",
            "predictions",
            bar,
            [
                agg(1, "count", "metric", customLabel="predictions"),
                over_time(2),
                terms(3, "correct", "group", size=2),
            ],
            xy_params(bar, [("1", "predictions", "ValueAxis-1")], [("ValueAxis-1", "predictions")]),
            "The prediction sample, right (true) and wrong (false).",
        )
    )
    return items


#: (visualization id, x, y, w, h) on Kibana's 48-column grid.
LAYOUT = (
    ("streamer-vis-usecase-control", 0, 0, 12, 8),
    ("streamer-vis-latest-metrics", 12, 0, 18, 8),
    ("streamer-vis-latest-window", 30, 0, 18, 8),
    ("streamer-vis-pipeline-totals", 0, 8, 48, 6),
    ("streamer-vis-metrics-cumulative", 0, 14, 24, 15),
    ("streamer-vis-metrics-window", 24, 14, 24, 15),
    ("streamer-vis-metrics-batch", 0, 29, 24, 15),
    ("streamer-vis-alerts", 24, 29, 24, 15),
    ("streamer-vis-detections-timeline", 0, 44, 24, 15),
    ("streamer-vis-detections-table", 24, 44, 24, 15),
    ("streamer-vis-throughput", 0, 59, 24, 13),
    ("streamer-vis-latency", 24, 59, 24, 13),
    ("streamer-vis-models", 0, 72, 24, 13),
    ("streamer-vis-predictions", 24, 72, 24, 13),
    ("streamer-vis-leaderboard", 0, 85, 24, 15),
    ("streamer-vis-leaderboard-timeline", 24, 85, 24, 15),
    ("streamer-vis-probability-metrics", 0, 100, 24, 15),
    ("streamer-vis-reliability", 24, 100, 24, 15),
)


def dashboard() -> dict:
    panels = []
    references = []
    for number, (vis_id, x, y, w, h) in enumerate(LAYOUT, 1):
        index = str(number)
        panels.append(
            {
                "type": "visualization",
                "gridData": {"x": x, "y": y, "w": w, "h": h, "i": index},
                "panelIndex": index,
                "embeddableConfig": {"enhancements": {}},
                "panelRefName": f"panel_{index}",
            }
        )
        references.append({"id": vis_id, "name": f"{index}:panel_{index}", "type": "visualization"})
    return saved_object(
        "dashboard",
        DASHBOARD_ID,
        {
            "description": "STREAMER evaluation: metrics, alerts, detections, throughput, "
            "latency, models, the leaderboard of champion and challengers, and the calibration "
            "of class probabilities. Choose a use case at the top left.",
            "kibanaSavedObjectMeta": {
                "searchSourceJSON": dumps({"query": EMPTY_QUERY, "filter": []})
            },
            "optionsJSON": dumps(
                {
                    "useMargins": True,
                    "syncColors": False,
                    "syncCursor": True,
                    "syncTooltips": False,
                    "hidePanelTitles": False,
                }
            ),
            "panelsJSON": dumps(panels),
            "refreshInterval": {"pause": False, "value": 10000},
            "timeFrom": "now-1h",
            "timeRestore": True,
            "timeTo": "now",
            "title": "STREAMER evaluation",
            "version": 1,
        },
        references,
    )


DATA_VIEWS = (
    ("metrics", "STREAMER metrics"),
    ("batches", "STREAMER batches"),
    ("detections", "STREAMER detections"),
    ("alerts", "STREAMER alerts"),
    ("models", "STREAMER models"),
    ("predictions", "STREAMER predictions"),
    ("leaderboard", "STREAMER leaderboard"),
    ("reliability", "STREAMER reliability"),
)


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def build() -> str:
    objects = [data_view(index, name) for index, name in DATA_VIEWS]
    objects += visualizations()
    objects.append(dashboard())
    return "".join(dumps(obj) + "\n" for obj in objects)


if __name__ == "__main__":
    OUTPUT.write_text(build(), encoding="utf-8")
    print(f"wrote {OUTPUT}")
