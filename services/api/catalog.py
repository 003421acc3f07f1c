"""The use cases the API knows: the folders of the use-cases directory that hold props files.

Loading reads and validates files, so it runs in a worker thread, and a folder is loaded again
only when one of its files changed (size or mtime): requests stay cheap and the props
warnings are logged once, not on every request.
"""

from __future__ import annotations

import asyncio
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from shared.config.settings import ConnectionSettings
from shared.config.usecase import UseCase, load_usecase
from shared.errors import ConfigError, ConfigIssue

# A use-case name is a folder name, never a path: no separators, no leading dot.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME = re.compile(NAME_PATTERN)

Signature = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Entry:
    """One use-case folder: its configuration, or every issue that keeps it from loading."""

    name: str
    folder: Path
    usecase: UseCase | None
    issues: tuple[ConfigIssue, ...]

    @property
    def valid(self) -> bool:
        return self.usecase is not None


class Catalog:
    def __init__(self, usecases_dir: Path, settings: ConnectionSettings):
        self.usecases_dir = usecases_dir
        self.settings = settings
        self._cache: dict[str, tuple[Signature, Entry]] = {}
        self._lock = threading.Lock()

    async def entries(self) -> list[Entry]:
        return await asyncio.to_thread(self._entries)

    async def get(self, name: str) -> Entry | None:
        """The use case `name`, or None when there is no such folder."""
        return await asyncio.to_thread(self._get, name)

    def _entries(self) -> list[Entry]:
        if not self.usecases_dir.is_dir():
            return []
        names = sorted(path.name for path in self.usecases_dir.iterdir() if _is_usecase(path))
        return [entry for entry in map(self._get, names) if entry is not None]

    def _get(self, name: str) -> Entry | None:
        if not _NAME.match(name):
            return None
        folder = self.usecases_dir / name
        if not _is_usecase(folder):
            return None
        signature = _signature(folder)
        with self._lock:
            cached = self._cache.get(name)
            if cached is not None and cached[0] == signature:
                return cached[1]
            entry = _load(name, folder, self.settings)
            self._cache[name] = (signature, entry)
            return entry


def _is_usecase(path: Path) -> bool:
    return (path.is_dir() and not path.name.startswith(".") and any(path.glob("*.props"))) and bool(
        _NAME.match(path.name)
    )


def _signature(folder: Path) -> Signature:
    stats = []
    for path in sorted(folder.glob("*.props")):
        try:
            stat = path.stat()
        except OSError:
            continue
        stats.append((path.name, stat.st_mtime_ns, stat.st_size))
    return tuple(stats)


def _load(name: str, folder: Path, settings: ConnectionSettings) -> Entry:
    try:
        return Entry(name, folder, load_usecase(folder, settings), ())
    except ConfigError as error:
        return Entry(name, folder, None, tuple(error.issues))
