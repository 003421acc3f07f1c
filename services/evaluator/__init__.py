"""Evaluator: scores predictions, monitors metrics, raises alerts, feeds the dashboards."""

from __future__ import annotations

from shared.config import UseCase
from shared.runtime import run_until_stopped


async def run(usecases: list[UseCase]) -> None:
    from services.evaluator.service import Evaluator

    await run_until_stopped([lambda stop, u=u: Evaluator(u, stop).run() for u in usecases])
