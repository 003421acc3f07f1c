"""`streamer status`: the pipeline's health as a table, from the api sidecar's GET /health,
or, when the sidecar does not answer, from the heartbeats in Redis directly.

The table is built from a list of heartbeats in the Redis format (docs/wire-format.md,
`streamer:heartbeat:<service>:<instance>`); the sidecar's /health body is mapped into that
list by `heartbeats_from_health`. Assumed body (services/api/models.py `Health`, being written
at the time): `{"status", "required_services", "usecases", "checks": [{"usecase", "service",
"up", "status", "instances", "last_error", "age_s"}], "problems"}`, one row per service
instance then; failing that, a list of heartbeats, bare or under `heartbeats`, `instances` or
`services` (also as a mapping of service name to heartbeat(s)). The verdict is the sidecar's
HTTP status: 200 when every required service is up, 503 otherwise. Without the sidecar, the
required services are REQUIRED (the sidecar's default too): not the producer, which exits once
it has replayed its files.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from shared.clients.redis import check_redis, connect_redis
from shared.config import ConnectionSettings
from shared.heartbeat import read_heartbeats

DEFAULT_URL = "http://127.0.0.1:8000/health"
REQUIRED = ("launcher", "trainer", "evaluator")
TIMEOUT_S = 3.0
SERVICE_ORDER = ("producer", "launcher", "trainer", "evaluator", "api")

Heartbeat = dict[str, Any]


@dataclass(frozen=True)
class Health:
    """What `status` shows: where it came from, the heartbeats, the verdict, a note why."""

    source: str  # "sidecar" or "redis"
    heartbeats: list[Heartbeat]
    ok: bool
    note: str = ""
    required: tuple[str, ...] = REQUIRED  # shown as `down` rows when absent


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


def heartbeats_from_health(body: Any, now: float | None = None) -> list[Heartbeat]:
    """The sidecar's /health body as heartbeats (module docstring for the assumed shapes)."""
    if isinstance(body, Mapping) and isinstance(body.get("checks"), list):
        return _from_checks(body["checks"], time.time() if now is None else now)
    if isinstance(body, list):
        return [_heartbeat(item) for item in body if isinstance(item, Mapping)]
    if not isinstance(body, Mapping):
        return []
    for key in ("heartbeats", "instances", "services"):
        value = body.get(key)
        if isinstance(value, list):
            return heartbeats_from_health(value)
        if isinstance(value, Mapping):
            return [hb for name, item in value.items() for hb in _per_service(str(name), item)]
    return []


def _from_checks(checks: list[Any], now: float) -> list[Heartbeat]:
    """One heartbeat per (service, instance) from the per-(use case, service) checks."""
    rows: dict[tuple[str, str | None], Heartbeat] = {}
    for check in checks:
        if not isinstance(check, Mapping):
            continue
        service = str(check.get("service", "?"))
        status = "running" if check.get("up") else str(check.get("status") or "down")
        age = check.get("age_s")
        for instance in check.get("instances") or [None]:
            row = rows.setdefault(
                (service, instance),
                {"service": service, "instance": instance, "usecases": [], "status": status},
            )
            if check.get("usecase") is not None:
                row["usecases"].append(check["usecase"])
            if status != "running":  # down for one use case: shown as down
                row["status"] = status
            if isinstance(age, int | float):
                row["updated_at"] = now - age
            row["last_error"] = row.get("last_error") or check.get("last_error")
    return list(rows.values())


def _per_service(name: str, item: Any) -> list[Heartbeat]:
    if isinstance(item, list):
        return [_heartbeat(entry, name) for entry in item if isinstance(entry, Mapping)]
    if not isinstance(item, Mapping):  # e.g. {"launcher": "up"}
        return [{"service": name, "status": _status(item)}]
    instances = item.get("instances") or item.get("heartbeats")
    if isinstance(instances, list) and instances:
        return [_heartbeat(entry, name) for entry in instances if isinstance(entry, Mapping)]
    return [_heartbeat(item, name)]


def _heartbeat(item: Mapping[str, Any], service: str | None = None) -> Heartbeat:
    heartbeat = dict(item)
    heartbeat.setdefault("service", service or "?")
    if "status" not in heartbeat or isinstance(heartbeat["status"], bool):
        heartbeat["status"] = _status(heartbeat.get("up", heartbeat.get("status")))
    return heartbeat


def _status(value: Any) -> str:
    if isinstance(value, bool):
        return "running" if value else "down"
    return str(value) if value else "unknown"


