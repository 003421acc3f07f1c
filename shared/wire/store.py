"""The model store's contracts (versions and their metadata) and retrain requests.

A model version is a signed envelope (shared/modelstore.py) plus `ModelMeta`, stored as a Redis
hash of JSON values and repeated on the `models` stream, which is the notification launchers,
the evaluator and the API follow. A retrain request is an entry of the `train:requests` stream.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from redis.asyncio import Redis

from shared.wire.keys import UseCaseKeys

#: Consumer group of the trainer on `train:requests`.
REQUESTS_GROUP = "trainer"


class ModelMeta(BaseModel):
    """What the trainer says of a version. The algorithm's own description (estimator,
    parameters, library...) is kept as extra fields."""

    model_config = ConfigDict(extra="allow")

    version: int
    created_at: float | None = None
    algorithm: str | None = None
    incremental: bool | None = None
    mode: str | None = Field(
        None,
        description="stream (learnt from the input topics), retrain, classical (a refit on "
        "InfluxDB), offline, or another producer of versions",
    )
    reason: str | None = None
    records_learned: int | None = None
    new_records: int | None = None
    training_seconds: float | None = None
    positions: dict[str, int] = Field(
        default_factory=dict,
        description="`<topic>/<partition>` -> the next input offset the version has not learnt",
    )
    lag_records: int | None = Field(
        None, description="records already in the input topics that the version had not learnt"
    )
    lag_ms: int | None = Field(
        None, description="ms between the newest record learnt's event time and the publication"
    )
    snapshot: bool = Field(False, description="the envelope is an inference snapshot")
    checkpoint: bool = Field(False, description="the full model is stored too (`model:<v>:full`)")
    size_bytes: int | None = Field(None, description="bytes of the envelope launchers load")
    seal_seconds: float | None = None

    def encode(self) -> dict[str, str]:
        """Redis hash / stream fields: every value JSON-encoded."""
        return {name: json.dumps(value) for name, value in self.model_dump().items()}

    @classmethod
    def decode(cls, fields: dict[bytes, bytes] | dict[str, str]) -> ModelMeta:
        """From a Redis hash or stream entry (pydantic.ValidationError when malformed)."""
        return cls.model_validate({_text(k): _json(v) for k, v in fields.items()})


class RetrainRequest(BaseModel):
    """Ask the trainer for a retrain. Extra fields are context kept with the request (how many
    records the evaluator had scored, which actor of the API...)."""

    model_config = ConfigDict(extra="allow")

    reason: str = "request"
    by: str = ""

    def encode(self) -> dict[str, str]:
        return {name: str(value) for name, value in self.model_dump().items()}

    @classmethod
    def decode(cls, fields: dict[bytes, bytes]) -> RetrainRequest:
        return cls.model_validate({_text(k): _text(v) for k, v in fields.items()})


async def request_training(
    redis: Redis, usecase: str, reason: str, by: str, **context: str | int
) -> str:
    """Ask the trainer of `usecase` for a retrain (the evaluator's alerts, the API); returns
    the request's stream id."""
    request = RetrainRequest(reason=reason, by=by, **{k: str(v) for k, v in context.items()})
    entry = await redis.xadd(UseCaseKeys(usecase).train_requests, request.encode())
    return _text(entry)


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _json(raw: Any) -> Any:
    try:
        return json.loads(raw)
    except (TypeError, ValueError):
        return _text(raw)
