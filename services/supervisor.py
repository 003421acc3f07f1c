"""`streamer run`: the pipeline's services as local child processes, for one machine without
Compose. Each child is watched by its own task; a crashed one is restarted with exponential
backoff; a signal stops them all in pipeline order (producer first, api last) so that what is
in flight drains downstream before its consumer stops.

A child is given up only after a few quick failures in a row without ever becoming healthy
(its own heartbeat in Redis said `running`, or it ran for RestartPolicy.quick_run_s): it
cannot start (bad configuration, port taken). A child that was healthy and then died (killed,
or crashed) is always restarted, after the base delay: its next run starts a new streak.

The children are `sys.executable -m services.cli <command> ...` with this process's
environment and working directory, each in its own process group: a Ctrl-C at the terminal
reaches only the supervisor, which then stops them in order. STREAMER_MODEL_SECRET (needed by
launcher and trainer to sign and check models) is generated for the run when it is not set;
models saved in Redis under a generated secret cannot be loaded by a later run, so set it
yourself for pipelines that outlive one `streamer run`.

Exit status: 0 after a clean stop (every child exited on SIGTERM within the timeout), 1 when a
child had to be killed or failed while stopping, or when every child ended on its own and
one of them was given up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TextIO

from redis.asyncio import Redis
from redis.exceptions import RedisError
from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from shared.clients.redis import connect_redis
from shared.config.settings import ConnectionSettings
from shared.health import SERVICES
from shared.heartbeat import this_host
from shared.logs import PlainFormatter
from shared.wire.heartbeat import RUNNING, HeartbeatPayload
from shared.wire.keys import heartbeat_key

log = logging.getLogger("supervisor")

SECRET_VARIABLE = "STREAMER_MODEL_SECRET"
# The order in which `run` stops the pipeline: upstream first, so every consumer still runs
# while its producer drains; the api (which only observes) last. Children start in reverse.
STOP_ORDER = SERVICES
STOP_TIMEOUT_S = 30.0
STATUS_INTERVAL_S = 60.0
PUMP_DRAIN_S = 5.0
#: How often a started child's heartbeat is looked for, until it is healthy.
PROBE_INTERVAL_S = 1.0


@dataclass(frozen=True)
class ChildSpec:
    """One child process to supervise; `done_on_success`: exit status 0 means its work is
    finished (the producer after replaying its files), not that it crashed; `heartbeat`: the
    service name of its heartbeat, which says when it is healthy (None: it has none)."""

    name: str
    argv: tuple[str, ...]
    done_on_success: bool = False
    heartbeat: str | None = None


def pipeline_commands(
    usecases: Sequence[str],
    port: int,
    names: Sequence[str] = (),
    python: str = sys.executable,
    servers: Sequence[str] = (),
) -> list[ChildSpec]:
    """The five services of `streamer run`, in stop order. `usecases`: as given (names or
    paths); `names`: the loaded use cases' names, the ones the api's /health then requires
    (instead of every use case of its folder, most of which this run does not run).
    `servers`: federated server use cases, each run by `streamer federate server` (and by
    nothing else) before the api; it is done once its rounds are."""
    cli = (python, "-m", "services.cli")
    health = [argument for name in names for argument in ("--usecase", name)]
    pipeline = (
        [
            ChildSpec("producer", (*cli, "produce", *usecases), True, "producer"),
            ChildSpec("launcher", (*cli, "launch", *usecases), heartbeat="launcher"),
            ChildSpec("trainer", (*cli, "train", *usecases), heartbeat="trainer"),
            ChildSpec("evaluator", (*cli, "evaluate", *usecases), heartbeat="evaluator"),
        ]
        if usecases
        else []
    )
    federated = [
        ChildSpec(f"federate-{Path(server).name}", (*cli, "federate", "server", server), True)
        for server in servers
    ]
    api = ChildSpec(
        "api", (*cli, "api", "--host", "127.0.0.1", "--port", str(port), *health), heartbeat="api"
    )
    return [*pipeline, *federated, api]


def child_environment(environ: Mapping[str, str]) -> tuple[dict[str, str], bool]:
    """The children's environment, and whether a model secret had to be generated for them:
    launcher and trainer must share one, and a fresh one per run beats refusing to start."""
    env = dict(environ)
    env["PYTHONUNBUFFERED"] = "1"  # child logs show up when they happen, not per 8 KiB
    generated = not env.get(SECRET_VARIABLE)
    if generated:
        env[SECRET_VARIABLE] = secrets.token_hex(32)
    return env, generated


# ---- pure policy: when to restart, when to give up, what to do at stop time -------------------


class State(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    BACKOFF = "backoff"  # crashed, waiting to be restarted
    FINISHED = "finished"  # exited 0 with done_on_success: its work is done
    FAILED = "failed"  # given up after too many quick failures
    STOPPING = "stopping"
    STOPPED = "stopped"
    KILLED = "killed"


class Action(StrEnum):
    RESTART = "restart"
    FINISHED = "finished"
    GIVE_UP = "give up"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Decision:
    action: Action
    delay_s: float = 0.0
    streak: int = 0  # quick failures in a row, this one included


@dataclass(frozen=True)
class RestartPolicy:
    """Exponential backoff between restarts. A run that ends in a crash before the child was
    healthy and before `quick_run_s` extends the streak of quick failures;
    `max_quick_failures` in a row give up (the child cannot start: bad config, port taken).
    A crash after a healthy or a longer run starts a new streak, so a service that is killed
    again and again, each time after it worked, is always restarted quickly."""

    base_delay_s: float = 1.0
    factor: float = 2.0
    max_delay_s: float = 30.0
    max_quick_failures: int = 5
    quick_run_s: float = 60.0

    def delay(self, streak: int) -> float:
        return min(self.base_delay_s * self.factor ** max(streak - 1, 0), self.max_delay_s)

    def decide(
        self,
        exit_code: int | None,
        ran_s: float,
        streak: int,
        *,
        done_on_success: bool = False,
        stopping: bool = False,
        healthy: bool = False,
    ) -> Decision:
        """What to do after a child exited; `exit_code` None: it could not even be started;
        `healthy`: it had become healthy during this run."""
        if stopping:
            return Decision(Action.STOPPED, streak=streak)
        if exit_code == 0 and done_on_success:
            return Decision(Action.FINISHED)
        streak = 1 if healthy or ran_s >= self.quick_run_s else streak + 1
        if streak >= self.max_quick_failures:
            return Decision(Action.GIVE_UP, streak=streak)
        return Decision(Action.RESTART, self.delay(streak), streak)


class StopAction(StrEnum):
    TERMINATE = "terminate"  # SIGTERM, wait up to the timeout, then SIGKILL
    CANCEL = "cancel"  # waiting to be restarted: just do not restart it
    NOTHING = "nothing"  # finished or given up already


def stop_action(state: State) -> StopAction:
    """What stopping a child in this state takes (decided at its turn: states change while
    the children before it drain)."""
    if state in (State.STARTING, State.RUNNING, State.STOPPING):
        return StopAction.TERMINATE
    if state is State.BACKOFF:
        return StopAction.CANCEL
    return StopAction.NOTHING


def stop_plan(children: Sequence[tuple[str, State]]) -> list[tuple[str, StopAction]]:
    """One step per child, in the given (stop) order."""
    return [(name, stop_action(state)) for name, state in children]


def describe_exit(code: int | None) -> str:
    if code is None:
        return "could not be started"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ---- the supervisor -------------------------------------------------------------------------


@dataclass(eq=False)
class Child:
    """A supervised child's live state (read by the status display)."""

    spec: ChildSpec
    state: State = State.STARTING
    pid: int | None = None
    restarts: int = 0
    streak: int = 0
    healthy: bool = False  # during its current (or last) run
    exit_code: int | None = None
    started_at: float | None = None  # loop time of the current run
    next_start_at: float | None = None
    process: asyncio.subprocess.Process | None = None
    task: asyncio.Task[None] | None = None
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def name(self) -> str:
        return self.spec.name

    def uptime(self, now: float) -> float | None:
        if self.state not in (State.RUNNING, State.STOPPING) or self.started_at is None:
            return None
        return now - self.started_at

    def fields(self, now: float) -> dict[str, Any]:
        return {
            "child": self.name,
            "pid": self.pid,
            "state": self.state.value,
            "restarts": self.restarts,
            "uptime": format_duration(self.uptime(now)),
        }


