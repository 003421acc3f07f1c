"""The chaos scenario of `make chaos` (benchmarks/chaos.py), shortened to fit `make test`: one
replay through `streamer run` while its launcher is SIGKILLed twice and its trainer, evaluator
and producer once, each when provably mid-stream, and its Kafka broker (a private one) is
restarted. Every record gets exactly one prediction, InfluxDB holds each record once, every
prediction is River's for what its version had learnt, and the evaluator's accuracy is exactly
the one over the outputs. (The undisturbed run and its comparison are `make chaos`'s.)"""

from __future__ import annotations

import json

from benchmarks.chaos import Scenario, run_scenario


async def test_a_replay_through_kills_and_a_broker_restart_loses_and_repeats_nothing(
    tmp_path, data_dir
):
    scenario = Scenario(
        rows=5_000,
        launcher_kills=2,
        trainer_kills=1,
        evaluator_kills=1,
        producer_kills=1,
        broker_restarts=1,
        broker_down_s=2.0,
        baseline=False,
        drain_timeout_s=120,
    )
    report = await run_scenario(scenario, data_dir, tmp_path / "chaos")
    assert report["ok"], json.dumps(report, indent=2)
    figures = report["chaos"]
    assert (figures["missing"], figures["duplicates"]) == (0, 0)
    assert figures["influx_records"] == figures["records"] == scenario.rows
    assert figures["evaluator_accuracy"] == figures["outputs_accuracy"] is not None
    assert report["kills"]["done"] == report["kills"]["planned"]
