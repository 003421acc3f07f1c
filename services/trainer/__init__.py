"""Trainer: retrains models from InfluxDB periodically or on request, publishes them in Redis."""

from __future__ import annotations

from shared.config import UseCase
from shared.runtime import run_until_stopped


async def run(usecases: list[UseCase]) -> None:
    from services.trainer.service import Trainer

    await run_until_stopped([lambda stop, u=u: Trainer(u, stop).run() for u in usecases])
