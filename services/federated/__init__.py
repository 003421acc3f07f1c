"""Federated learning across sites on Flower: the server (`streamer federate server USECASE`).

Each client is the trainer of a client use case (services/trainer/federated.py). How rounds,
faults and the published versions work: docs/federated.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # services.federated.example runs with a bare python3 (`make data`)
    from shared.config import UseCase


async def run(usecases: list[UseCase]) -> None:
    from services.federated.server import serve_federated

    (usecase,) = usecases
    await serve_federated(usecase)
