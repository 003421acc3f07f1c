"""Health from heartbeats (shared/heartbeat.py): a required service is up for a use case when a
live heartbeat of that service names the use case with status `running`. Expired heartbeats
are gone from Redis, so "no heartbeat" means down or never started."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis

from services.api.models import Health, ServiceCheck
from shared.heartbeat import PREFIX

Heartbeat = dict[str, Any]


async def load_heartbeats(redis: Redis) -> list[Heartbeat]:
    """The live heartbeats with the fields we rely on; like shared.heartbeat.read_heartbeats,
    but a malformed key (anyone can write Redis) is skipped instead of failing the request."""
    keys = [key async for key in redis.scan_iter(match=f"{PREFIX}*", count=500)]
    beats = []
    for value in await redis.mget(keys) if keys else []:
        try:
            beat = json.loads(value) if value is not None else None
        except ValueError:
            continue
        if (
            isinstance(beat, dict)
            and isinstance(beat.get("service"), str)
            and isinstance(beat.get("usecases"), list)
        ):
            beats.append(beat)
    return beats


def check_health(
    heartbeats: Sequence[Heartbeat], usecases: Sequence[str], required: Sequence[str], now: float
) -> Health:
    checks = [
        _check(heartbeats, usecase, service, now) for usecase in usecases for service in required
    ]
    problems = [_problem(check) for check in checks if not check.up]
    return Health(
        status="unavailable" if problems else "ok",
        required_services=list(required),
        usecases=list(usecases),
        checks=checks,
        problems=problems,
    )


def _check(heartbeats: Sequence[Heartbeat], usecase: str, service: str, now: float) -> ServiceCheck:
    matching = [
        beat for beat in heartbeats if beat["service"] == service and usecase in beat["usecases"]
    ]
    running = [beat for beat in matching if beat.get("status") == "running"]
    shown = running or matching
    newest = max((_number(beat.get("updated_at")) for beat in shown), default=None)
    errors = [beat["last_error"] for beat in shown if beat.get("last_error")]
    return ServiceCheck(
        usecase=usecase,
        service=service,
        up=bool(running),
        status=(shown[0].get("status") if shown else None),
        instances=sorted(str(beat.get("instance", "?")) for beat in shown),
        last_error=str(errors[0]) if errors else None,
        age_s=None if newest is None else round(max(0.0, now - newest), 3),
    )


def _problem(check: ServiceCheck) -> str:
    where = f"{check.service} of {check.usecase}"
    if check.status is None:
        text = f"{where}: no heartbeat (down or not started)"
    else:
        text = f"{where}: {check.status}"
    return f"{text}; last error: {check.last_error}" if check.last_error else text


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) else 0.0


def services_of(heartbeats: Sequence[Heartbeat], usecase: str) -> list[str]:
    """The services running for `usecase`."""
    return sorted(
        {
            beat["service"]
            for beat in heartbeats
            if usecase in beat["usecases"] and beat.get("status") == "running"
        }
    )


def model_version_of(heartbeats: Sequence[Heartbeat], usecase: str) -> int | None:
    versions = [
        version
        for beat in heartbeats
        if isinstance(beat.get("model_versions"), dict)
        for version in [beat["model_versions"].get(usecase)]
        if isinstance(version, int) and not isinstance(version, bool)
    ]
    return max(versions, default=None)
