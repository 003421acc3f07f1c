"""The supervisor with real child processes: small Python scripts written for each test stand
in for the services (crashing, finishing, ignoring SIGTERM, recording when they were stopped),
so restarts, backoff, the stop order and SIGKILL are checked without the pipeline."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import pty
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from services.supervisor import ChildSpec, HeartbeatProbe, RestartPolicy, State, Supervisor
from shared.clients.redis import connect_redis

REPO = Path(__file__).resolve().parents[2]

# Every script writes `<name>.pid` once it runs (its signal handlers installed) and sleeps.
PRELUDE = """
import os, signal, sys, time
from pathlib import Path
name, folder = sys.argv[1], Path(sys.argv[2])
def ready():
    (folder / f"{name}.pid").write_text(str(os.getpid()))
"""

SCRIPTS = {
    # fails twice (exit 3), then runs until SIGTERM; each start appends its time
    "crash_twice.py": """
starts = folder / f"{name}.starts"
with starts.open("a") as out:
    out.write(f"{time.monotonic()}\\n")
if len(starts.read_text().split()) <= 2:
    sys.exit(3)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
ready()
while True:
    time.sleep(60)
""",
    # a producer that has replayed its file
    "finish.py": """
ready()
time.sleep(0.2)
""",
    # never stops on SIGTERM: only SIGKILL ends it
    "stubborn.py": """
signal.signal(signal.SIGTERM, signal.SIG_IGN)
ready()
while True:
    time.sleep(60)
""",
    # records when it received SIGTERM and when it finished draining (0.3 s later)
    "recorder.py": """
def on_term(*_):
    with (folder / "order.log").open("a") as out:
        out.write(f"{name} term {time.monotonic()}\\n")
        time.sleep(0.3)
        out.write(f"{name} exit {time.monotonic()}\\n")
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
ready()
while True:
    time.sleep(60)
""",
    # drains for 1.5 s after SIGTERM
    "slow_stop.py": """
def on_term(*_):
    time.sleep(1.5)
    sys.exit(0)
signal.signal(signal.SIGTERM, on_term)
ready()
while True:
    time.sleep(60)
""",
    "always_fail.py": """
sys.exit(7)
""",
    # runs until killed, never saying it is ready (healthy)
    "silent.py": """
while True:
    time.sleep(60)
""",
    # a service's real heartbeat in Redis (shared/heartbeat.py), then runs until killed
    "beating.py": """
import asyncio
from shared.clients.redis import connect_redis
from shared.config import ConnectionSettings
from shared.heartbeat import Heartbeat
async def main():
    redis = connect_redis(ConnectionSettings())
    await Heartbeat(redis, name, ["supervised"]).start()
    ready()
    await asyncio.sleep(3600)
