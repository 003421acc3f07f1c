"""Trainer: retrains models from InfluxDB periodically or on request, publishes them in Redis."""

from __future__ import annotations

from shared.config import UseCase
from shared.runtime import serve


async def run(usecases: list[UseCase]) -> None:
    from services.trainer.service import Trainer

    await serve("trainer", usecases, Trainer)
