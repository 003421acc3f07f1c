"""Helpers of the tests of Compose's one-shot setup scripts (compose/*/setup.sh): an HTTP
stand-in on a loopback port for the service they configure, and the script run with `sh` and
nothing of this process's environment but PATH."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """`app` on a free loopback port while inside; yields its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def run_script(script: Path, **env: str) -> tuple[int, str]:
    """Run `sh script` with `env`; its exit status and its output (stdout and stderr)."""
    process = await asyncio.create_subprocess_exec(
        "sh",
        str(script),
        env={"PATH": os.environ["PATH"], **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(60):
        output, _ = await process.communicate()
    return process.returncode or 0, output.decode()