asyncio.run(main())
""",
}

FAST = RestartPolicy(base_delay_s=0.3, factor=2, max_delay_s=5, max_quick_failures=4)


@pytest.fixture
def scripts(tmp_path: Path) -> Path:
    for filename, body in SCRIPTS.items():
        (tmp_path / filename).write_text(PRELUDE + textwrap.dedent(body))
    return tmp_path


def spec(folder: Path, name: str, script: str, **options) -> ChildSpec:
    return ChildSpec(name, (sys.executable, str(folder / script), name, str(folder)), **options)


async def wait_for(condition, within_s: float = 20, what: str = "condition") -> None:
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def ready(folder: Path, *names: str) -> bool:
    return all((folder / f"{name}.pid").exists() for name in names)


def pid_of(folder: Path, name: str) -> int:
    return int((folder / f"{name}.pid").read_text())


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


async def test_a_crashing_child_is_restarted_with_growing_delays(scripts, caplog):
    caplog.set_level(logging.INFO, "supervisor")
    supervisor = Supervisor([spec(scripts, "launcher", "crash_twice.py")], policy=FAST)
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    await wait_for(lambda: ready(scripts, "launcher"), what="the third start")
    (child,) = supervisor.children
    assert (child.state, child.restarts) == (State.RUNNING, 2)

    starts = [float(t) for t in (scripts / "launcher.starts").read_text().split()]
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6, gaps
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "launcher exited with code 3 after" in warnings[0]
    assert warnings[0].endswith("next attempt in 0.3 s")
    assert warnings[1].endswith("next attempt in 0.6 s")

    stop.set()
    assert await running == 0
    assert child.state is State.STOPPED


async def test_a_finished_producer_is_not_restarted_and_the_others_keep_running(scripts, caplog):
    caplog.set_level(logging.INFO, "supervisor")
    supervisor = Supervisor(
        [
            spec(scripts, "producer", "finish.py", done_on_success=True),
            spec(scripts, "launcher", "recorder.py"),
        ],
        policy=FAST,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    producer, launcher = supervisor.children
    await wait_for(lambda: producer.state is State.FINISHED, what="the producer to finish")
    await asyncio.sleep(1.0)  # longer than the first backoff: no restart happened
    assert producer.restarts == 0 and launcher.state is State.RUNNING
    assert "producer finished (exit code 0)" in caplog.text
    stop.set()
    assert await running == 0
    assert "launcher term" in (scripts / "order.log").read_text()


async def test_a_child_failing_quickly_is_given_up_without_stopping_the_others(scripts, caplog):
    caplog.set_level(logging.INFO, "supervisor")
    supervisor = Supervisor(
        [spec(scripts, "launcher", "recorder.py"), spec(scripts, "api", "always_fail.py")],
        policy=RestartPolicy(base_delay_s=0.1, factor=2, max_quick_failures=3),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    launcher, api = supervisor.children
    await wait_for(lambda: api.state is State.FAILED, what="the api to be given up")
    assert api.restarts == 2 and launcher.state is State.RUNNING
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert errors == [
        "api exited with code 7: giving up after 3 quick failures in a row "
        "(the others keep running)"
    ]
    stop.set()
    assert await running == 0  # the stop itself was clean
    assert "given up earlier: api" in caplog.text


async def test_every_child_is_stopped_in_order_each_after_the_previous_exited(scripts):
    names = ["producer", "launcher", "trainer", "evaluator", "api"]
    supervisor = Supervisor([spec(scripts, name, "recorder.py") for name in names], policy=FAST)
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    await wait_for(lambda: ready(scripts, *names), what="every child")
    stop.set()
    assert await running == 0

    events = [line.split() for line in (scripts / "order.log").read_text().splitlines()]
    assert [(name, event) for name, event, _ in events] == [
        (name, event) for name in names for event in ("term", "exit")
    ]
    times = [float(at) for _, _, at in events]
    assert times == sorted(times)  # each SIGTERM only after the previous child had exited
    assert all(gone(pid_of(scripts, name)) for name in names)


async def test_a_child_ignoring_sigterm_is_killed_after_the_timeout(scripts, caplog):
    caplog.set_level(logging.INFO, "supervisor")
    supervisor = Supervisor(
        [spec(scripts, "launcher", "stubborn.py"), spec(scripts, "api", "recorder.py")],
        policy=FAST,
        stop_timeout_s=1.0,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    await wait_for(lambda: ready(scripts, "launcher", "api"), what="both children")
    started = time.monotonic()
    stop.set()
    assert await running == 1  # not a clean stop
    assert time.monotonic() - started >= 1.0
    launcher, api = supervisor.children
    assert (launcher.state, launcher.exit_code) == (State.KILLED, -signal.SIGKILL)
    assert "launcher did not stop within 1 s: sending SIGKILL" in caplog.text
    assert api.state is State.STOPPED and "api term" in (scripts / "order.log").read_text()
    assert gone(pid_of(scripts, "launcher"))


async def test_a_restart_pending_at_stop_time_is_cancelled(scripts):
    supervisor = Supervisor(
        [spec(scripts, "launcher", "always_fail.py")],
        policy=RestartPolicy(base_delay_s=30, max_quick_failures=5),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    (child,) = supervisor.children
    await wait_for(lambda: child.state is State.BACKOFF, what="the backoff")
    started = time.monotonic()
    stop.set()
    assert await running == 0
    assert time.monotonic() - started < 5 and child.state is State.STOPPED


async def test_no_restart_happens_while_the_children_before_it_drain(scripts):
    supervisor = Supervisor(
        [spec(scripts, "producer", "slow_stop.py"), spec(scripts, "launcher", "always_fail.py")],
        policy=RestartPolicy(base_delay_s=0.5, max_quick_failures=10),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    producer, launcher = supervisor.children
    await wait_for(lambda: ready(scripts, "producer") and launcher.state is State.BACKOFF)
    restarts = launcher.restarts
    stop.set()  # the launcher's next attempt comes due while the producer drains
    assert await asyncio.wait_for(running, 20) == 0
    assert launcher.restarts == restarts and launcher.state is State.STOPPED
    assert producer.state is State.STOPPED


async def test_a_child_crashing_while_waiting_for_its_turn_makes_the_stop_unclean(scripts):
    (scripts / "crash_on_term.py").write_text(
        PRELUDE + "signal.signal(signal.SIGTERM, lambda *_: sys.exit(9))\nready()\n"
        "while True:\n    time.sleep(60)\n"
    )
    supervisor = Supervisor(
        [spec(scripts, "producer", "slow_stop.py"), spec(scripts, "launcher", "crash_on_term.py")],
        policy=FAST,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    await wait_for(lambda: ready(scripts, "producer", "launcher"))
    stop.set()
    await asyncio.sleep(0.3)  # the producer drains; meanwhile the launcher dies on its own
    os.kill(pid_of(scripts, "launcher"), signal.SIGTERM)
    assert await running == 1
    assert supervisor.children[1].exit_code == 9


RUNNER = """
import asyncio, os, sys
from pathlib import Path
from services.supervisor import ChildSpec, RestartPolicy, supervise
from shared.logs import configure_logging