OutputSink = Callable[[str, str], None]
#: Whether the child of this service name and pid is healthy now.
HealthProbe = Callable[[str, int], Awaitable[bool]]


class HeartbeatProbe:
    """A child is healthy once its own heartbeat (the key of its pid on this host) says
    `running`: it connected to what it needs and works (shared/heartbeat.py)."""

    def __init__(self, redis: Redis):
        self.redis = redis

    @classmethod
    def connect(cls, settings: ConnectionSettings) -> HeartbeatProbe:
        return cls(connect_redis(settings, max_connections=2))

    async def __call__(self, service: str, pid: int) -> bool:
        try:
            raw = await self.redis.get(heartbeat_key(service, f"{this_host()}-{pid}"))
        except (RedisError, OSError):
            return False  # Redis away: not known to be healthy (yet)
        beat = HeartbeatPayload.decode(raw)
        return beat is not None and beat.status == RUNNING

    async def close(self) -> None:
        await self.redis.aclose()


class Supervisor:
    """Runs `commands` as child processes until `stop` is set, then stops them in list order.
    `output`: where the children's lines go (None: they inherit this process's stdout/stderr)."""

    def __init__(
        self,
        commands: Sequence[ChildSpec],
        *,
        env: Mapping[str, str] | None = None,
        policy: RestartPolicy | None = None,
        stop_timeout_s: float = STOP_TIMEOUT_S,
        output: OutputSink | None = None,
        status_interval_s: float | None = None,
        probe: HealthProbe | None = None,
    ):
        names = [spec.name for spec in commands]
        if len(set(names)) != len(names):
            raise ValueError(f"child names must be unique: {names}")
        self.children = [Child(spec) for spec in commands]
        self.env = dict(os.environ if env is None else env)
        self.policy = policy or RestartPolicy()
        self.stop_timeout_s = stop_timeout_s
        self.output = output
        self.status_interval_s = status_interval_s
        self.probe = probe
        self._shutting_down = False
        self._failed_while_stopping = False  # a child crashed while waiting for its turn
        self._hurry = asyncio.Event()

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    def hurry(self) -> None:
        """A second Ctrl-C: SIGKILL what still runs instead of waiting for it."""
        if not self._hurry.is_set():
            log.warning("second Ctrl-C: killing the children that still run")
        self._hurry.set()

    async def run(self, stop: asyncio.Event) -> int:
        """Start every child (downstream first), supervise them, stop them when `stop` is set.
        Returns the exit status (module docstring)."""
        for child in reversed(self.children):
            child.task = asyncio.create_task(self._watch(child), name=f"watch-{child.name}")
        watchers = asyncio.gather(*(child.task for child in self.children if child.task))
        stopped: asyncio.Future[Any] = asyncio.create_task(stop.wait())
        status = asyncio.create_task(self._log_status()) if self.status_interval_s else None
        try:
            await asyncio.wait({stopped, watchers}, return_when=asyncio.FIRST_COMPLETED)
            if stopped.done():
                return await self.shutdown()
            failed = [child.name for child in self.children if child.state is State.FAILED]
            log.log(
                logging.ERROR if failed else logging.INFO,
                "every child has ended" + (f"; given up: {', '.join(failed)}" if failed else ""),
            )
            return 1 if failed else 0
        finally:
            stopped.cancel()
            if status is not None:
                status.cancel()
            if not all(child.task and child.task.done() for child in self.children):
                await self._kill_all()  # only when cancelled from outside

    async def shutdown(self) -> int:
        """Stop the children one by one in list order; 0 when every one stopped cleanly."""
        self._shutting_down = True
        names = ", ".join(child.name for child in self.children)
        log.info(f"stopping in order: {names}")
        clean = True
        for child in self.children:
            action = stop_action(child.state)
            child.stop_requested.set()
            if action is StopAction.TERMINATE:
                clean = await self._stop_child(child) and clean
            elif child.task is not None:
                await child.task  # in backoff: wakes up and ends
        clean = clean and not self._failed_while_stopping
        failed = [child.name for child in self.children if child.state is State.FAILED]
        summary = "all children stopped" + (" cleanly" if clean else ", not all cleanly")
        if failed:
            summary += f"; given up earlier: {', '.join(failed)}"
        log.log(logging.INFO if clean else logging.WARNING, summary, extra={"clean": clean})
        return 0 if clean else 1

    async def _stop_child(self, child: Child) -> bool:
        """SIGTERM, wait up to the timeout (or a second Ctrl-C), then SIGKILL with a warning."""
        assert child.task is not None
        child.state = State.STOPPING
        self._log(child, logging.INFO, f"stopping {child.name} (SIGTERM)")
        self._signal(child, signal.SIGTERM)
        hurry = asyncio.create_task(self._hurry.wait())
        try:
            await asyncio.wait(
                {child.task, hurry},
                timeout=self.stop_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            hurry.cancel()
        if child.task.done():
            return child.exit_code in (0, -signal.SIGTERM)
        log.warning(
            f"{child.name} did not stop within {self.stop_timeout_s:g} s: sending SIGKILL"
            if not self._hurry.is_set()
            else f"{child.name} still running: sending SIGKILL",
            extra=child.fields(self.now()),
        )
        self._signal(child, signal.SIGKILL)
        await child.task
        child.state = State.KILLED
        return False

    async def _kill_all(self) -> None:
        self._shutting_down = True
        for child in self.children:
            child.stop_requested.set()
            self._signal(child, signal.SIGKILL)
        await asyncio.gather(
            *(child.task for child in self.children if child.task), return_exceptions=True
        )

    def _signal(self, child: Child, signum: signal.Signals) -> None:
        """Signal the child's whole process group (its own helpers too), if it still runs."""
        process = child.process
        if process is None or process.returncode is not None:
            return
        try:
            os.killpg(process.pid, signum)
        except (ProcessLookupError, PermissionError):
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signum)

    async def _watch(self, child: Child) -> None:
        try:
            await self._supervise(child)
        except Exception:  # a bug here must not leave the child unwatched and unnoticed
            log.exception(f"watching {child.name} failed", extra=child.fields(self.now()))
            child.state = State.FAILED
            self._signal(child, signal.SIGKILL)

    async def _supervise(self, child: Child) -> None:
        """Run the child until it finishes, is given up, or is stopped; restart it in between."""
        while True:
            if self._shutting_down:  # a restart that came due while the others stop
                child.state = State.STOPPED
                return
            child.state = State.STARTING
            exit_code, ran_s = await self._run_once(child)
            decision = self.policy.decide(
                exit_code,
                ran_s,
                child.streak,
                done_on_success=child.spec.done_on_success,
                stopping=self._shutting_down or child.stop_requested.is_set(),
                healthy=child.healthy,
            )
            child.streak = decision.streak
            if decision.action is Action.STOPPED:
                child.state = State.STOPPED
                ok = exit_code in (0, -signal.SIGTERM)
                if not ok and not child.stop_requested.is_set():
                    self._failed_while_stopping = True
                self._log(
                    child,
                    logging.INFO if ok else logging.WARNING,
                    f"{child.name} {describe_exit(exit_code)} (stopped)",
                )
                return
            if decision.action is Action.FINISHED:
                child.state = State.FINISHED
                self._log(child, logging.INFO, f"{child.name} finished (exit code 0)")
                return
            if decision.action is Action.GIVE_UP:
                child.state = State.FAILED
                self._log(
                    child,
                    logging.ERROR,
                    f"{child.name} {describe_exit(exit_code)}: giving up after "
                    f"{decision.streak} quick failures in a row (the others keep running)",
                )
                return
            child.state = State.BACKOFF
            child.next_start_at = self.now() + decision.delay_s
            had_been = " (it had been healthy)" if child.healthy else ""
            self._log(
                child,
                logging.WARNING,
                f"{child.name} {describe_exit(exit_code)} after {ran_s:.1f} s{had_been}: "
                f"next attempt in {decision.delay_s:g} s",
                exit_code=exit_code,
                next_attempt_s=decision.delay_s,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(child.stop_requested.wait(), decision.delay_s)
            child.next_start_at = None
            if child.stop_requested.is_set() or self._shutting_down:
                child.state = State.STOPPED
                return
            child.restarts += 1

    async def _run_once(self, child: Child) -> tuple[int | None, float]:
        """Start the child and wait for it; its exit code (None: not started) and run time."""
        started = self.now()
        pipe = asyncio.subprocess.PIPE if self.output else None
        try:
            process = await asyncio.create_subprocess_exec(
                *child.spec.argv,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=pipe,
                stderr=asyncio.subprocess.STDOUT if self.output else None,
                process_group=0,  # Ctrl-C at the terminal reaches only the supervisor
                limit=1 << 20,
            )
        except OSError as error:
            child.exit_code = None
            self._log(child, logging.ERROR, f"{child.name} could not be started: {error}")
            return None, self.now() - started
        child.process, child.pid, child.started_at = process, process.pid, self.now()
        child.state = State.RUNNING
        child.healthy = False
        self._log(child, logging.INFO, f"{child.name} started", argv=" ".join(child.spec.argv))
        if child.stop_requested.is_set():  # stop arrived while it was being started
            child.state = State.STOPPING
            self._signal(child, signal.SIGTERM)
        pump = (
            asyncio.create_task(self._pump(child.name, process.stdout))
            if self.output and process.stdout
            else None
        )
        watch = (
            asyncio.create_task(self._until_healthy(child, process.pid))
            if self.probe is not None and child.spec.heartbeat is not None
            else None
        )
        try:
            exit_code = await process.wait()
        finally:
            if watch is not None:
                watch.cancel()
        if pump is not None:  # the rest of its output; a helper it left may hold the pipe
            try:
                await asyncio.wait_for(pump, PUMP_DRAIN_S)
            except TimeoutError:
                self._log(child, logging.WARNING, f"{child.name}: output still open, not shown")
        child.exit_code = exit_code
        return exit_code, self.now() - started

    async def _until_healthy(self, child: Child, pid: int) -> None:
        """Look for the child's heartbeat until it says `running` (or the child ends)."""
        assert self.probe is not None and child.spec.heartbeat is not None
        while True:  # polling Redis: no event to wait on
            if await self.probe(child.spec.heartbeat, pid):
                break
            await asyncio.sleep(PROBE_INTERVAL_S)
        child.healthy = True
        self._log(child, logging.INFO, f"{child.name} is healthy (its heartbeat says running)")

    async def _pump(self, name: str, stream: asyncio.StreamReader) -> None:
        assert self.output is not None
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # longer than the limit: its start is dropped
                self.output(name, "(a line longer than 1 MiB was cut)")
                continue
            if not line:
                return
            self.output(name, line.decode(errors="replace").rstrip("\n"))

    async def _log_status(self) -> None:
        assert self.status_interval_s is not None
        while True:
            await asyncio.sleep(self.status_interval_s)
            now = self.now()
            for child in self.children:
                log.info("status", extra=child.fields(now))

    def _log(self, child: Child, level: int, message: str, **extra: Any) -> None:
        log.log(level, message, extra={**child.fields(self.now()), **extra})


# ---- display: a live table on a terminal, log lines elsewhere -------------------------------


def status_table(children: Sequence[Child], now: float) -> Table:
    table = Table(title="streamer run", title_justify="left", expand=False)
    for column in ("service", "pid", "state", "restarts", "uptime", "last exit", "note"):
        table.add_column(column)
    styles = {State.RUNNING: "green", State.BACKOFF: "yellow", State.FAILED: "bold red"}
    for child in children:
        note = ""
        if child.state is State.BACKOFF and child.next_start_at is not None:
            note = f"next attempt in {max(child.next_start_at - now, 0):.0f} s"
        table.add_row(
            child.name,
            str(child.pid or "-"),
            Text(child.state.value, style=styles.get(child.state, "")),
            str(child.restarts),
            format_duration(child.uptime(now)),
            "-" if child.exit_code is None else str(child.exit_code),
            note,
        )
    return table


class ConsoleHandler(logging.Handler):
    """Log records printed above the live table instead of through it."""

    def __init__(self, console: Console):
        super().__init__()
        self.console = console
        self.setFormatter(PlainFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), markup=False, highlight=False)
        except Exception:
            self.handleError(record)


