"""Launcher: consumes mainTopic(s), stores records, predicts, publishes to outputTopic."""

from __future__ import annotations

from shared.config import UseCase
from shared.runtime import serve


async def run(usecases: list[UseCase]) -> None:
    from services.launcher.service import Launcher

    await serve("launcher", usecases, Launcher)
