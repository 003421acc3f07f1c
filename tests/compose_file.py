"""Reading compose/docker-compose.yml and compose/Dockerfile the way Docker would, for the tests
that prove the deployment without a Docker engine (unit: the files; integration: each
container's command run on this machine)."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE_DIR = REPO / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
DOCKERFILE = COMPOSE_DIR / "Dockerfile"
#: Our services, by Compose service name, with the `streamer` subcommand each runs.
STREAMER_SERVICES = {
    "producer": "produce",
    "launcher": "launch",
    "trainer": "train",
    "evaluator": "evaluate",
    "api": "api",
}

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariable(KeyError):
    """A `${VAR:?message}` without a value: Compose refuses to start, saying `message`."""


def variables(text: str) -> dict[str, str | None]:
    """Every variable the text interpolates: name -> its `:?` message (required), or None."""
    found: dict[str, str | None] = {}
    for match in _VARIABLE.finditer(text):
        name = match.group("name") or match.group("bare")
        if name:
            required = match.group("arg") if (match.group("op") or "").endswith("?") else None
            found[name] = found.get(name) or required
    return found


def interpolate_text(text: str, env: Mapping[str, str]) -> str:
    """Compose's interpolation: ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err},
    ${VAR?err}, $VAR, and $$ for a literal $."""

    def value(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op"), match.group("arg") or ""
        current = env.get(name)
        empty = current is None or (op is not None and op.startswith(":") and current == "")
        if op in (":-", "-") and empty:
            return arg
        if op in (":?", "?") and empty:
            raise MissingVariable(f"{name}: {arg}")
        return current or ""

    return _VARIABLE.sub(value, text)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    """The parsed Compose document with every string interpolated."""
    if isinstance(node, str):
        return interpolate_text(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def compose(env: Mapping[str, str]) -> dict[str, Any]:
    return interpolate(raw_compose(), env)


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    logical, pending = [], ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    pairs = []
    for instruction in logical:
        keyword, _, arguments = instruction.partition(" ")
        pairs.append((keyword.upper(), arguments.strip()))
    return pairs


def exec_form(arguments: str) -> list[str]:
    """ENTRYPOINT/CMD arguments: the JSON (exec) form, else the shell form split."""
    if arguments.startswith("["):
        return json.loads(arguments)
    return shlex.split(arguments)


def final_stage(pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
    starts = [i for i, (keyword, _) in enumerate(pairs) if keyword == "FROM"]
    return pairs[starts[-1] :]