# ---- Redis fallback, verdict ----------------------------------------------------------------


async def heartbeats_from_redis(settings: ConnectionSettings) -> list[Heartbeat]:
    """Raises ServiceUnavailableError when Redis does not answer either."""
    redis = connect_redis(settings, max_connections=1)
    try:
        await check_redis(redis, settings.redis_url)
        return await read_heartbeats(redis)
    finally:
        await redis.aclose()


def is_up(heartbeat: Mapping[str, Any]) -> bool:
    return heartbeat.get("status") in ("running", "up", "ok")


def missing(heartbeats: Iterable[Mapping[str, Any]], required: Sequence[str]) -> list[str]:
    """The required services without a single running instance."""
    up = {heartbeat.get("service") for heartbeat in heartbeats if is_up(heartbeat)}
    return [service for service in required if service not in up]


async def gather_health(
    url: str, settings: ConnectionSettings, required: Sequence[str] = REQUIRED
) -> Health:
    answer = await fetch_health(url)
    if isinstance(answer, Answer) and answer.status_code in (200, 503):
        body = answer.body if isinstance(answer.body, Mapping) else {}
        heartbeats = heartbeats_from_health(answer.body)
        problems = body.get("problems")
        note = "; ".join(map(str, problems)) if isinstance(problems, list) else ""
        if body.get("checks") == []:
            note = note or "the sidecar checks no use case (none in its use-cases folder)"
        elif not heartbeats:
            note = note or "the sidecar's /health body lists no service I recognise"
        # the sidecar's verdict and rows stand as they are: no `down` rows added here
        return Health("sidecar", heartbeats, answer.status_code == 200, note, ())
    why = f"HTTP {answer.status_code}" if isinstance(answer, Answer) else answer
    heartbeats = await heartbeats_from_redis(settings)
    absent = missing(heartbeats, required)
    note = f"the sidecar at {url} does not answer ({why}): heartbeats read from Redis"
    if absent:
        note += f"; down: {', '.join(absent)}"
    return Health("redis", heartbeats, not absent, note, tuple(required))


# ---- the table ------------------------------------------------------------------------------


def health_table(
    heartbeats: Sequence[Mapping[str, Any]],
    required: Sequence[str] = REQUIRED,
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
    rank = {name: index for index, name in enumerate(SERVICE_ORDER)}
    rows = sorted(
        heartbeats, key=lambda hb: (rank.get(str(hb.get("service")), 99), str(hb.get("instance")))
    )
    for heartbeat in rows:
        status = str(heartbeat.get("status", "unknown"))
        table.add_row(
            str(heartbeat.get("service", "?")),
            str(heartbeat.get("instance") or "-"),
            Text(status, style="green" if is_up(heartbeat) else "yellow"),
            ", ".join(map(str, heartbeat.get("usecases") or [])) or "-",
            _age(now, heartbeat.get("started_at")),
            _age(now, heartbeat.get("updated_at"), suffix=" ago"),
            _compact(heartbeat.get("model_versions")),
            _compact(heartbeat.get("counters")),
            str(heartbeat.get("last_error") or "")[:200],
        )
    for service in missing(heartbeats, required):
        if not any(hb.get("service") == service for hb in heartbeats):
            table.add_row(service, "-", Text("down", style="bold red"), *["-"] * 5, "")
    return table


def print_health(health: Health) -> None:
    """The note on stderr, the table on stdout (wide when piped: it goes to logs, not eyes)."""
    if health.note:
        Console(stderr=True).print(f"[yellow]note:[/] {health.note}", highlight=False)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(health_table(health.heartbeats, health.required))


def _age(now: float, since: Any, suffix: str = "") -> str:
    if not isinstance(since, int | float):
        return "-"
    seconds = max(int(now - since), 0)
    if seconds < 120:
        return f"{seconds}s{suffix}"
    if seconds < 7200:
        return f"{seconds // 60}m{suffix}"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m{suffix}"


def _compact(value: Any) -> str:
    """`uc: k=v k=v` per use case, for counters and model versions."""
    if not isinstance(value, Mapping) or not value:
        return "-"
    parts = []
    for key, item in value.items():
        if isinstance(item, Mapping):
            inner = " ".join(f"{k}={v}" for k, v in item.items())
            parts.append(f"{key}: {inner}" if inner else str(key))
        else:
            parts.append(f"{key}: {'-' if item is None else item}")
    return "\n".join(parts)
