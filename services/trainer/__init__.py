"""Trainer: retrains models from InfluxDB periodically or on request, publishes them in Redis.
A federated client use case's trainer is a Flower client instead (services/trainer/federated.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence
from typing import Any

from shared.config import UseCase
from shared.runtime import serve

log = logging.getLogger(__name__)

#: The CPU priority (niceness) of a trainer off the prediction path: the lowest, so that it
#: learns with what the launcher leaves idle. Measured on the whole KDD 10% file with
#: `moa.HoeffdingTree` and `launcher.learn=true` (docs/benchmarks.md): the launcher, which
#: bounds the pipeline's pace, had 75-85 % of a core while the trainer took 50-65 %.
OFF_PATH_NICENESS = 19


async def run(usecases: list[UseCase]) -> None:
    if off_prediction_path(usecases):
        yield_cpu()
    await serve("trainer", usecases, trainer_for)


def off_prediction_path(usecases: Sequence[UseCase]) -> bool:
    """Whether no launcher waits for this trainer: every use case it serves learns in its
    launcher (`launcher.learn=true`), so its versions only seed a launcher's start and bring
    retrains; a trainer that also serves a predicting launcher's versions is on their path."""
    return bool(usecases) and all(usecase.streaming.launcher_learn for usecase in usecases)


def yield_cpu() -> None:
    """Run this process at OFF_PATH_NICENESS (only ever lowers the priority: no privilege).
    Linux keeps a niceness per thread and new threads inherit their creator's: called before
    the trainer starts any (its worker threads, MOA's JVM), it covers them all."""
    current = os.getpriority(os.PRIO_PROCESS, 0)
    os.setpriority(os.PRIO_PROCESS, 0, max(current, OFF_PATH_NICENESS))
    log.info(
        "every use case learns in its launcher: the trainer runs at the lowest CPU priority "
        "(niceness %d) and learns with the CPU the pipeline leaves idle",
        os.getpriority(os.PRIO_PROCESS, 0),
    )


def trainer_for(usecase: UseCase, stop: asyncio.Event) -> Any:
    """The streaming/classical trainer, or the Flower client of a federated client use case."""
    if usecase.is_federated_client:
        from services.trainer.federated import FederatedClient

        return FederatedClient(usecase, stop)
    from services.trainer.service import Trainer

    return Trainer(usecase, stop)