def readable(line: str) -> str:
    """A child's JSON log line as `level logger: msg key=value`, other lines unchanged."""
    if not line.startswith("{"):
        return line
    try:
        payload = json.loads(line)
    except ValueError:
        return line
    if not isinstance(payload, dict) or "msg" not in payload:
        return line
    extras = " ".join(
        f"{key}={value}"
        for key, value in payload.items()
        if key not in ("ts", "level", "logger", "msg", "exc", "color_message")
    )
    text = f"{str(payload.get('level', '')).upper()} {payload.get('logger', '')}: {payload['msg']}"
    text = f"{text} {extras}" if extras else text
    return f"{text}\n{payload['exc']}" if payload.get("exc") else text


@contextlib.contextmanager
def live_display(supervisor: Supervisor, console: Console) -> Iterator[asyncio.Task[None]]:
    """The status table at the bottom of the terminal, refreshed every second by a task; log
    records and the children's lines scroll above it."""
    root = logging.getLogger()
    handlers = root.handlers[:]
    root.handlers[:] = [ConsoleHandler(console)]
    try:
        with Live(console=console, auto_refresh=False, redirect_stdout=False) as live:

            async def refresh() -> None:
                while True:
                    live.update(status_table(supervisor.children, supervisor.now()), refresh=True)
                    await asyncio.sleep(1.0)

            task = asyncio.create_task(refresh())
            try:
                yield task
            finally:
                task.cancel()
                live.update(status_table(supervisor.children, supervisor.now()), refresh=True)
    finally:
        root.handlers[:] = handlers


