"""Algorithms: the Algorithm contract, the registry that builds them, and the wrappers.

Names are imported on first use (PEP 562), so `shared.algorithms.base` (what the model store
and the launcher's batch code need) does not pull in River and SciPy, which take seconds.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.algorithms.base import Algorithm, Features
    from shared.algorithms.external import ExternalAlgorithm
    from shared.algorithms.registry import build, build_algorithm
    from shared.algorithms.river_algorithm import RiverAlgorithm
    from shared.algorithms.sklearn_algorithm import SklearnAlgorithm

_WHERE = {
    "Algorithm": "shared.algorithms.base",
    "Features": "shared.algorithms.base",
    "ExternalAlgorithm": "shared.algorithms.external",
    "RiverAlgorithm": "shared.algorithms.river_algorithm",
    "SklearnAlgorithm": "shared.algorithms.sklearn_algorithm",
    "build": "shared.algorithms.registry",
    "build_algorithm": "shared.algorithms.registry",
}

__all__ = [
    "Algorithm",
    "ExternalAlgorithm",
    "Features",
    "RiverAlgorithm",
    "SklearnAlgorithm",
    "build",
    "build_algorithm",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