configure_logging()
folder, script, live = Path(sys.argv[1]), sys.argv[2], sys.argv[3:] == ["live"]
commands = [
    ChildSpec(name, (sys.executable, str(folder / script), name, str(folder)))
    for name in ("producer", "launcher", "trainer", "evaluator", "api")
]
log_file = Path(os.environ["RUNNER_LOG_FILE"]) if "RUNNER_LOG_FILE" in os.environ else None
sys.exit(asyncio.run(supervise(
    commands, stop_timeout_s=20, live=None if live else False, log_file=log_file
)))
"""
NAMES = ["producer", "launcher", "trainer", "evaluator", "api"]


async def start_runner(folder: Path, script: str, **env: str) -> asyncio.subprocess.Process:
    """The supervisor in its own process, as `streamer run` runs it (same `supervise`)."""
    (folder / "runner.py").write_text(RUNNER)
    with (folder / "runner.log").open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(folder / "runner.py"),
            str(folder),
            script,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO), **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, like a shell's foreground job
        )
    await wait_for(lambda: ready(folder, *NAMES), what="every child")
    return process


@pytest.mark.parametrize(
    ("signals", "to_group"),
    [([signal.SIGTERM], False), ([signal.SIGTERM, signal.SIGTERM], False), ([signal.SIGINT], True)],
    ids=["sigterm", "sigterm-twice", "ctrl-c-at-the-terminal"],
)
async def test_the_supervisor_process_exits_0_after_stopping_its_children_in_order(
    scripts, signals, to_group
):
    """Ctrl-C at a terminal signals the whole foreground process group: the children must not
    see it, only the supervisor; a repeated SIGTERM must not cut the orderly stop short."""
    process = await start_runner(scripts, "recorder.py")
    try:
        for signum in signals:
            if to_group:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
        code = await asyncio.wait_for(process.wait(), 60)
    finally:
        if process.returncode is None:
            process.kill()
    output = (scripts / "runner.log").read_text()
    assert code == 0, output
    events = [line.split()[:2] for line in (scripts / "order.log").read_text().splitlines()]
    assert events == [[name, event] for name in NAMES for event in ("term", "exit")], output
    assert all(gone(pid_of(scripts, name)) for name in NAMES)
    assert '"msg": "all children stopped cleanly"' in output


async def test_a_second_ctrl_c_kills_what_still_runs(scripts):
    process = await start_runner(scripts, "stubborn.py")
    try:
        process.send_signal(signal.SIGINT)
        await asyncio.sleep(0.5)  # the producer ignores SIGTERM: the stop waits for it
        assert process.returncode is None
        started = time.monotonic()
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 15)
    finally:
        if process.returncode is None:
            process.kill()
    output = (scripts / "runner.log").read_text()
    assert code == 1 and time.monotonic() - started < 10, output
    assert "second Ctrl-C: killing the children that still run" in output
    assert all(gone(pid_of(scripts, name)) for name in NAMES)


async def test_on_a_terminal_the_status_is_a_live_table_and_child_lines_scroll_above(scripts):
    (scripts / "talker.py").write_text(
        PRELUDE
        + textwrap.dedent(
            """
            import json
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
            print(json.dumps({"level": "info", "logger": name, "msg": "hello", "n": 1}))
            ready()
            while True:
                time.sleep(60)
            """
        )
    )
    (scripts / "runner.py").write_text(RUNNER)
    controller, terminal = pty.openpty()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(scripts / "runner.py"),
        str(scripts),
        "talker.py",
        "live",
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120", "TERM": "xterm"},
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
    )
    os.close(terminal)
    chunks: list[bytes] = []
    reader = threading.Thread(target=drain, args=(controller, chunks), daemon=True)
    reader.start()
    try:
        await wait_for(lambda: ready(scripts, *NAMES), what="every child")
        await asyncio.sleep(1.5)  # a refresh of the table with every child running
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 60)
    finally:
        if process.returncode is None:
            process.kill()
    await asyncio.to_thread(reader.join, 5)
    os.close(controller)
    screen = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", b"".join(chunks).decode(errors="replace"))
    assert code == 0, screen[-3000:]
    assert "streamer run" in screen and "restarts" in screen and "uptime" in screen
    assert re.search(r"launcher\s*│\s*\d+\s*│\s*running", screen), screen[-3000:]
    assert re.search(r"trainer │ INFO trainer: hello n=1", screen), screen[-3000:]
    assert re.search(r"launcher\s*│\s*\d+\s*│\s*stopped", screen), screen[-3000:]


def drain(fd: int, chunks: list[bytes]) -> None:
    """Read a pseudo-terminal until its other side is closed (as a terminal would)."""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return
        if not chunk:
            return
        chunks.append(chunk)


TALKER = """
import json
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
print(json.dumps({"level": "info", "logger": name, "msg": "hello", "n": 1}), flush=True)
print(f"plain line of {name}", flush=True)
ready()
while True:
    time.sleep(60)