def print_child_line(console: Console) -> OutputSink:
    def output(name: str, line: str) -> None:
        console.print(Text(f"{name:>9} │ ", style="dim") + Text(readable(line)), soft_wrap=True)

    return output


def echo_child_line(name: str, line: str) -> None:
    """A child's line as it wrote it (what it would print inheriting our stdout)."""
    sys.stdout.write(f"{line}\n")
    sys.stdout.flush()


def write_child_line(stream: TextIO) -> OutputSink:
    def output(name: str, line: str) -> None:
        stream.write(f"{name:>9} │ {readable(line)}\n")

    return output


def fan_out(sinks: Sequence[OutputSink]) -> OutputSink:
    def output(name: str, line: str) -> None:
        for sink in sinks:
            sink(name, line)

    return output


@contextlib.contextmanager
def logging_to(stream: TextIO) -> Iterator[None]:
    """The supervisor's own log records written to `stream` too, while inside."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(PlainFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


# ---- entry points ---------------------------------------------------------------------------


@contextlib.contextmanager
def stop_signals(stop: asyncio.Event, on_second: Callable[[], None]) -> Iterator[None]:
    """SIGTERM, SIGINT and SIGHUP (terminal closed) set `stop`. Only a second Ctrl-C (SIGINT)
    calls `on_second`: a person who does not want to wait. Repeated SIGTERMs are common
    (`timeout`, init systems, a wrapper forwarding its own) and must not cut the drain."""
    loop = asyncio.get_running_loop()
    handled = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)

    def on_signal(signum: int) -> None:
        name = signal.Signals(signum).name
        if not stop.is_set():
            log.info(f"{name}: stopping the children in order (Ctrl-C again: kill them)")
            stop.set()
        elif signum == signal.SIGINT:
            on_second()
        else:
            log.info(f"{name}: already stopping")

    for signum in handled:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        yield
    finally:
        for signum in handled:
            loop.remove_signal_handler(signum)


async def supervise(
    commands: Sequence[ChildSpec],
    *,
    env: Mapping[str, str] | None = None,
    policy: RestartPolicy | None = None,
    stop_timeout_s: float = STOP_TIMEOUT_S,
    live: bool | None = None,
    log_file: Path | None = None,
    settings: ConnectionSettings | None = None,
) -> int:
    """Supervise `commands` until a signal (or until all have ended); the exit status.
    `log_file`: every line of the children and of the supervisor appended there as well
    (`make logs` follows it while the terminal keeps its live table). `settings`: the Redis
    where the children's heartbeats say when they are healthy (None: none is looked for)."""
    if live is None:
        live = sys.stdout.isatty()
    console = Console() if live else None
    with contextlib.ExitStack() as stack:
        sinks: list[OutputSink] = []
        if console is not None:
            sinks.append(print_child_line(console))
        elif log_file is not None:  # the children's lines now pass through us
            sinks.append(echo_child_line)
        stream = None
        if log_file is not None:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            stream = stack.enter_context(log_file.open("a", encoding="utf-8", buffering=1))
            sinks.append(write_child_line(stream))
        probe = HeartbeatProbe.connect(settings) if settings is not None else None
        supervisor = Supervisor(
            commands,
            env=env,
            policy=policy,
            stop_timeout_s=stop_timeout_s,
            output=fan_out(sinks) if sinks else None,
            status_interval_s=None if live else STATUS_INTERVAL_S,
            probe=probe,
        )
        stop = asyncio.Event()
        with stop_signals(stop, supervisor.hurry):
            if console is not None:
                stack.enter_context(live_display(supervisor, console))
            if stream is not None:
                stack.enter_context(logging_to(stream))
            try:
                status = await supervisor.run(stop)
            finally:
                if probe is not None:
                    await probe.close()
    return status


def run_pipeline(
    usecases: Sequence[str],
    *,
    names: Sequence[str],
    port: int,
    stop_timeout_s: float,
    log_file: Path | None = None,
    servers: Sequence[str] = (),
) -> int:
    """`streamer run`: the use cases are already validated by the CLI (`names`: theirs)."""
    env, generated = child_environment(os.environ)
    if generated:
        log.info(
            f"{SECRET_VARIABLE} is not set: generated one for this run (models saved in Redis "
            "during this run cannot be loaded by a later run; set it to keep them usable)"
        )
    started = time.monotonic()
    status = asyncio.run(
        supervise(
            pipeline_commands(usecases, port, names, servers=servers),
            env=env,
            stop_timeout_s=stop_timeout_s,
            log_file=log_file,
            settings=ConnectionSettings(),
        )
    )
    log.info(f"streamer run ends after {format_duration(time.monotonic() - started)}")
    return status
