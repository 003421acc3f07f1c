"""Train and test commands in any language, through the original STREAMER's Redis protocol.

algs.props:
    algorithm=ExternalAlgorithm
    algorithm.train=python3 train.py      (run in the use-case folder)
    algorithm.test=python3 test.py
    algorithm.timeout=600                 (seconds per command; optional)

Protocol (the original's, kept so its scripts run unchanged), `<id>` = the use case name:
- learn_many: DEL then RPUSH the lists `datatrain<id>` (one `<timestamp>;<v1> <v2> ...` per
  record, values in the record's column order, the timestamp in the original's format from the
  optional `timestamps` argument, else the current time) and `datatrain<id>target` (the
  target), then run `<train> <id> <redis host> <redis port>`. The script keeps its model in
  `<id>model`.
- predict_many: the same with `datatest<id>` / `datatest<id>target` (targets only when the
  caller passes them; the original's scripts may ignore them), DEL `outputs<id>`, run the test
  command, then LRANGE `outputs<id>`: one element per record, in order, split on the optional
  string `separator<id>` (a regex, default a space). `nan` means no prediction; a count that
  does not match the records gives no prediction at all, as the original ("Outputs not stored").

Differences from the original, on purpose: a non-zero exit, a timeout or a missing command
raise StreamerError (the original ignored them); learn_many does not delete `outputs<id>`
(in the original that raced with inference); unlabelled records are not sent for
training (the original sent them without a target, misaligning the two lists); a Redis lock
per use case and phase keeps two processes from interleaving their lists. A leading `python`
or `python3` runs the interpreter STREAMER runs on (it has the `redis` package); write an
absolute path to choose another. The scripts' working directory gets a `logs/` folder, which
the original's scripts write to. Scripts connect to Redis database 0 (they take no database
argument), so STREAMER_REDIS_URL must name database 0.

The model lives in Redis, not in this object: the pickled ExternalAlgorithm (a model version
of the model store) is only a handle, and versions cannot roll `<id>model` back.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from redis.connection import parse_url
from redis.exceptions import LockError

from shared.algorithms.base import Algorithm, Features
from shared.errors import StreamerError
from shared.wire.keys import ExternalScriptKeys, UseCaseKeys

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0
TS_SEPARATOR = ";"  # between the timestamp and the values (separatorTSRedis)
FIELD_SEPARATOR = " "  # between values, targets and output fields (separatorFieldsRedis)
CHUNK = 5000  # list elements per RPUSH
STDERR_LINES = 20
_PYTHONS = {"python", "python3"}


def format_value(value: Any) -> str:
    """A value as the original wrote it: whole numbers without `.0`, text without spaces
    (they would split the field; the original's records removed them when parsing)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return FIELD_SEPARATOR.join(format_value(item) for item in value)
    return "".join(str(value).split())


def format_timestamp(moment: datetime | None) -> str:
    """The original's system format `yyyy-MM-ddHH:mm:ss.SSSZ` (no separator before the time)."""
    moment = moment or datetime.now(UTC)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    millis = moment.microsecond // 1000
    return f"{moment:%Y-%m-%d%H:%M:%S}.{millis:03d}{moment:%z}"


def format_record(x: Features, timestamp: datetime | None = None) -> str:
    values = FIELD_SEPARATOR.join(format_value(value) for value in x.values())
    return f"{format_timestamp(timestamp)}{TS_SEPARATOR}{values}"


def _tail(text: str, lines: int = STDERR_LINES) -> str:
    kept = text.strip().splitlines()[-lines:]
    return "\n".join(kept) if kept else "(no stderr)"


class ExternalAlgorithm(Algorithm):
    """Runs user commands; the Redis client is created lazily and never pickled."""

    name = "ExternalAlgorithm"
    incremental = False

    def __init__(
        self,
        usecase: str,
        train: str,
        test: str,
        folder: Path | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        redis_url: str | None = None,
        redis_password: str | None = None,
    ):
        if not train or not test:
            missing = "algorithm.train" if not train else "algorithm.test"
            raise StreamerError(f"{usecase}: algorithm=ExternalAlgorithm needs {missing}")
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
            raise StreamerError(f"{usecase}: algorithm.timeout={timeout!r}: must be > 0 seconds")
        self.id = usecase
        self.train_command = train
        self.test_command = test
        self.folder = folder.resolve() if folder else None
        self.timeout = float(timeout)
        self.target_is_number: bool | None = None  # learnt from the training targets
        self._redis_url = redis_url
        self._redis_password = redis_password
        self._client: redis.Redis | None = None
        self._client_lock = threading.Lock()
        if redis_url is not None:
            self._address()  # fail at build time on a URL the scripts cannot use

    @property
    def keys(self) -> ExternalScriptKeys:
        """The protocol's key names for this use case (derived, so never pickled)."""
        return ExternalScriptKeys(self.id)

    # -- pickling: a handle without connection or credentials ------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for private in ("_client", "_client_lock", "_redis_url", "_redis_password"):
            state.pop(private, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Unpickled in another service: Redis is taken from that process's environment."""
        self.__dict__.update(state)
        self._redis_url = None
        self._redis_password = None
        self._client = None
        self._client_lock = threading.Lock()

    # -- the Algorithm contract ------------------------------------------------------------

    def learn_one(self, x: Features, y: Any) -> None:
        """One process per call: the trainer uses learn_many (incremental is False)."""
        self.learn_many([x], [y])

    def learn_many(
        self,
        xs: Sequence[Features],
        ys: Sequence[Any],
        timestamps: Sequence[datetime | None] | None = None,
    ) -> None:
        stamps = list(timestamps) if timestamps is not None else [None] * len(xs)
        rows = [(x, y, stamp) for x, y, stamp in zip(xs, ys, stamps, strict=True) if y is not None]
        if not rows:
            return
        self.target_is_number = all(
            isinstance(y, int | float) and not isinstance(y, bool) for _, y, _ in rows
        )
        records = [format_record(x, stamp) for x, _, stamp in rows]
        targets = [format_value(y) for _, y, _ in rows]
        client = self.client()
        with self._phase_lock(client, "train"):
            self._write(client, "datatrain", records, targets, clear_outputs=False)
            self._run("train", self.train_command)

    def predict_one(self, x: Features) -> Any:
        """One process per call: prefer predict_many for batches."""
        return self.predict_many([x])[0]

    def predict_many(
        self,
        xs: Sequence[Features],
        ys: Sequence[Any] | None = None,
        timestamps: Sequence[datetime | None] | None = None,
    ) -> list[Any]:
        """`ys` (optional) fills `datatest<id>target`, as the original sent the records' targets."""
        if not xs:
            return []
        stamps = list(timestamps) if timestamps is not None else [None] * len(xs)
        records = [format_record(x, stamp) for x, stamp in zip(xs, stamps, strict=True)]
        targets = [format_value(y) for y in ys if y is not None] if ys is not None else []
        client = self.client()
        with self._phase_lock(client, "test"):
            self._write(client, "datatest", records, targets, clear_outputs=True)
            self._run("test", self.test_command)
            # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
            outputs: list[bytes] = client.lrange(self.keys.outputs, 0, -1)  # type: ignore[assignment]
            separator: bytes | None = client.get(self.keys.separator)  # type: ignore[assignment]
        if len(outputs) != len(xs):
            log.warning(
                "%s: the test command stored %d outputs for %d records: no predictions",
                self.id,
                len(outputs),
                len(xs),
            )
            return [None] * len(xs)
        pattern = separator.decode() if separator else FIELD_SEPARATOR
        return [self._parse_output(element.decode(), pattern) for element in outputs]

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "train": self.train_command,
            "test": self.test_command,
            "timeout_s": self.timeout,
            "model_key": self.keys.model,
        }

    # -- Redis -----------------------------------------------------------------------------

    def _url(self) -> str:
        if self._redis_url is None:
            from shared.config.settings import ConnectionSettings

            settings = ConnectionSettings()
            self._redis_url = settings.redis_url
            if settings.redis_password is not None:
                self._redis_password = settings.redis_password.get_secret_value()
        return self._redis_url

    def _address(self) -> tuple[str, int]:
        """Host and port given to the commands; only a TCP URL on database 0 will do."""
        url = self._url()
        try:
            options = parse_url(url)  # type: ignore[no-untyped-call]  # redis-py: unannotated
        except ValueError as error:
            raise StreamerError(f"{self.id}: Redis URL {url!r}: {error}") from error
        if "path" in options or "host" not in options:
            raise StreamerError(f"{self.id}: ExternalAlgorithm needs a TCP Redis URL, got {url}")
        if int(options.get("db", 0) or 0) != 0:
            raise StreamerError(
                f"{self.id}: ExternalAlgorithm needs Redis database 0 (the scripts' protocol "
                f"has no database argument); the Redis URL names database {options['db']}"
            )
        return str(options["host"]), int(options.get("port", 6379))

    def client(self) -> redis.Redis:
        """The synchronous client of this thread's work (created on first use)."""
        with self._client_lock:
            if self._client is None:
                self._address()
                self._client = redis.Redis.from_url(
                    self._url(),
                    password=self._redis_password,
                    socket_timeout=30,
                    socket_connect_timeout=10,
                    health_check_interval=30,
                )
            return self._client

    @contextlib.contextmanager
    def _phase_lock(self, client: redis.Redis, phase: str) -> Iterator[None]:
        """One train (or test) per use case at a time, across processes: they share the keys."""
        name = UseCaseKeys(self.id).external_lock(phase)
        lock = client.lock(name, timeout=self.timeout + 60, thread_local=False)
        if not lock.acquire(blocking_timeout=self.timeout + 60):
            raise StreamerError(f"{self.id}: Redis lock {name} still held after the timeout")
        try:
            yield
        finally:
            with contextlib.suppress(LockError):
                lock.release()

    def _write(
        self,
        client: redis.Redis,
        tag: str,
        records: list[str],
        targets: list[str],
        clear_outputs: bool,
    ) -> None:
        data_key, target_key = self.keys.data(tag), self.keys.targets(tag)
        pipe = client.pipeline(transaction=True)
        pipe.delete(data_key, target_key)
        if clear_outputs:
            pipe.delete(self.keys.outputs)
        for start in range(0, len(records), CHUNK):
            pipe.rpush(data_key, *records[start : start + CHUNK])
        for start in range(0, len(targets), CHUNK):
            pipe.rpush(target_key, *targets[start : start + CHUNK])
        pipe.execute()

    # -- commands --------------------------------------------------------------------------

    def argv(self, command: str) -> list[str]:
        """The command's words, then `<id> <redis host> <redis port>` as the original passed."""
        words = shlex.split(command)
        if words and words[0] in _PYTHONS:
            words[0] = sys.executable
        host, port = self._address()
        return [*words, self.id, host, str(port)]

    def _run(self, phase: str, command: str) -> str:
        """Run one command in the use-case folder; its last stdout line is returned."""
        argv = self.argv(command)
        cwd = self.folder or Path.cwd()
        with contextlib.suppress(OSError):
            (cwd / "logs").mkdir(exist_ok=True)  # the original's scripts append to ./logs/...
        try:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                stdin=subprocess.DEVNULL,
                text=True,
                errors="replace",
                start_new_session=True,  # its own process group: a timeout kills children too
            )
        except OSError as error:
            raise StreamerError(
                f"{self.id}: the {phase} command cannot start: {command!r} in {cwd}: {error}"
            ) from error
        try:
            stdout, stderr = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise StreamerError(
                f"{self.id}: the {phase} command did not finish within {self.timeout:g} s and "
                f"was killed: {shlex.join(argv)}"
            ) from None
        if stdout.strip():
            log.debug("%s %s stdout:\n%s", self.id, phase, stdout.rstrip())
        if process.returncode != 0:
            raise StreamerError(
                f"{self.id}: the {phase} command failed with exit code {process.returncode}: "
                f"{shlex.join(argv)}\n{_tail(stderr)}"
            )
        if stderr.strip():
            log.info("%s %s stderr:\n%s", self.id, phase, _tail(stderr))
        lines = stdout.strip().splitlines()
        return lines[-1] if lines else ""

    def _parse_output(self, element: str, pattern: str) -> Any:
        fields = [self._convert(field) for field in _java_split(element, pattern)]
        if not fields:
            return None
        return fields[0] if len(fields) == 1 else tuple(fields)

    def _convert(self, field: str) -> Any:
        if field.strip().lower() == "nan":
            return None
        if self.target_is_number:
            try:
                number = float(field)
            except ValueError:
                return field
            return number if math.isfinite(number) else None
        return field


def _java_split(text: str, pattern: str) -> list[str]:
    """Java's String.split(regex): trailing empty strings removed."""
    try:
        parts = re.split(pattern, text)
    except re.error:
        parts = text.split(pattern)
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def _kill_group(process: subprocess.Popen[str]) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        process.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.communicate(timeout=5)
