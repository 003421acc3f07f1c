"""The model store's contracts (versions and their metadata) and retrain requests.

A model version is a signed envelope (shared/modelstore.py) plus `ModelMeta`, stored as a Redis
hash of JSON values and repeated on the `models` stream, which is the notification launchers,
the evaluator and the API follow. A retrain request is an entry of the `train:requests` stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from redis.asyncio import Redis

from shared.wire.keys import UseCaseKeys

log = logging.getLogger(__name__)

#: A Redis hash or stream entry as the client returns it (bytes, decode_responses off).
Fields = dict[bytes, bytes]

#: Consumer group of the trainer on `train:requests`.
REQUESTS_GROUP = "trainer"


class ModelMeta(BaseModel):
    """What the trainer says of a version. The algorithm's own description (estimator,
    parameters, library...) is kept as extra fields."""

    model_config = ConfigDict(extra="allow")

    version: int = Field(description="the version number (`model:counter`)")
    created_at: float | None = Field(None, description="when it was published, epoch s")
    algorithm: str | None = Field(None, description="the algorithm's name")
    incremental: bool | None = Field(None, description="the algorithm learns record by record")
    mode: str | None = Field(
        None,
        description="stream (learnt from the input topics), retrain, classical (a refit on "
        "InfluxDB), promotion or rollback (a change of champion), offline, or another "
        "producer of versions",
    )
    reason: str | None = Field(
        None, description="why it was published (stream, stop, interval, a retrain's reason...)"
    )
    records_learned: int | None = Field(None, description="records the model has learnt in all")
    new_records: int | None = Field(None, description="records learnt since the version before")
    training_seconds: float | None = Field(None, description="seconds spent training it")
    positions: dict[str, int] = Field(
        default_factory=dict,
        description="`<topic>/<partition>` -> the next input offset the version has not learnt",
    )
    label_positions: dict[str, int] = Field(
        default_factory=dict,
        description="labelTopic (delayed labels): `<topic>/<partition>` -> the next label offset "
        "the version has not read; `positions` then say how far it read the records, some of "
        "which wait for their label",
    )
    resume_positions: dict[str, int] = Field(
        default_factory=dict,
        description="labelTopic, a checkpoint: where a restarted trainer reads the input topics "
        "again (the oldest record still waiting for its label)",
    )
    early_labels: dict[str, list[str]] = Field(
        default_factory=dict,
        description="labelTopic, a checkpoint: labels read before their record (record id -> "
        "targets), which a restarted trainer holds again until their records come",
    )
    lag_records: int | None = Field(
        None, description="records already in the input topics that the version had not learnt"
    )
    lag_ms: int | None = Field(
        None, description="ms between the newest record learnt's event time and the publication"
    )
    champion: str | None = Field(
        None,
        description="with challengers: the name of the model whose predictions are the outputs",
    )
    challengers: list[str] = Field(
        default_factory=list, description="with challengers: the other models' names"
    )
    previous_champion: str | None = Field(
        None,
        description="the champion before the last promotion or rollback: what a rollback "
        "restores (it kept learning as a challenger)",
    )
    snapshot: bool = Field(False, description="the envelope is an inference snapshot")
    checkpoint: bool = Field(
        False,
        description="the version is also the checkpoint: its full model is in "
        "`model:checkpoint:full`, its metadata in `model:checkpoint`",
    )
    size_bytes: int | None = Field(None, description="bytes of the envelope launchers load")
    seal_seconds: float | None = Field(None, description="seconds to pickle, compress and sign")

    def encode(self) -> dict[str, str]:
        """Redis hash / stream fields: every value JSON-encoded."""
        return {name: json.dumps(value) for name, value in self.model_dump().items()}

    @classmethod
    def decode(cls, fields: dict[bytes, bytes] | dict[str, str]) -> ModelMeta:
        """From a Redis hash or stream entry (pydantic.ValidationError when malformed)."""
        return cls.model_validate({_text(k): _json(v) for k, v in fields.items()})


@dataclass(frozen=True)
class Published:
    """An entry of the `models` stream: when the version was published, and its metadata."""

    at_ms: int
    meta: ModelMeta


async def latest_version(redis: Redis, usecase: str) -> int | None:
    """The newest published version number (`model:latest`), None before the first."""
    value = await redis.get(UseCaseKeys(usecase).model_latest)
    return None if value is None else int(value)


async def read_meta(redis: Redis, usecase: str, version: int) -> ModelMeta | None:
    """A version's metadata; None when it is gone (older than the kept versions) or
    malformed."""
    raw: Fields = await redis.hgetall(UseCaseKeys(usecase).model_meta(version))  # type: ignore[assignment]
    return _meta_or_none(usecase, raw) if raw else None


async def read_published(
    redis: Redis,
    usecase: str,
    *,
    newest: int | None = None,
    since_ms: int | None = None,
    skip_modes: Collection[str] = (),
) -> list[Published]:
    """Entries of the `models` stream, oldest first: the `newest` N (of those since
    `since_ms`, if given), without those whose mode is in `skip_modes` (not even validated:
    the trainer's `stream` versions come every second, the stream holds about 1,000). A
    malformed entry is skipped with a warning."""
    skipped = {json.dumps(mode).encode() for mode in skip_modes}
    key = UseCaseKeys(usecase).models
    start = "-" if since_ms is None else since_ms
    entries: list[tuple[bytes, Fields]]
    if newest is None:
        entries = await redis.xrange(key, min=start)  # type: ignore[assignment]
    else:
        newest_first = await redis.xrevrange(key, min=start, count=newest)
        entries = list(reversed(newest_first))  # type: ignore[arg-type]
    found = []
    for entry_id, fields in entries:
        if skipped and fields.get(b"mode") in skipped:
            continue
        meta = _meta_or_none(usecase, fields)
        if meta is not None:
            found.append(Published(int(_text(entry_id).split("-", 1)[0]), meta))
    return found


def _meta_or_none(usecase: str, fields: Fields) -> ModelMeta | None:
    try:
        return ModelMeta.decode(fields)
    except ValidationError as error:
        log.warning(
            "malformed model metadata skipped",
            extra={"usecase": usecase, "error": str(error.errors()[:1])},
        )
        return None


#: RetrainRequest actions.
RETRAIN, PROMOTE, ROLLBACK = "retrain", "promote", "rollback"


class RetrainRequest(BaseModel):
    """Ask the trainer for a retrain, or a change of champion (promote a challenger, roll back
    to the previous champion). Extra fields are context kept with the request (how many
    records the evaluator had scored, which actor of the API...)."""

    model_config = ConfigDict(extra="allow")

    reason: str = Field("request", description="why (an alert's metrics, the API's body...)")
    by: str = Field("", description="who asks: evaluator, api")
    action: str = Field(
        RETRAIN,
        description=f"`{RETRAIN}` (refit every model), `{PROMOTE}` (make `model` the "
        f"champion) or `{ROLLBACK}` (restore the previous champion)",
    )
    model: str = Field("", description=f"`{PROMOTE}`: the challenger to promote")

    since: dict[str, int] | None = Field(
        None,
        description="where the change the alert reports began: `<topic>/<partition>` -> the "
        "first input offset of the change (JSON text; the trainer's `retrain.strategy` says "
        "what to learn from it); absent from the API's requests",
    )
    change_evaluation: int | None = Field(
        None, description="the evaluation where the detector located the change"
    )
    evaluation: int | None = Field(
        None, description="the evaluator's: the evaluation that raised the alert or the promotion"
    )
    records_scored: int | None = Field(
        None, description="the evaluator's alerts: how many records it had scored by then"
    )

    @field_validator("since", mode="before")
    @classmethod
    def _since_from_json(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, str | bytes) else value

    def encode(self) -> dict[str, str]:
        """Stream fields (a dict as JSON text); a plain retrain leaves `action` and `model` out
        (as before they existed: readers default them)."""
        fields = self.model_dump(exclude_none=True)
        if self.action == RETRAIN and not self.model:
            del fields["action"], fields["model"]
        return {
            name: json.dumps(value) if isinstance(value, dict) else str(value)
            for name, value in fields.items()
        }

    @classmethod
    def decode(cls, fields: dict[bytes, bytes]) -> RetrainRequest:
        return cls.model_validate({_text(k): _text(v) for k, v in fields.items()})


async def request_training(
    redis: Redis, usecase: str, reason: str, by: str, **context: str | int
) -> str:
    """Ask the trainer of `usecase` for a retrain (the evaluator's alerts, the API); returns
    the request's stream id."""
    context_text = {k: str(v) for k, v in context.items()}
    request = RetrainRequest.model_validate({"reason": reason, "by": by, **context_text})
    # redis-py takes fields as an invariant dict of its own unions: a dict[str, str] is fine
    entry = await redis.xadd(UseCaseKeys(usecase).train_requests, request.encode())  # type: ignore[arg-type]
    return _text(entry)


async def request_role_change(
    redis: Redis, usecase: str, action: str, reason: str, by: str, model: str = "", **context: str
) -> str:
    """Ask the trainer of `usecase` to promote challenger `model` (action PROMOTE) or to
    restore the previous champion (ROLLBACK); returns the request's stream id."""
    if action not in (PROMOTE, ROLLBACK):
        raise ValueError(f"not a change of champion: {action!r}")
    request = RetrainRequest.model_validate(
        {"reason": reason, "by": by, "action": action, "model": model, **context}
    )
    # redis-py takes fields as an invariant dict of its own unions: a dict[str, str] is fine
    entry = await redis.xadd(UseCaseKeys(usecase).train_requests, request.encode())  # type: ignore[arg-type]
    return _text(entry)


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _json(raw: Any) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return _text(raw)