"""


async def test_a_log_file_gets_every_line_while_the_output_stays_as_it_was(scripts):
    """`streamer run --log-file` (what `make logs` follows): the children's lines, made
    readable, and the supervisor's own records; stdout still shows the children's lines."""
    (scripts / "talker.py").write_text(PRELUDE + textwrap.dedent(TALKER))
    log_file = scripts / "run" / "pipeline.log"
    process = await start_runner(scripts, "talker.py", RUNNER_LOG_FILE=str(log_file))
    try:
        await wait_for(
            lambda: log_file.exists() and log_file.read_text().count("plain line of") == 5,
            what="the children's lines in the log file",
        )
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 60) == 0
    finally:
        if process.returncode is None:
            process.kill()
    written = log_file.read_text()
    for name in NAMES:
        assert f"{name:>9} │ INFO {name}: hello n=1" in written
        assert f"{name:>9} │ plain line of {name}" in written
    assert "all children stopped cleanly" in written
    output = (scripts / "runner.log").read_text()
    assert '{"level": "info", "logger": "api", "msg": "hello", "n": 1}' in output
    assert "plain line of trainer" in output


def ready_file_probe(folder: Path):
    """A child is healthy once its script said it is ready (wrote its pid)."""

    async def probe(service: str, pid: int) -> bool:
        path = folder / f"{service}.pid"
        return path.exists() and path.read_text() == str(pid)

    return probe


async def kill_when(child, condition, what: str) -> None:
    """SIGKILL the child's current process once `condition(child)` holds."""
    await wait_for(lambda: child.state is State.RUNNING and condition(child), what=what)
    os.kill(child.pid, signal.SIGKILL)
    pid = child.pid
    await wait_for(lambda: child.pid != pid or child.state is not State.RUNNING, what="exit")


