"""The pipeline's health, read from the live heartbeats: the one model behind the API's
/health, the dashboard's service table, `streamer status` and the Prometheus gauges.

An instance is up when its heartbeat says `running`. Its key expires TTL_S after the last
write (shared/heartbeat.py), so a crashed or hung instance is simply absent: no reader compares
clocks. A service is up for a use case when one of its running instances names the use case.

An instance that reports an outage (a backing service away, shared/retry.py) is still up: it
runs, retries and resumes on its own once the backing service answers, and restarting it would
not help. Its outages are listed with it, and in Health.outages; they do not change the status.
(A Redis outage cannot be reported this way: the heartbeats live in Redis, and the health then
says that it cannot read them.)
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field, field_serializer
from redis.asyncio import Redis

from shared.heartbeat import read_heartbeats, this_host
from shared.wire.heartbeat import RUNNING, HeartbeatPayload
from shared.wire.keys import heartbeat_pattern

#: The services of a pipeline, upstream first: the order of every table, and the order in
#: which `streamer run` stops them (each consumer still runs while its producer drains).
PIPELINE_SERVICES = ("producer", "launcher", "trainer", "evaluator")
#: Every service that beats: the pipeline's, then the API sidecar (which only observes).
SERVICES = (*PIPELINE_SERVICES, "api")
#: What /health requires for each use case by default: not the producer, which exits once it
#: has replayed its files.
REQUIRED_SERVICES = ("launcher", "trainer", "evaluator")


class InstanceHealth(BaseModel):
    """One live service instance: its heartbeat as read at one moment."""

    service: str
    instance: str = Field(description="`<hostname>-<pid>`")
    usecases: list[str]
    status: str = Field(description="`running` or `stopping`")
    up: bool = Field(description="status `running` (an expired heartbeat is not listed at all)")
    started_at: float = Field(description="epoch s")
    updated_at: float = Field(description="epoch s of its newest heartbeat")
    age_s: float = Field(description="seconds since its newest heartbeat was written")
    counters: dict[str, dict[str, Any]] = Field(
        description="use case -> the service's counters (non-finite numbers as null)"
    )
    model_versions: dict[str, int | None] = Field(
        description="use case -> the model version in use"
    )
    last_error: str | None
    outages: dict[str, str] = Field(
        default_factory=dict,
        description="backing service -> what fails, since when: it is away and the instance "
        "retries (the instance is still up)",
    )

    @classmethod
    def of(cls, beat: HeartbeatPayload, now: float) -> InstanceHealth:
        return cls(
            service=beat.service,
            instance=beat.instance,
            usecases=beat.usecases,
            status=beat.status,
            up=beat.status == RUNNING,
            started_at=beat.started_at,
            updated_at=beat.updated_at,
            age_s=round(max(0.0, now - beat.updated_at), 3),
            counters=beat.counters,
            model_versions=beat.model_versions,
            last_error=beat.last_error,
            outages=beat.outages,
        )

    @field_serializer("counters", when_used="json")
    def _json_counters(self, counters: dict[str, dict[str, Any]]) -> Any:
        # JSON has no NaN: an API answer would fail on one (Prometheus keeps the raw values)
        return _finite(counters)


class ServiceCheck(BaseModel):
    """One service of one use case, as its heartbeats show it."""

    usecase: str
    service: str
    up: bool = Field(description="a live heartbeat with status `running` names this use case")
    status: str | None = Field(description="`running`, `stopping`, or null without heartbeat")
    instances: list[str] = Field(description="`<hostname>-<pid>` of each live heartbeat")
    last_error: str | None
    age_s: float | None = Field(description="seconds since the newest heartbeat was written")
    model_version: int | None = Field(
        description="the newest model version these instances report for the use case"
    )
    outages: dict[str, str] = Field(
        default_factory=dict,
        description="backing service -> what fails, as these instances report it (they retry)",
    )


class Health(BaseModel):
    """The pipelines' health: the body of the API's GET /health, which `streamer status`
    reads."""

    status: Literal["ok", "unavailable"]
    required_services: list[str]
    usecases: list[str]
    checks: list[ServiceCheck] = Field(description="one per use case and required service")
    problems: list[str] = Field(description="why the status is not ok, one line per problem")
    outages: list[str] = Field(
        default_factory=list,
        description="backing services the instances report away, one line per instance and "
        "backing service; they retry and are still up, so the status does not change",
    )
    instances: list[InstanceHealth] = Field(
        description="every live service instance, in pipeline order (SERVICES)"
    )


class UseCaseService(BaseModel):
    """One instance's report on one use case, or a pipeline service without any instance
    (`down`): a row of the dashboard's service table."""

    service: str
    instance: str | None
    status: str
    up: bool
    age_s: float | None
    updated_at: float | None
    started_at: float | None
    counters: dict[str, Any]
    model_version: int | None
    last_error: str | None


def instances_of(heartbeats: Iterable[HeartbeatPayload], now: float) -> list[InstanceHealth]:
    """The heartbeats as instances, in pipeline order, then by instance name."""
    instances = [InstanceHealth.of(beat, now) for beat in heartbeats]
    return sorted(instances, key=lambda found: (service_rank(found.service), found.instance))


def check_health(
    heartbeats: Iterable[HeartbeatPayload],
    usecases: Sequence[str],
    required: Sequence[str],
    now: float,
) -> Health:
    """Every required service checked for every use case; `ok` when each one is up."""
    instances = instances_of(heartbeats, now)
    checks = [
        check_service(instances, usecase, service, now)
        for usecase in usecases
        for service in required
    ]
    problems = [_problem(check) for check in checks if not check.up]
    return Health(
        status="unavailable" if problems else "ok",
        required_services=list(required),
        usecases=list(usecases),
        checks=checks,
        problems=problems,
        outages=outage_lines(instances),
        instances=instances,
    )


