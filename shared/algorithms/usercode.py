"""Algorithms written by users in their use-case folder (`usecases/<name>/algs.py`).

algs.py is not on the import path, so pickle could not find its classes in another process
(the launcher unpickles what the trainer published). The module is therefore registered in
`sys.modules` under a name derived from its path, and a UserAlgorithm pickles the user's
object as an inner payload together with that path: unpickling loads algs.py again first.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from shared.algorithms.base import Algorithm, Features
from shared.errors import StreamerError
from shared.usercode import load_usecase_module, module_name_for

ALGS_FILE = "algs.py"


def load_algs_module(path: Path, module_name: str | None = None) -> ModuleType:
    """Import algs.py once per process (its classes must stay the same objects for pickle)."""
    return load_usecase_module(path, module_name)


def find_user_class(folder: Path | None, class_name: str) -> tuple[Any, Path] | None:
    """The attribute `class_name` of the folder's algs.py, with the file; None if absent."""
    if folder is None:
        return None
    path = folder / ALGS_FILE
    if not path.is_file():
        return None
    found = getattr(load_algs_module(path), class_name, None)
    return (found, path.resolve()) if found is not None else None


class UserAlgorithm(Algorithm):
    """Delegates to the user's Algorithm (or a RiverAlgorithm around a duck-typed object)."""

    def __init__(self, inner: Algorithm, path: Path):
        self.inner = inner
        self.path = path
        self.module_name = module_name_for(path)
        self.name = inner.name

    @property
    def incremental(self) -> bool:  # type: ignore[override]
        return self.inner.incremental

    def learn_one(self, x: Features, y: Any) -> None:
        self.inner.learn_one(x, y)

    def learn_many(self, xs: Sequence[Features], ys: Sequence[Any]) -> None:
        self.inner.learn_many(xs, ys)

    def predict_one(self, x: Features) -> Any:
        return self.inner.predict_one(x)

    def predict_many(self, xs: Sequence[Features], ys: Sequence[Any] | None = None) -> list[Any]:
        return self.inner.predict_many(xs, ys)

    def describe(self) -> dict[str, Any]:
        return {**self.inner.describe(), "source": str(self.path)}

    def __getstate__(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "module_name": self.module_name,
            "name": self.name,
            "payload": pickle.dumps(self.inner, protocol=pickle.HIGHEST_PROTOCOL),
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        path = Path(state["path"])
        if not path.is_file():
            raise StreamerError(f"model of algorithm {state['name']}: {path} does not exist here")
        load_algs_module(path, state["module_name"])
        self.path, self.module_name, self.name = path, state["module_name"], state["name"]
        self.inner = pickle.loads(state["payload"])
