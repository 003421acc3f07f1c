"""`streamer run` as pure logic: when a child is restarted, after how long, when it is given
up, what the stop does to each child, and what the children are given."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from services.cli import app
from services.supervisor import (
    STOP_ORDER,
    Action,
    Child,
    ChildSpec,
    RestartPolicy,
    State,
    StopAction,
    child_environment,
    describe_exit,
    format_duration,
    pipeline_commands,
    readable,
    status_table,
    stop_plan,
)

POLICY = RestartPolicy(base_delay_s=1, factor=2, max_delay_s=10, max_quick_failures=5)


def run_of_crashes(policy: RestartPolicy, exits: list[tuple[int, float]]) -> list:
    """The decisions for a child that exits with these (code, run time) one after the other."""
    decisions, streak = [], 0
    for code, ran_s in exits:
        decision = policy.decide(code, ran_s, streak)
        decisions.append(decision)
        streak = decision.streak
    return decisions


def test_quick_crashes_back_off_exponentially_up_to_the_cap_then_give_up():
    policy = RestartPolicy(base_delay_s=1, factor=2, max_delay_s=5, max_quick_failures=6)
    decisions = run_of_crashes(policy, [(1, 0.5)] * 6)
    assert [d.action for d in decisions] == [Action.RESTART] * 5 + [Action.GIVE_UP]
    assert [d.delay_s for d in decisions[:5]] == [1, 2, 4, 5, 5]
    assert decisions[-1].streak == 6


def test_a_crash_after_a_long_run_starts_a_new_streak():
    decisions = run_of_crashes(POLICY, [(1, 1), (1, 1), (1, 1), (1, 3600), (1, 1)])
    assert [d.delay_s for d in decisions] == [1, 2, 4, 1, 2]
    assert all(d.action is Action.RESTART for d in decisions)


def test_exit_0_finishes_a_producer_but_is_a_crash_for_the_other_services():
    assert POLICY.decide(0, 0.1, 3, done_on_success=True).action is Action.FINISHED
    restart = POLICY.decide(0, 0.1, 0, done_on_success=False)
    assert (restart.action, restart.delay_s) == (Action.RESTART, 1)
    # a crashing producer is restarted like any service
    assert POLICY.decide(1, 0.1, 0, done_on_success=True).action is Action.RESTART


def test_nothing_is_restarted_once_the_stop_began():
    for code in (0, 1, -signal.SIGKILL, None):
        assert POLICY.decide(code, 0.1, 4, stopping=True).action is Action.STOPPED


def test_a_child_that_cannot_be_started_counts_as_a_quick_failure():
    decisions = run_of_crashes(POLICY, [(None, 0)] * 5)  # type: ignore[list-item]
    assert decisions[-1].action is Action.GIVE_UP


def test_the_stop_plan_terminates_what_runs_in_order_and_cancels_pending_restarts():
    children = [
        ("producer", State.FINISHED),
        ("launcher", State.RUNNING),
        ("trainer", State.BACKOFF),
        ("evaluator", State.STARTING),
        ("api", State.FAILED),
    ]
    assert stop_plan(children) == [
        ("producer", StopAction.NOTHING),
        ("launcher", StopAction.TERMINATE),
        ("trainer", StopAction.CANCEL),
        ("evaluator", StopAction.TERMINATE),
        ("api", StopAction.NOTHING),
    ]


def test_the_pipeline_is_listed_in_stop_order_producer_first_api_last():
    commands = pipeline_commands(["uc1", "path/uc2"], 8123, ["uc1", "uc2"], python="py")
    assert tuple(spec.name for spec in commands) == STOP_ORDER
    assert STOP_ORDER[0] == "producer" and STOP_ORDER[-1] == "api"
    by_name = {spec.name: spec for spec in commands}
    assert by_name["producer"].argv == ("py", "-m", "services.cli", "produce", "uc1", "path/uc2")
    assert by_name["producer"].done_on_success
    assert by_name["launcher"].argv[-3:] == ("launch", "uc1", "path/uc2")
    assert by_name["trainer"].argv[-3:] == ("train", "uc1", "path/uc2")
    assert by_name["evaluator"].argv[-3:] == ("evaluate", "uc1", "path/uc2")
    assert by_name["api"].argv[3:] == (
        "api", "--host", "127.0.0.1", "--port", "8123", "--usecase", "uc1", "--usecase", "uc2"
    )  # fmt: skip
    assert not any(spec.done_on_success for spec in commands[1:])


def test_a_model_secret_is_generated_only_when_missing():
    env, generated = child_environment({"PATH": "/bin"})
    assert generated and len(env["STREAMER_MODEL_SECRET"]) == 64
    assert env["PATH"] == "/bin" and env["PYTHONUNBUFFERED"] == "1"
    other, _ = child_environment({})
    assert other["STREAMER_MODEL_SECRET"] != env["STREAMER_MODEL_SECRET"]
    kept, generated = child_environment({"STREAMER_MODEL_SECRET": "mine"})
    assert not generated and kept["STREAMER_MODEL_SECRET"] == "mine"
    _, generated = child_environment({"STREAMER_MODEL_SECRET": ""})
    assert generated


def test_exits_and_durations_read_well():
    assert describe_exit(3) == "exited with code 3"
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(None) == "could not be started"
    assert [format_duration(s) for s in (None, 5.9, 65, 3725)] == ["-", "5s", "1m05s", "1h02m"]


def test_child_json_log_lines_are_made_readable_on_a_terminal():
    line = json.dumps({"ts": "x", "level": "info", "logger": "launcher", "msg": "hi", "n": 3})
    assert readable(line) == "INFO launcher: hi n=3"
    assert readable("plain text") == "plain text"
    assert readable("{not json") == "{not json"


def test_the_status_table_shows_each_child():
    running = Child(ChildSpec("launcher", ("x",)), state=State.RUNNING, pid=42, started_at=0.0)
    waiting = Child(
        ChildSpec("api", ("x",)), state=State.BACKOFF, restarts=2, exit_code=1, next_start_at=14.0
    )
    console = Console(width=120, record=True)
    console.print(status_table([running, waiting], now=10.0))
    text = console.export_text()
    assert "launcher" in text and "42" in text and "running" in text and "10s" in text
    assert "backoff" in text and "next attempt in 4 s" in text


def test_duplicate_child_names_are_refused():
    from services.supervisor import Supervisor

    with pytest.raises(ValueError, match="unique"):
        Supervisor([ChildSpec("a", ("x",)), ChildSpec("a", ("y",))])


def test_run_validates_the_use_cases_first_and_exits_2(tmp_path: Path):
    (tmp_path / "streaming.props").write_text("mainTopic=t\n")
    (tmp_path / "algs.props").write_text("algorithm=HoeffdingTreeClassifier\n")
    result = CliRunner().invoke(app, ["run", str(tmp_path), "--port", "1"])
    assert result.exit_code == 2
    assert "outputTopic: required key is missing" in result.stderr


def test_run_and_status_are_listed_in_the_help():
    import subprocess

    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert " run " in result.stdout and " status " in result.stdout


def test_a_federated_server_runs_federate_server_only():
    commands = pipeline_commands(["site-a"], 8123, ["site-a"], python="py", servers=["fed-srv"])
    assert [spec.name for spec in commands] == [
        "producer",
        "launcher",
        "trainer",
        "evaluator",
        "federate-fed-srv",
        "api",
    ]
    server = commands[4]
    assert server.argv == ("py", "-m", "services.cli", "federate", "server", "fed-srv")
    assert server.done_on_success  # its rounds done, it is finished, not crashed
    assert all("fed-srv" not in spec.argv for spec in commands if spec is not server)


def test_a_child_that_had_been_healthy_starts_a_new_streak_however_quick_its_run():
    """Killed ten times, each after it became healthy: restarted each time after the base
    delay; the same quick ends without health give up at the fifth."""
    healthy, streak = [], 0
    for _ in range(10):
        decision = POLICY.decide(-signal.SIGKILL, 2.0, streak, healthy=True)
        healthy.append(decision)
        streak = decision.streak
    assert {(d.action, d.delay_s, d.streak) for d in healthy} == {(Action.RESTART, 1, 1)}
    never = run_of_crashes(POLICY, [(-signal.SIGKILL, 2.0)] * 5)
    assert never[-1].action is Action.GIVE_UP


def test_every_pipeline_service_is_known_healthy_by_its_heartbeat():
    specs = pipeline_commands(["uc"], 8000, ["uc"])
    assert {spec.name: spec.heartbeat for spec in specs} == {
        name: name for name in ("producer", "launcher", "trainer", "evaluator", "api")
    }
