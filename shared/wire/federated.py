"""The history of a federated server's rounds (`UseCaseKeys.federated_rounds`, a Redis stream):
written by the server's strategy, read by the API (`GET /usecases/{name}/rounds`), the
dashboard and the tests.

One entry per round phase: `fit` (each client's training record count), `evaluate` (each
client's loss on its own records), `server` (the held-out loss, when the server evaluates).
`rounds_table` folds them into one row per round, the shape people read; `read_rounds` reads
the newest of them.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, JsonValue
from redis.asyncio import Redis

from shared.wire.keys import UseCaseKeys
from shared.wire.store import Fields

Phase = Literal["fit", "evaluate", "server"]


class ClientRound(BaseModel):
    """What one client reported in one phase of a round."""

    client: str = Field("?", description="the client's use case (`?`: it did not say)")
    examples: int = Field(0, description="records it trained on (fit) or scored (evaluate)")
    loss: float | None = Field(None, description="evaluate: its loss on its own records")


class RoundPhase(BaseModel):
    """One entry of the `federated:rounds` stream: each field is JSON text."""

    phase: Phase = Field(description="`fit`, `evaluate` or `server`")
    round: int = Field(description="the round's absolute number (it goes on after a restart)")
    at: float = Field(description="when the phase ended, epoch seconds")
    clients: list[ClientRound] = Field(
        default_factory=list, description="fit, evaluate: each client that answered"
    )
    failures: int = Field(0, description="fit, evaluate: clients that failed or timed out")
    loss: float | None = Field(None, description="server: the loss on the held-out records")
    metrics: dict[str, JsonValue] = Field(
        default_factory=dict, description="server: the strategy's other metrics"
    )

    def encode(self) -> dict[str, str]:
        return {name: json.dumps(value) for name, value in self.model_dump().items()}

    @classmethod
    def decode(cls, fields: dict[bytes, bytes]) -> RoundPhase:
        return cls.model_validate(
            {key.decode(): json.loads(value) for key, value in fields.items()}
        )


class ClientScore(BaseModel):
    """One client's figures in one round."""

    examples: int = Field(0, description="records it trained on in the round")
    loss: float | None = Field(None, description="its loss on its own records after the round")


class RoundRow(BaseModel):
    """One round, as the API and the dashboard show it."""

    round: int
    at: float = Field(description="when its last recorded phase ended, epoch seconds")
    clients: dict[str, ClientScore] = Field(
        default_factory=dict, description="client use case -> its figures"
    )
    failures: int = Field(0, description="clients that failed in its fit phase")
    server_loss: float | None = Field(None, description="the held-out loss, if evaluated")


def rounds_table(phases: list[RoundPhase]) -> list[RoundRow]:
    """One row per round, oldest first. A round run twice (the server restarted during it)
    keeps the phases of its last run."""
    rows: dict[int, RoundRow] = {}
    for entry in phases:
        row = rows.setdefault(entry.round, RoundRow(round=entry.round, at=entry.at))
        row.at = max(row.at, entry.at)
        if entry.phase == "server":
            row.server_loss = entry.loss
            continue
        for client in entry.clients:
            score = row.clients.setdefault(client.client, ClientScore())
            if entry.phase == "fit":
                score.examples = client.examples
            else:
                score.loss = client.loss
        if entry.phase == "fit":
            row.failures = entry.failures
    return [rows[number] for number in sorted(rows)]


def client_round(metrics: dict[str, Any], examples: int, loss: float | None = None) -> ClientRound:
    """A client's answer as Flower hands it to the strategy (its metrics name the client)."""
    return ClientRound(client=str(metrics.get("client", "?")), examples=examples, loss=loss)


#: Phases a round records at most (fit, evaluate, server).
PHASES_PER_ROUND = 3


async def read_rounds(redis: Redis, usecase: str, newest: int) -> list[RoundRow]:
    """The `newest` rounds of a server use case, oldest first (none for other use cases)."""
    # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
    entries: list[tuple[bytes, Fields]] = await redis.xrevrange(  # type: ignore[assignment]
        UseCaseKeys(usecase).federated_rounds, count=newest * PHASES_PER_ROUND
    )
    rows = rounds_table([RoundPhase.decode(fields) for _, fields in reversed(entries)])
    # the oldest row may miss phases cut off by the count: drop it when there are more
    return rows[-newest:] if len(rows) > newest else rows
