"""Every third-party package the code imports is declared in pyproject.toml (not only
brought by another one, which may drop it), and the lock files pin every declared one."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIRST_PARTY = {"shared", "services", "benchmarks", "scripts", "tests", "__future__"}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _declared() -> set[str]:
    project = PYPROJECT["project"]
    names = {_name(r) for r in project["dependencies"]}
    for requirements in project["optional-dependencies"].values():
        names |= {_name(r) for r in requirements}
    return names


def _imported(root: Path) -> set[str]:
    modules = set()
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m not in FIRST_PARTY}


def test_every_imported_package_is_declared():
    distributions = packages_distributions()
    declared = _declared()
    undeclared = {}
    for root in ("services", "shared", "benchmarks", "tests"):
        for module in _imported(REPO / root):
            names = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
            if not names & declared:
                undeclared[module] = sorted(names) or "not installed"
    assert undeclared == {}


def test_the_lock_files_pin_every_declared_package():
    for lock in ("runtime.lock", "runtime-moa.lock", "dev.lock"):
        text = (REPO / "requirements" / lock).read_text().lower().replace("_", "-")
        pinned = {line.split("==")[0] for line in text.splitlines() if "==" in line}
        wanted = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
        if lock != "runtime.lock":
            wanted |= {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["moa"]}
        if lock == "dev.lock":
            extras = PYPROJECT["project"]["optional-dependencies"]
            wanted |= {_name(r) for r in extras["dev"] + extras["sklearn"]}
        assert wanted - pinned == set(), lock
