"""Federated learning across sites on Flower: the server (`streamer federate server USECASE`).

Each client is the trainer of a client use case (services/trainer/federated.py). How rounds,
faults and the published versions work: docs/federated.md.
"""

from __future__ import annotations

from shared.config import UseCase


async def run(usecases: list[UseCase]) -> None:
    from services.federated.server import serve_federated

    (usecase,) = usecases
    await serve_federated(usecase)