def outage_lines(instances: Iterable[InstanceHealth]) -> list[str]:
    """`<service> <instance>: <backing service> away (<what fails, since when>)`."""
    return [
        f"{found.service} {found.instance}: {backing} away ({what})"
        for found in instances
        for backing, what in sorted(found.outages.items())
    ]


def unreadable(usecases: Sequence[str], required: Sequence[str], why: str) -> Health:
    """The health when the heartbeats cannot be read."""
    return Health(
        status="unavailable",
        required_services=list(required),
        usecases=list(usecases),
        checks=[],
        problems=[f"Redis is not reachable, heartbeats unknown: {why}"],
        instances=[],
    )


async def read_health(
    redis: Redis, usecases: Sequence[str], required: Sequence[str], now: float | None = None
) -> Health:
    """check_health on the heartbeats live in Redis now (RedisError when it does not answer)."""
    heartbeats = await read_heartbeats(redis)
    return check_health(heartbeats, usecases, required, time.time() if now is None else now)


def check_service(
    instances: Sequence[InstanceHealth], usecase: str, service: str, now: float
) -> ServiceCheck:
    """`service` of `usecase`: up with one running instance; otherwise the instances that
    name it (stopping ones) say why."""
    matching = [
        found for found in instances if found.service == service and usecase in found.usecases
    ]
    shown = [found for found in matching if found.up] or matching
    newest = max((found.updated_at for found in shown), default=None)
    errors = [found.last_error for found in shown if found.last_error]
    versions = [found.model_versions.get(usecase) for found in shown]
    outages = {backing: what for found in shown for backing, what in found.outages.items()}
    return ServiceCheck(
        usecase=usecase,
        service=service,
        up=any(found.up for found in matching),
        status=shown[0].status if shown else None,
        instances=sorted(found.instance for found in shown),
        last_error=errors[0] if errors else None,
        age_s=None if newest is None else round(max(0.0, now - newest), 3),
        model_version=max((v for v in versions if v is not None), default=None),
        outages=outages,
    )


def services_down(instances: Iterable[InstanceHealth], required: Sequence[str]) -> list[str]:
    """The required services without a single running instance (for any use case)."""
    up = {found.service for found in instances if found.up}
    return [service for service in required if service not in up]


def services_of(instances: Iterable[InstanceHealth], usecase: str) -> list[str]:
    """The services running for `usecase`."""
    return sorted({found.service for found in instances if found.up and usecase in found.usecases})


def model_version_of(instances: Iterable[InstanceHealth], usecase: str) -> int | None:
    """The newest model version a service reports for `usecase`."""
    versions = [found.model_versions.get(usecase) for found in instances]
    return max((version for version in versions if version is not None), default=None)


def usecase_services(instances: Iterable[InstanceHealth], usecase: str) -> list[UseCaseService]:
    """Each instance serving `usecase` (or not naming any use case) with its counters and
    model version for it, and a `down` row for each pipeline service without an instance;
    in pipeline order."""
    rows = [
        UseCaseService(
            service=found.service,
            instance=found.instance,
            status=found.status,
            up=found.up,
            age_s=round(found.age_s, 1),
            updated_at=found.updated_at,
            started_at=found.started_at,
            counters=found.counters.get(usecase) or {},
            model_version=found.model_versions.get(usecase),
            last_error=found.last_error,
        )
        for found in instances
        if not found.usecases or usecase in found.usecases
    ]
    present = {row.service for row in rows}
    rows += [
        UseCaseService(
            service=service,
            instance=None,
            status="down",
            up=False,
            age_s=None,
            updated_at=None,
            started_at=None,
            counters={},
            model_version=None,
            last_error=None,
        )
        for service in PIPELINE_SERVICES
        if service not in present
    ]
    return sorted(rows, key=lambda row: (service_rank(row.service), row.instance or ""))


async def check_this_host(redis: Redis, service: str) -> tuple[bool, str]:
    """A healthcheck (`streamer launch --check`, ...): is a `service` of this host beating?

    Healthy when one of its instances on this host is up; a recorded error (say, a backing
    service away and retried) is shown but keeps it healthy: the process works and reports.
    Returns (healthy, a line saying why)."""
    host = this_host()
    beats = await read_heartbeats(redis, heartbeat_pattern(service, host))
    found = instances_of(beats, time.time())
    running = [instance for instance in found if instance.up]
    if not running:
        states = ", ".join(f"{instance.instance}: {instance.status}" for instance in found)
        return False, f"{service} on {host}: no running heartbeat ({states or 'none'})"
    newest = max(running, key=lambda instance: instance.updated_at)
    line = f"{service} {newest.instance}: running, beat {newest.age_s:.1f} s ago"
    for backing, what in sorted(newest.outages.items()):
        line += f"; {backing} away, retrying ({what})"
    if newest.last_error:
        line += f"; last error: {newest.last_error}"
    return True, line


def _problem(check: ServiceCheck) -> str:
    where = f"{check.service} of {check.usecase}"
    if check.status is None:
        text = f"{where}: no heartbeat (down or not started)"
    else:
        text = f"{where}: {check.status}"
    return f"{text}; last error: {check.last_error}" if check.last_error else text


def service_rank(service: str) -> int:
    """A service's place in tables: pipeline order, the API, then any other."""
    return SERVICES.index(service) if service in SERVICES else len(SERVICES)


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value
