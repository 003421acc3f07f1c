"""Code from a use-case folder (records.py, algs.py, metrics.py, prepostprocessors.py).

Those files are not on the import path. Each is imported once per process and registered in
`sys.modules` under a name derived from its path, so its classes stay the same objects (pickle
finds them again, e.g. a user algorithm unpickled by the launcher) and two use cases with a
file of the same name never collide.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import sys
import threading
from pathlib import Path
from types import ModuleType

from shared.errors import StreamerError

_lock = threading.Lock()


def module_name_for(path: Path) -> str:
    path = path.resolve()
    slug = re.sub(r"\W", "_", path.parent.name) or "usecase"
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:10]
    return f"streamer_usecase_{path.stem}_{slug}_{digest}"


def load_usecase_module(path: Path, module_name: str | None = None) -> ModuleType:
    """Import a use-case file once per process; StreamerError naming the file if it fails."""
    path = path.resolve()
    name = module_name or module_name_for(path)
    with _lock:
        module = sys.modules.get(name)
        if module is not None:
            return module
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise StreamerError(f"{path}: cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:
            del sys.modules[name]
            raise StreamerError(
                f"{path}: import failed: {type(error).__name__}: {error}"
            ) from error
        return module


def searched_place(folder: Path | None, filename: str, name: str) -> str:
    """How an error says where a use-case class was looked for and why it was not found."""
    if folder is None:
        return "no use-case folder"
    path = folder / filename
    if not path.is_file():
        return f"{path} (no such file)"
    return f"{path} (no {name} in it)"
