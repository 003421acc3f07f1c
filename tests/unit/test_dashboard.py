"""The dashboard's aggregation (services/api/dashboard/snapshot.py) on hand-made answers of its
sources: metric series, throughput and latency buckets, events, the model panel."""

from __future__ import annotations

import math

from services.api.dashboard.snapshot import (
    batch_buckets,
    chart_metric,
    leaderboard_panel,
    metric_series,
    model_events,
    model_panel,
    reliability_panel,
)
from services.api.dashboard.sources import Document
from shared.health import instances_of
from shared.wire.heartbeat import HeartbeatPayload
from shared.wire.influx import MetricPoint, ModelScore, ReliabilityRow
from shared.wire.store import ModelMeta, Published


def test_metric_series_are_sorted_per_view_and_skip_gaps_and_unknown_views():
    points = [
        MetricPoint("cumulative", "accuracy", 2000, 0.8),
        MetricPoint("cumulative", "accuracy", 1000, 0.7),
        MetricPoint("cumulative", "macro_f1", 1000, math.nan),
        MetricPoint("window", "accuracy", 1000, None),
        MetricPoint("daily", "accuracy", 1000, 0.5),
    ]
    assert metric_series(points) == {"cumulative": {"accuracy": [[1000, 0.7], [2000, 0.8]]}}


def test_batch_buckets_rate_is_records_over_the_time_since_the_previous_evaluation():
    documents = [
        Document(500, {"records": 99}),  # before the window: only its time counts
        Document(2500, {"records": 10, "latency_ms_p50": 20, "latency_ms_p95": 60}),
        Document(4500, {"records": 30, "latency_ms_p50": 30, "latency_ms_p95": 90}),
        Document(12_000, {"records": 8, "records_per_s": 4.0}),  # 7.5 s after the previous
    ]
    result = batch_buckets(documents, start_ms=1000, bucket_ms=10_000)
    # bucket 0: (10 + 30) records over (2.0 + 2.0) s; bucket 10000: 8 records over 7.5 s
    assert result["throughput"] == [[0, 10.0], [10_000, round(8 / 7.5, 3)]]
    assert result["p50"] == [[0, 25.0]] and result["p95"] == [[0, 90.0]]
    assert result["present"] is True
    first = batch_buckets([Document(2000, {"records": 8, "records_per_s": 4.0})], 0, 10_000)
    assert first["throughput"] == [[0, 4.0]]  # 8 records over the evaluator's 2 s estimate


def published(at_ms: int, version: int, mode: str, **meta) -> Published:
    return Published(at_ms, ModelMeta(version=version, mode=mode, **meta))


def test_only_versions_not_learnt_from_the_stream_are_events():
    events = model_events(
        [
            published(1000, 1, "classical", reason="interval"),
            *(published(1000 + i * 1000, i, "stream", reason="stream") for i in range(2, 40)),
            published(50_000, 40, "retrain", reason="alert: accuracy"),
        ]
    )
    assert events == [
        {"time": 1000, "kind": "model", "text": "v1 (classical, interval)", "label": "v1"},
        {
            "time": 50_000,
            "kind": "model",
            "text": "v40 (retrain, alert: accuracy)",
            "label": "v40",
        },
    ]


def test_the_model_panel_shows_staleness_and_each_launchers_version():
    now = 1_800_000_000.0

    def beat(service: str, instance: str, version: int | None, status: str = "running"):
        return HeartbeatPayload(
            service=service,
            instance=instance,
            usecases=["x"],
            status=status,
            started_at=now - 60,
            updated_at=now - 1,
            model_versions={"x": version},
        )

    instances = instances_of(
        [
            beat("launcher", "h-1", 41),
            beat("launcher", "h-2", 40),
            beat("launcher", "h-3", 12, status="stopping"),
            beat("trainer", "t-1", 42),
            beat("evaluator", "e-1", None),
        ],
        now,
    )
    newest = ModelMeta(
        version=42,
        mode="stream",
        algorithm="HoeffdingTreeClassifier",
        positions={"x/0": 1200, "x/1": 1150},
        lag_records=35,
        lag_ms=12,
    )
    panel = model_panel(newest, instances, "x")
    assert panel is not None
    assert panel["version"] == 42 and panel["mode"] == "stream"
    assert (panel["positions"], panel["lag_records"]) == ({"x/0": 1200, "x/1": 1150}, 35)
    assert panel["serving"] == {"launcher": 41, "trainer": 42}
    assert panel["launchers"] == {"h-1": 41, "h-2": 40}
    assert model_panel(None, [], "x") is None
    without_meta = model_panel(None, instances, "x")
    assert without_meta is not None and without_meta["version"] == 42


