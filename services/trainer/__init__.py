"""Trainer: retrains models from InfluxDB periodically or on request, publishes them in Redis.
A federated client use case's trainer is a Flower client instead (services/trainer/federated.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

from shared.config import UseCase
from shared.runtime import serve


async def run(usecases: list[UseCase]) -> None:
    await serve("trainer", usecases, trainer_for)


def trainer_for(usecase: UseCase, stop: asyncio.Event) -> Any:
    """The streaming/classical trainer, or the Flower client of a federated client use case."""
    if usecase.is_federated_client:
        from services.trainer.federated import FederatedClient

        return FederatedClient(usecase, stop)
    from services.trainer.service import Trainer

    return Trainer(usecase, stop)
