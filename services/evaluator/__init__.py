"""Evaluator: scores predictions, monitors metrics, raises alerts, feeds the dashboards."""

from __future__ import annotations

from shared.config import UseCase
from shared.runtime import serve


async def run(usecases: list[UseCase]) -> None:
    from services.evaluator.service import Evaluator

    await serve("evaluator", usecases, Evaluator)