async def test_a_child_killed_again_and_again_after_being_healthy_is_never_given_up(
    scripts, caplog
):
    """Six quick SIGKILLs in a row, each once the child was healthy: six restarts, each after
    the base delay, where quick failures without health give up after three."""
    caplog.set_level(logging.INFO, "supervisor")
    policy = RestartPolicy(base_delay_s=0.2, factor=2, max_quick_failures=3, quick_run_s=60)
    supervisor = Supervisor(
        [spec(scripts, "launcher", "recorder.py", heartbeat="launcher")],
        policy=policy,
        probe=ready_file_probe(scripts),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    (child,) = supervisor.children
    for kill in range(6):
        await kill_when(child, lambda c: c.healthy, f"healthy run {kill + 1}")
        await wait_for(lambda k=kill: child.restarts == k + 1, what=f"restart {kill + 1}")
    await wait_for(lambda: child.healthy, what="the last run to be healthy")
    assert child.state is State.RUNNING
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6
    assert all("killed by SIGKILL" in w and "(it had been healthy)" in w for w in warnings)
    assert all(w.endswith("next attempt in 0.2 s") for w in warnings)
    stop.set()
    assert await running == 0


async def test_a_child_killed_before_it_was_ever_healthy_is_given_up(scripts, caplog):
    caplog.set_level(logging.INFO, "supervisor")
    policy = RestartPolicy(base_delay_s=0.1, factor=2, max_quick_failures=3, quick_run_s=60)
    supervisor = Supervisor(
        [spec(scripts, "launcher", "silent.py", heartbeat="launcher")],
        policy=policy,
        probe=ready_file_probe(scripts),
    )
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    (child,) = supervisor.children
    for kill in range(3):
        await kill_when(child, lambda c: not c.healthy, f"run {kill + 1}")
    await wait_for(lambda: child.state is State.FAILED, what="the launcher to be given up")
    assert "giving up after 3 quick failures in a row" in caplog.text
    stop.set()
    await running


async def test_health_is_the_childs_own_heartbeat_in_redis(scripts, connections, caplog):
    """The probe of `streamer run` reads the heartbeat of the child's pid: a child killed
    four times, each after its heartbeat said running, is restarted each time."""
    caplog.set_level(logging.INFO, "supervisor")
    probe = HeartbeatProbe(connect_redis(connections))
    policy = RestartPolicy(base_delay_s=0.1, factor=2, max_quick_failures=2, quick_run_s=60)
    supervisor = Supervisor(
        [spec(scripts, "launcher", "beating.py", heartbeat="launcher")],
        policy=policy,
        probe=probe,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(supervisor.run(stop))
    (child,) = supervisor.children
    try:
        for kill in range(4):
            await kill_when(child, lambda c: c.healthy, f"healthy run {kill + 1}")
        await wait_for(lambda: child.restarts == 4 and child.healthy, what="a fifth healthy run")
        assert "launcher is healthy (its heartbeat says running)" in caplog.text
    finally:
        stop.set()
        await running
        await probe.close()
