"""The heartbeat every service writes in Redis (key: shared.wire.keys.heartbeat_key)."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

#: Seconds a heartbeat lives without being rewritten; a service whose key expired is down.
TTL_S = 15
#: Seconds between two writes.
INTERVAL_S = 3.0

RUNNING = "running"
STOPPING = "stopping"


class HeartbeatPayload(BaseModel):
    """One service instance's report of itself."""

    model_config = ConfigDict(extra="ignore")

    service: str = Field(description="the service's name (shared.health.SERVICES)")
    instance: str = Field(description="`<hostname>-<pid>`")
    usecases: list[str] = Field(description="the use cases it serves")
    status: str = Field(description=f"`{RUNNING}`, or `{STOPPING}` in its last heartbeat")
    started_at: float = Field(description="epoch s")
    updated_at: float = Field(description="epoch s of this write")
    counters: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="use case -> the service's counters"
    )
    model_versions: dict[str, int | None] = Field(
        default_factory=dict, description="use case -> the model version in use"
    )
    last_error: str | None = Field(None, description="its last error (up to 500 characters)")
    outages: dict[str, str] = Field(
        default_factory=dict,
        description="backing service -> what fails, while it is away (the service retries)",
    )

    def encode(self) -> str:
        # json.dumps, not model_dump_json: a counter of a type JSON lacks becomes its text
        # instead of failing the beat
        return json.dumps(self.model_dump(), default=str)

    @classmethod
    def decode(cls, raw: bytes | str | None) -> HeartbeatPayload | None:
        """The payload, or None when the value is missing or malformed (anyone can write
        Redis: a bad key must not break the readers)."""
        if raw is None:
            return None
        try:
            return cls.model_validate_json(raw)
        except ValidationError:
            return None
