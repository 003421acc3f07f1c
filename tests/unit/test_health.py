"""The health read model (shared/health.py) on hand-made heartbeats: which service is up for
which use case, what each check and dashboard row carries, the table order, the JSON form."""

from __future__ import annotations

import json
import math

from shared.health import (
    check_health,
    instances_of,
    services_down,
    usecase_services,
)
from shared.wire.heartbeat import HeartbeatPayload

NOW = 1_800_000_000.0


def beat(service: str, instance: str, usecases: list[str], status: str = "running", **extra):
    return HeartbeatPayload(
        service=service,
        instance=instance,
        usecases=usecases,
        status=status,
        started_at=NOW - 100,
        updated_at=NOW - extra.pop("age", 1.0),
        **extra,
    )


def test_instances_come_in_pipeline_order_then_by_name():
    beats = [
        beat("api", "a-1", ["x"]),
        beat("custom", "c-1", ["x"]),
        beat("launcher", "h-2", ["x"]),
        beat("producer", "p-1", ["x"]),
        beat("launcher", "h-1", ["x"]),
    ]
    order = [(found.service, found.instance) for found in instances_of(beats, NOW)]
    assert order == [
        ("producer", "p-1"),
        ("launcher", "h-1"),
        ("launcher", "h-2"),
        ("api", "a-1"),
        ("custom", "c-1"),
    ]


def test_a_check_reports_the_newest_version_of_the_running_instances():
    beats = [
        beat("launcher", "h-1", ["x"], model_versions={"x": 40}),
        beat("launcher", "h-2", ["x", "y"], model_versions={"x": 41, "y": 7}, age=3.0),
        beat("launcher", "h-3", ["x"], status="stopping", model_versions={"x": 99}),
    ]
    health = check_health(beats, ["x", "y"], ["launcher"], NOW)
    x, y = health.checks
    assert (x.up, x.instances, x.model_version, x.age_s) == (True, ["h-1", "h-2"], 41, 1.0)
    assert (y.instances, y.model_version, y.age_s) == (["h-2"], 7, 3.0)
    assert [found.instance for found in health.instances] == ["h-1", "h-2", "h-3"]


def test_services_down_are_the_required_ones_without_a_running_instance():
    beats = [beat("launcher", "h-1", ["x"]), beat("trainer", "t-1", ["x"], status="stopping")]
    assert services_down(instances_of(beats, NOW), ["launcher", "trainer", "evaluator"]) == [
        "trainer",
        "evaluator",
    ]


def test_dashboard_rows_carry_the_usecase_counters_and_a_down_row_per_missing_service():
    beats = [
        beat(
            "launcher",
            "h-1",
            ["x", "y"],
            counters={"x": {"records": 5}, "y": {"records": 9}},
            model_versions={"x": 3, "y": 4},
            age=2.345,
        ),
        beat("trainer", "t-1", ["y"]),  # another use case: not a row of x
        beat("api", "a-1", ["x"]),
    ]
    rows = usecase_services(instances_of(beats, NOW), "x")
    assert [(row.service, row.instance, row.status, row.up) for row in rows] == [
        ("producer", None, "down", False),
        ("launcher", "h-1", "running", True),
        ("trainer", None, "down", False),
        ("evaluator", None, "down", False),
        ("api", "a-1", "running", True),
    ]
    launcher = rows[1]
    assert (launcher.counters, launcher.model_version, launcher.age_s) == ({"records": 5}, 3, 2.3)


def test_non_finite_counters_are_null_in_json_and_kept_in_python():
    (found,) = instances_of([beat("evaluator", "e-1", ["x"], counters={"x": {"p": math.nan}})], NOW)
    assert json.loads(found.model_dump_json())["counters"] == {"x": {"p": None}}
    assert math.isnan(found.counters["x"]["p"])


def test_an_instance_in_an_outage_is_up_and_its_outage_is_listed():
    """It runs and retries, and restarting it would not help: up, status ok, outage shown."""
    away = {"Kafka": "delivering outputs: failing since 2026-01-01T00:00:00+00:00: timeout"}
    beats = [beat("launcher", "h-1", ["x"], outages=away), beat("trainer", "t-1", ["x"])]
    health = check_health(beats, ["x"], ["launcher", "trainer"], NOW)
    launcher, trainer = health.checks
    assert health.status == "ok" and health.problems == []
    assert (launcher.up, launcher.outages, trainer.outages) == (True, away, {})
    assert health.outages == [f"launcher h-1: Kafka away ({away['Kafka']})"]
    assert health.instances[0].outages == away
