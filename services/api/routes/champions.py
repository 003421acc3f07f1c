"""Champion and challengers: the leaderboard (each model's metrics, from the evaluator), and
changes of champion by hand: promote a challenger, roll back to the previous champion. A change
is a request to the trainer (`train:requests`), which publishes it as a new model version, and
an entry of the audit log; it needs the token."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, HTTPException, Query, status
from redis.asyncio import Redis

from services.api.dependencies import InfluxClient, KnownEntry, RedisClient
from services.api.errors import Responses
from services.api.models import (
    Leaderboard,
    ModelStanding,
    PromotionSettings,
    RoleChange,
    RoleChangeAccepted,
    Rollback,
)
from services.api.routes.observations import InfluxReader
from services.api.security import DEFAULT_ACTOR, Actor, Authorized
from shared.config.live import audit
from shared.metrics.evaluation import View
from shared.wire.influx import LeaderboardMeasurement, ModelScore
from shared.wire.store import (
    PROMOTE,
    ROLLBACK,
    ModelMeta,
    latest_version,
    read_meta,
    request_role_change,
)

router = APIRouter(prefix="/usecases", tags=["champions"])
DEFAULT_REASON = "api request"
#: The audit log's key for a change of champion.
AUDIT_KEY = "champion"
UNAUTHORIZED: Responses = {401: {"description": "missing or wrong bearer token"}}
NOT_FOUND: Responses = {404: {"description": "no such use case"}}
CONFLICT: Responses = {409: {"description": "the current roles do not allow it (says why)"}}
NOT_JSON: Responses = {400: {"description": "the body is not JSON"}}


@router.get("/{name}/leaderboard", response_model=Leaderboard, responses=NOT_FOUND)
async def leaderboard(
    entry: KnownEntry,
    redis: RedisClient,
    influx: InfluxClient,
    view: Annotated[View | None, Query(description="only this view")] = None,
) -> Leaderboard:
    """Every metric of every model (champion and challengers) per view, as the evaluator
    scored their own predictions, with the roles of the newest model version."""
    scores = await LeaderboardMeasurement(entry.name).latest(
        InfluxReader(influx), view.value if view else None
    )
    meta = await _newest(redis, entry.name)
    by_model: dict[str, list[ModelScore]] = {}
    for score in scores:
        by_model.setdefault(score.model, []).append(score)
    champion = meta.champion if meta else None
    challengers = list(meta.challengers) if meta else []
    if champion is None:  # no version names the roles yet: the evaluator's
        champion = next((s.model for s in scores if s.role == "champion"), None)
        challengers = sorted({s.model for s in scores if s.model != champion})
    order = [name for name in [champion, *challengers] if name in by_model]
    order += sorted(set(by_model) - set(order))  # models no longer configured, last
    algs = entry.usecase.algs if entry.usecase else None
    rule = (
        PromotionSettings(
            metric=algs.promotion_metric,
            margin=algs.promotion_margin,
            min_records=algs.promotion_min_records,
        )
        if algs is not None and algs.promotion_metric
        else None
    )
    return Leaderboard(
        usecase=entry.name,
        champion=champion,
        challengers=challengers,
        previous_champion=meta.previous_champion if meta else None,
        model_version=meta.version if meta else None,
        promotion=rule,
        models=[_standing(name, by_model[name], champion) for name in order],
    )


@router.post(
    "/{name}/promote",
    response_model=RoleChangeAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Authorized],
    responses={**NOT_JSON, **UNAUTHORIZED, **NOT_FOUND, **CONFLICT},
)
async def promote(
    entry: KnownEntry, redis: RedisClient, who: Actor, change: Annotated[RoleChange, Body()]
) -> RoleChangeAccepted:
    """Make a challenger the champion: the trainer publishes a version of mode `promotion`;
    the former champion stays a challenger and keeps learning (a rollback restores it)."""
    meta = await _newest(redis, entry.name)
    if meta is None or meta.champion is None:
        raise _conflict(f"{entry.name} has no published version with challengers")
    if change.model not in meta.challengers:
        known = ", ".join(meta.challengers) or "none"
        detail = (
            f"{change.model} is the champion already"
            if change.model == meta.champion
            else f"{change.model} is not a challenger of version {meta.version} ({known})"
        )
        raise _conflict(detail)
    return await _request(redis, entry.name, who, PROMOTE, change.model, meta, change.reason)


@router.post(
    "/{name}/rollback",
    response_model=RoleChangeAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Authorized],
    responses={**NOT_JSON, **UNAUTHORIZED, **NOT_FOUND, **CONFLICT},
)
async def rollback(
    entry: KnownEntry,
    redis: RedisClient,
    who: Actor,
    body: Annotated[Rollback | None, Body()] = None,
) -> RoleChangeAccepted:
    """Restore the champion before the last promotion (or rollback): the trainer publishes a
    version of mode `rollback`. The rule does not promote the demoted model again."""
    meta = await _newest(redis, entry.name)
    previous = meta.previous_champion if meta else None
    if meta is None or meta.champion is None or previous is None:
        raise _conflict(f"{entry.name} has no previous champion to restore")
    reason = body.reason if body else None
    return await _request(redis, entry.name, who, ROLLBACK, previous, meta, reason)


async def _request(
    redis: Redis,
    usecase: str,
    who: str,
    action: str,
    champion: str,
    meta: ModelMeta,
    reason: str | None,
) -> RoleChangeAccepted:
    """The request to the trainer, then its audit entry (who, when, from which champion to
    which)."""
    reason = reason or DEFAULT_REASON
    context = {"actor": who} if who != DEFAULT_ACTOR else {}
    model = champion if action == PROMOTE else ""
    request_id = await request_role_change(
        redis, usecase, action, reason, "api", model=model, **context
    )
    assert meta.champion is not None
    await audit(redis, usecase, who, AUDIT_KEY, meta.champion, f"{champion} ({action}: {reason})")
    return RoleChangeAccepted(
        usecase=usecase,
        request_id=request_id,
        action=action,
        champion=champion,
        replaces=meta.champion,
        reason=reason,
        by="api",
    )


async def _newest(redis: Redis, usecase: str) -> ModelMeta | None:
    version = await latest_version(redis, usecase)
    return None if version is None else await read_meta(redis, usecase, version)


def _standing(name: str, scores: list[ModelScore], champion: str | None) -> ModelStanding:
    values: dict[str, dict[str, float | None]] = {}
    pairs: dict[str, int] = {}
    for score in scores:
        values.setdefault(score.view, {})[score.metric] = score.value
        if score.pairs is not None:
            pairs[score.view] = max(pairs.get(score.view, 0), score.pairs)
    return ModelStanding(
        model=name,
        role="champion" if name == champion else "challenger",
        values=values,
        pairs=pairs,
        time_ms=max((score.time_ms for score in scores), default=None),
    )


def _conflict(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_409_CONFLICT, detail=detail)
