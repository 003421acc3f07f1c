"""`streamer status`: the pipeline's health as a table, from the api sidecar's GET /health,
or, when the sidecar does not answer, from the heartbeats in Redis directly.

The sidecar answers shared.health.Health (its response model, documented in docs/api.md):
the table lists its `instances`, one row per live service instance, and the verdict is its
HTTP status (200 when every required service is up, 503 otherwise). Without the sidecar the
rows come from the heartbeats themselves (the same InstanceHealth), and the verdict is whether
each of REQUIRED_SERVICES (the sidecar's default too) has a running instance.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared.clients.redis import check_redis, connect_redis
from shared.config import ConnectionSettings
from shared.health import (
    REQUIRED_SERVICES,
    Health,
    InstanceHealth,
    instances_of,
    service_rank,
    services_down,
)
from shared.heartbeat import read_heartbeats

DEFAULT_URL = "http://127.0.0.1:8000/health"
TIMEOUT_S = 3.0


@dataclass(frozen=True)
class Status:
    """What `status` shows: where it came from, the instances, the verdict, a note why."""

    source: str  # "sidecar" or "redis"
    instances: list[InstanceHealth]
    ok: bool
    note: str = ""
    required: tuple[str, ...] = REQUIRED_SERVICES  # shown as `down` rows when absent


# ---- the sidecar ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    status_code: int
    body: Any


async def fetch_health(url: str, timeout_s: float = TIMEOUT_S) -> Answer | str:
    """The sidecar's answer, or why there is none (refused, timed out, not JSON)."""
    try:
        import httpx
    except ImportError:
        return await asyncio.to_thread(_fetch_with_urllib, url, timeout_s)
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(url)
    except httpx.TimeoutException:
        return f"no answer within {timeout_s:g} s"
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"
    return _answer(response.status_code, response.content)


def _fetch_with_urllib(url: str, timeout_s: float) -> Answer | str:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return _answer(response.status, response.read())
    except urllib.error.HTTPError as error:  # 503 still carries the detail
        with error:
            return _answer(error.code, error.read())
    except (urllib.error.URLError, OSError, ValueError) as error:
        return str(getattr(error, "reason", error))


def _answer(status_code: int, content: bytes) -> Answer | str:
    try:
        return Answer(status_code, json.loads(content))
    except ValueError:
        return f"HTTP {status_code} without a JSON body"


def sidecar_status(answer: Answer) -> Status:
    """The sidecar's verdict (its HTTP status) and rows (its `instances`); a required service
    that a check finds without any instance gets a `down` row."""
    ok = answer.status_code == 200
    try:
        health = Health.model_validate(answer.body)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(map(str, issue['loc'])) or 'body'}: {issue['msg']}"
            for issue in error.errors()[:3]
        )
        note = f"the sidecar's /health body is not the documented Health ({problems})"
        return Status("sidecar", [], ok, note, ())
    note = "; ".join([*health.problems, *health.outages])
    if not health.checks:
        note = note or "the sidecar checks no use case (none in its use-cases folder)"
    down = tuple(dict.fromkeys(check.service for check in health.checks if not check.instances))
    return Status("sidecar", health.instances, ok, note, down)


# ---- Redis fallback, verdict ----------------------------------------------------------------


async def instances_from_redis(settings: ConnectionSettings) -> list[InstanceHealth]:
    """Raises ServiceUnavailableError when Redis does not answer either."""
    redis = connect_redis(settings, max_connections=1)
    try:
        await check_redis(redis, settings.redis_url)
        return instances_of(await read_heartbeats(redis), time.time())
    finally:
        await redis.aclose()


async def gather_health(
    url: str, settings: ConnectionSettings, required: Sequence[str] = REQUIRED_SERVICES
) -> Status:
    answer = await fetch_health(url)
    if isinstance(answer, Answer) and answer.status_code in (200, 503):
        return sidecar_status(answer)
    why = f"HTTP {answer.status_code}" if isinstance(answer, Answer) else answer
    instances = await instances_from_redis(settings)
    absent = services_down(instances, required)
    note = f"the sidecar at {url} does not answer ({why}): heartbeats read from Redis"
    if absent:
        note += f"; down: {', '.join(absent)}"
    return Status("redis", instances, not absent, note, tuple(required))


# ---- the table ------------------------------------------------------------------------------


def health_table(
    instances: Sequence[InstanceHealth],
    required: Sequence[str] = REQUIRED_SERVICES,
    now: float | None = None,
) -> Table:
    """One row per service instance, plus a `down` row for each required service absent."""
    now = time.time() if now is None else now
    table = Table(title_justify="left")
    for column in ("service", "instance", "status", "use cases", "uptime", "last beat"):
        table.add_column(column, no_wrap=True)
    table.add_column("models", min_width=8)
    table.add_column("counters", min_width=12)
    table.add_column("last error", min_width=12, overflow="fold")
    rows = sorted(instances, key=lambda found: (service_rank(found.service), found.instance))
    for found in rows:
        table.add_row(
            found.service,
            found.instance,
            Text(found.status, style="green" if found.up else "yellow"),
            ", ".join(found.usecases) or "-",
            _age(now, found.started_at),
            _age(now, found.updated_at, suffix=" ago"),
            _compact(found.model_versions),
            _compact(found.counters),
            (found.last_error or "")[:200],
        )
    present = {found.service for found in instances}
    for service in services_down(instances, required):
        if service not in present:
            table.add_row(service, "-", Text("down", style="bold red"), *["-"] * 5, "")
    return table


def print_health(status: Status) -> None:
    """The note on stderr, the table on stdout (wide when piped: it goes to logs, not eyes)."""
    if status.note:
        Console(stderr=True).print(f"[yellow]note:[/] {status.note}", highlight=False)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(health_table(status.instances, status.required))


def _age(now: float, since: float, suffix: str = "") -> str:
    seconds = max(int(now - since), 0)
    if seconds < 120:
        return f"{seconds}s{suffix}"
    if seconds < 7200:
        return f"{seconds // 60}m{suffix}"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{suffix}"


def _compact(value: Mapping[str, Any]) -> str:
    """`uc: k=v k=v` per use case, for counters and model versions."""
    if not value:
        return "-"
    parts = []
    for key, item in value.items():
        if isinstance(item, Mapping):
            inner = " ".join(f"{k}={v}" for k, v in item.items())
            parts.append(f"{key}: {inner}" if inner else str(key))
        else:
            parts.append(f"{key}: {'-' if item is None else item}")
    return "\n".join(parts)
