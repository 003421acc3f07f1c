"""Logging for every service: one JSON object per line on stdout (for Compose and log shippers),
or readable lines when a person watches a terminal."""

from __future__ import annotations

import json
import logging
import sys
import time
from datetime import UTC, datetime

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """Timestamp, level, logger, message, plus any `extra=` fields given to the log call."""

    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update(
            {key: value for key, value in vars(record).items() if key not in _STANDARD_ATTRS}
        )
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class PlainFormatter(logging.Formatter):
    """`LEVEL logger: message key=value ...` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{key}={value}" for key, value in vars(record).items() if key not in _STANDARD_ATTRS
        )
        text = f"{record.levelname} {record.name}: {record.getMessage()}"
        text = f"{text} {extras}" if extras else text
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class ClientRepeats(logging.Filter):
    """Each message of the Kafka client at most once a minute.

    While a broker is away, aiokafka's background tasks (metadata, fetcher, coordinator)
    log every failed reconnect, several times a second; the outage itself is said once when
    it starts and once when it ends (shared/retry.py)."""

    def __init__(self, every_s: float = 60.0, prefixes: tuple[str, ...] = ("aiokafka",)):
        super().__init__()
        self.every_s = every_s
        self.prefixes = prefixes
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(self.prefixes):
            return True
        key = (record.name, str(record.msg))  # the template: its arguments vary
        now = time.monotonic()
        if now - self._last.get(key, -self.every_s) < self.every_s:
            return False
        self._last[key] = now
        return True


def configure_logging(level: str = "INFO", json_lines: bool | None = None) -> None:
    """Set up the root logger once per process; JSON unless stderr is a terminal."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stdout if json_lines else sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else PlainFormatter())
    handler.addFilter(ClientRepeats())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka logs every reconnect attempt, elastic_transport every request, at INFO: keep
    # their warnings only.
    for noisy in ("aiokafka", "elastic_transport"):
        logging.getLogger(noisy).setLevel(max(root.level, logging.WARNING))
