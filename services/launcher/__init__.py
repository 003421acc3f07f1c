"""Launcher: consumes mainTopic(s), stores records, predicts, publishes to outputTopic."""

from __future__ import annotations

from shared.config import UseCase
from shared.runtime import run_until_stopped


async def run(usecases: list[UseCase]) -> None:
    from services.launcher.service import Launcher

    await run_until_stopped([lambda stop, u=u: Launcher(u, stop).run() for u in usecases])
