"""What a federated server keeps in Redis so that a restart resumes at the last completed round:
the round and the aggregated arrays (shared/wire/keys.py: federated:state), and a history
entry per round phase (federated:rounds) that tests and people read.

The arrays are numpy .npz bytes loaded with allow_pickle=False: no code comes back from Redis.
Flower calls the strategy from its own threads, so this store uses a synchronous client.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import redis

from shared.config import ConnectionSettings
from shared.wire.federated import RoundPhase
from shared.wire.keys import UseCaseKeys
from shared.wire.store import Fields

HISTORY_MAXLEN = 10_000


@dataclass(frozen=True)
class SavedRound:
    round: int
    arrays: list[np.ndarray]


def pack(arrays: Sequence[np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, *arrays)
    return buffer.getvalue()


def unpack(blob: bytes) -> list[np.ndarray]:
    with np.load(io.BytesIO(blob), allow_pickle=False) as archive:
        return [archive[f"arr_{index}"] for index in range(len(archive.files))]


def sync_redis(settings: ConnectionSettings) -> redis.Redis:
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    return redis.Redis.from_url(
        settings.redis_url, password=password, socket_timeout=5, socket_connect_timeout=5
    )


class ServerState:
    """The persisted state of one server use case."""

    def __init__(self, client: redis.Redis, usecase: str):
        self.redis = client
        self.keys = UseCaseKeys(usecase)

    def load(self) -> SavedRound | None:
        # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
        saved: Fields = self.redis.hgetall(self.keys.federated_state)  # type: ignore[assignment]
        if not saved or b"parameters" not in saved:
            return None
        return SavedRound(int(saved[b"round"]), unpack(saved[b"parameters"]))

    def save(self, completed_round: int, arrays: Sequence[np.ndarray], strategy: str) -> None:
        self.redis.hset(
            self.keys.federated_state,
            mapping={
                "round": completed_round,
                "parameters": pack(arrays),
                "strategy": strategy,
                "updated_at": time.time(),
            },
        )

    def record(self, entry: RoundPhase) -> None:
        self.redis.xadd(
            self.keys.federated_rounds,
            entry.encode(),  # type: ignore[arg-type]  # redis-py's stubs want a broader dict
            maxlen=HISTORY_MAXLEN,
            approximate=True,
        )

    def history(self) -> list[RoundPhase]:
        """Every recorded round phase, oldest first."""
        # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
        entries: list[tuple[bytes, Fields]] = self.redis.xrange(self.keys.federated_rounds)  # type: ignore[assignment]
        return [RoundPhase.decode(fields) for _, fields in entries]
