"""Errors every service raises; each names its culprit (file, key, service) so users can act."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class StreamerError(Exception):
    """Base class for errors a user can fix; the CLI prints them without a traceback."""

    exit_code = 1


@dataclass(frozen=True)
class ConfigIssue:
    """One problem found in a props file, located precisely enough to fix it."""

    file: Path
    line: int | None
    key: str
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        return f"{where}: {self.key}: {self.reason}"


class ConfigError(StreamerError):
    """A use case's configuration is invalid; carries every issue found, not just the first."""

    exit_code = 2

    def __init__(self, issues: list[ConfigIssue]):
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


class ServiceUnavailableError(StreamerError):
    """A backing service (Kafka, Redis, InfluxDB, Elasticsearch) did not answer."""

    def __init__(self, service: str, address: str, cause: BaseException | str):
        self.service = service
        self.address = address
        super().__init__(f"{service} at {address} is not reachable: {cause}")