def test_the_leaderboard_panel_puts_the_champion_first_and_follows_one_metric():
    latest = [
        ModelScore("moa.HoeffdingTree", "window", "accuracy", 5000, 0.99, 1000, "challenger"),
        ModelScore("moa.HoeffdingTree", "window", "macro_f1", 5000, math.nan, 1000, "challenger"),
        ModelScore("HoeffdingTreeClassifier", "window", "accuracy", 5000, 0.97, 1000, "champion"),
        ModelScore("HoeffdingTreeClassifier", "cumulative", "accuracy", 5000, 0.96, 9000, None),
    ]
    assert chart_metric(latest) == "accuracy"
    assert chart_metric([latest[1]]) == "macro_f1"
    assert chart_metric([]) is None
    buckets = [
        ModelScore("moa.HoeffdingTree", "window", "accuracy", 2000, 0.98),
        ModelScore("moa.HoeffdingTree", "window", "accuracy", 1000, 0.97),
        ModelScore("HoeffdingTreeClassifier", "window", "accuracy", 1000, None),
    ]
    panel = leaderboard_panel((latest, "accuracy", buckets), None)
    assert panel is not None
    assert panel["champion"] == "HoeffdingTreeClassifier"  # the evaluator's roles
    assert [(row["model"], row["role"]) for row in panel["rows"]] == [
        ("HoeffdingTreeClassifier", "champion"),
        ("moa.HoeffdingTree", "challenger"),
    ]
    assert panel["rows"][1]["values"] == {"window": {"accuracy": 0.99, "macro_f1": None}}
    assert panel["series"] == {"moa.HoeffdingTree": [[1000, 0.97], [2000, 0.98]]}
    promoted = leaderboard_panel((latest, "accuracy", []), {"champion": "moa.HoeffdingTree"})
    assert promoted is not None and promoted["rows"][0]["model"] == "moa.HoeffdingTree"
    assert leaderboard_panel(None, None) is None


def bin_row(view: str, metric: str, number: int, count: int, evaluation: int = 7) -> ReliabilityRow:
    lower, upper = number / 10, (number + 1) / 10
    return ReliabilityRow(
        view, metric, number, lower, upper, count, lower + 0.05, 0.5, evaluation, 1000
    )


def test_the_reliability_panel_shows_one_calibration_metric_per_view_lowest_bin_first():
    rows = [
        bin_row("window", "calibration_error", 9, 40),
        bin_row("window", "calibration_error", 2, 3),
        bin_row("cumulative", "calibration_error", 9, 400, evaluation=8),
        bin_row("cumulative", "binary_calibration_error", 0, 10),
        bin_row("unknown", "calibration_error", 1, 1),
    ]
    panel = reliability_panel(rows)
    assert panel is not None and panel["metric"] == "calibration_error"
    assert set(panel["views"]) == {"window", "cumulative"}
    window = panel["views"]["window"]
    assert [row["bin"] for row in window["bins"]] == [2, 9]
    assert window["bins"][0] == {
        "bin": 2, "lower": 0.2, "upper": 0.3, "count": 3, "confidence": 0.25, "frequency": 0.5,
    }  # fmt: skip
    assert panel["views"]["cumulative"]["evaluation"] == 8
    only_binary = reliability_panel([rows[3]])
    assert only_binary is not None and only_binary["metric"] == "binary_calibration_error"
    assert reliability_panel([]) is None
