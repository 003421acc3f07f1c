"""Use cases: what exists, their configuration and its run-time overrides (validated, stored in
Redis, audited), and retrain requests. Changing endpoints and the audit log need the token."""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import APIRouter, Body, Query, status
from redis.asyncio import Redis

from services.api.dependencies import Context, KnownEntry, RedisClient, ValidUseCase
from services.api.errors import Responses
from services.api.issues import body_error, issue_model, unprocessable
from services.api.models import (
    AuditEntry,
    AuditLog,
    PropValue,
    RetrainAccepted,
    RetrainRequest,
    UseCaseConfig,
    UseCaseList,
    UseCaseSummary,
)
from services.api.security import DEFAULT_ACTOR, Actor, Authorized
from shared.config.live import MUTABLE_KEYS, apply_overrides, change_config, read_overrides
from shared.config.usecase import UseCase
from shared.errors import ConfigError
from shared.health import instances_of, model_version_of, services_of
from shared.heartbeat import read_heartbeats
from shared.wire.keys import UseCaseKeys
from shared.wire.store import Fields, request_training

router = APIRouter(prefix="/usecases", tags=["usecases"])
DEFAULT_REASON = "api request"
UNAUTHORIZED: Responses = {401: {"description": "missing or wrong bearer token"}}
NOT_FOUND: Responses = {404: {"description": "no such use case"}}
INVALID: Responses = {409: {"description": "the use case's props files are invalid"}}
NOT_JSON: Responses = {400: {"description": "the body is not JSON"}}

Changes = Annotated[
    dict[str, PropValue],
    Body(
        description="props keys -> new values (text as in a props file, or JSON numbers, "
        "booleans, lists); only the keys that may change at run time",
        examples=[{"training.interval": 500, "online.train": True}],
    ),
]


@router.get("", response_model=UseCaseList)
async def list_usecases(context: Context) -> UseCaseList:
    """Every use-case folder, whether it is valid, and which services run for it."""
    assert context.redis is not None
    instances = instances_of(await read_heartbeats(context.redis), time.time())
    summaries = [
        UseCaseSummary(
            name=entry.name,
            valid=entry.valid,
            errors=[issue_model(issue, entry.folder) for issue in entry.issues],
            warnings=list(entry.usecase.warnings) if entry.usecase else [],
            services=services_of(instances, entry.name),
            model_version=model_version_of(instances, entry.name),
        )
        for entry in await context.catalog.entries()
    ]
    return UseCaseList(usecases_dir=str(context.catalog.usecases_dir), usecases=summaries)


@router.get(
    "/{name}/config",
    response_model=UseCaseConfig,
    responses={**NOT_FOUND, **INVALID},
)
async def get_config(usecase: ValidUseCase, redis: RedisClient) -> UseCaseConfig:
    """The resolved configuration with the current run-time overrides applied (secrets masked)."""
    return await config_view(redis, usecase)


@router.patch(
    "/{name}/config",
    response_model=UseCaseConfig,
    dependencies=[Authorized],
    responses={**NOT_JSON, **UNAUTHORIZED, **NOT_FOUND, **INVALID},
)
async def patch_config(
    usecase: ValidUseCase, changes: Changes, redis: RedisClient, context: Context, who: Actor
) -> UseCaseConfig:
    """Change keys at run time: validated like the props files, stored in Redis, audited; the
    running services pick the change up within a few seconds."""
    texts, errors = {}, []
    for key, value in changes.items():
        if key not in MUTABLE_KEYS:
            errors.append(body_error(key, "cannot be changed at run time", "immutable_key", value))
            continue
        try:
            texts[key] = props_text(value)
        except ValueError as error:
            errors.append(body_error(key, str(error), "invalid_value", value))
    if not changes:
        errors.append(body_error("", "no key to change", "empty_change", changes))
    assert context.config_lock is not None
    async with context.config_lock:
        try:
            if errors:  # still check the other values: every problem in one answer
                current = await read_overrides(redis, usecase.name)
                apply_overrides(usecase, {**current, **texts})
            else:
                await change_config(redis, usecase, texts, who)
        except ConfigError as error:
            errors.extend(
                body_error(issue.key, issue.reason, "invalid_value", texts.get(issue.key))
                for issue in error.issues
            )
    if errors:
        raise unprocessable(errors)
    return await config_view(redis, usecase)


@router.get(
    "/{name}/config/audit",
    response_model=AuditLog,
    dependencies=[Authorized],
    responses={**UNAUTHORIZED, **NOT_FOUND},
)
async def get_audit(
    entry: KnownEntry,
    redis: RedisClient,
    limit: Annotated[int, Query(ge=1, le=10000)] = 100,
) -> AuditLog:
    """Who changed which key, when, from what to what (newest first)."""
    # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
    raw: list[tuple[bytes, Fields]] = await redis.xrevrange(  # type: ignore[assignment]
        UseCaseKeys(entry.name).config_audit, count=limit
    )
    entries = []
    for entry_id, fields in raw:
        values = {
            key.decode(errors="replace"): v.decode(errors="replace") for key, v in fields.items()
        }
        try:
            at = float(values.get("at", "nan"))
        except ValueError:
            at = math.nan
        entries.append(
            AuditEntry(
                id=entry_id.decode(),
                who=values.get("who", ""),
                at=at if math.isfinite(at) else 0.0,
                key=values.get("key", ""),
                old=values.get("old", ""),
                new=values.get("new", ""),
            )
        )
    return AuditLog(usecase=entry.name, entries=entries)


@router.post(
    "/{name}/retrain",
    response_model=RetrainAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Authorized],
    responses={**NOT_JSON, **UNAUTHORIZED, **NOT_FOUND},
)
async def retrain(
    entry: KnownEntry,
    redis: RedisClient,
    who: Actor,
    request: Annotated[RetrainRequest | None, Body()] = None,
) -> RetrainAccepted:
    """Ask the use case's trainer for a retrain (stream `train:requests`); it refits on the most
    recent training.maxdata records when it reads the request."""
    reason = (request.reason if request else None) or DEFAULT_REASON
    context = {"actor": who} if who != DEFAULT_ACTOR else {}
    request_id = await request_training(redis, entry.name, reason, "api", **context)
    return RetrainAccepted(usecase=entry.name, request_id=request_id, reason=reason, by="api")


async def config_view(redis: Redis, usecase: UseCase) -> UseCaseConfig:
    """The configuration as the services see it: props files plus the stored overrides."""
    overrides = await read_overrides(redis, usecase.name)
    try:
        current, errors = apply_overrides(usecase, overrides), []
    except ConfigError as error:  # e.g. the props files changed under an old override
        current = usecase
        errors = [issue_model(issue, usecase.folder) for issue in error.issues]
    return UseCaseConfig(
        usecase=usecase.name,
        config=current.resolved(),
        overrides=overrides,
        override_errors=errors,
        mutable_keys=sorted(MUTABLE_KEYS),
    )


def props_text(value: PropValue) -> str:
    """A JSON value as props-file text; the pydantic models then parse it like a file's."""
    if isinstance(value, list):
        return ",".join(props_text(item) for item in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"not a finite number: {value}")
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)
