"""Write compose/.env for the Compose deployment: random secrets on the first run, kept after.

    python3 scripts/compose_env.py compose/.env USECASES=kdd-cup-99 STREAMER_DATA_DIR=/abs/data

Secrets missing from the file are generated (never a default password); settings given as
KEY=VALUE arguments replace theirs; every other line is kept as written. With USECASES,
COMPOSE_PROFILES is set too: `federated` when one of them is a federated server (its
federated.props has no server.address), which starts the `federate` service. The file is written
atomically, readable by its owner only. Standard library only: `make up` runs it before any
virtualenv exists. Prints the names (never the values) of what it generated.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path


def _password() -> str:
    return secrets.token_urlsafe(24)


def _kafka_cluster_id() -> str:
    """What `kafka-storage.sh random-uuid` prints: a UUID in unpadded URL-safe base64."""
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")


#: Every secret compose/docker-compose.yml requires, and how to make one.
SECRETS: dict[str, Callable[[], str]] = {
    "ELASTIC_PASSWORD": _password,
    "KIBANA_SYSTEM_PASSWORD": _password,
    "KIBANA_ENCRYPTION_KEY": lambda: secrets.token_hex(32),  # Kibana wants >= 32 characters
    "STREAMER_ES_PASSWORD": _password,
    "REDIS_PASSWORD": _password,
    "INFLUXDB_ADMIN_PASSWORD": _password,
    "INFLUXDB_PASSWORD": _password,
    "STREAMER_MODEL_SECRET": lambda: secrets.token_hex(32),
    "STREAMER_API_TOKEN": _password,
    "KAFKA_CLUSTER_ID": _kafka_cluster_id,
}
_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$")
#: A federated.props line that makes its use case a client (props: `key=v`, `key: v`, `key v`).
_CLIENT = re.compile(r"^\s*server\.address\s*[=:\s]", re.MULTILINE)
_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_./:,@%+=-]*$")


def parse(text: str) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    values = {}
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        if match and not line.lstrip().startswith("#"):
            values[match.group(1)] = match.group(2).strip().strip("'\"")
    return values


def update(text: str, settings: Mapping[str, str]) -> tuple[str, list[str]]:
    """The env file `text` with `settings` applied and missing secrets generated; returns the
    new text and the names of the generated secrets."""
    for key, value in settings.items():
        if not _SAFE_VALUE.match(value):
            raise ValueError(f"{key}: {value!r} has characters an env file would mangle")
    present = parse(text)
    generated = [name for name in SECRETS if not present.get(name)]
    wanted = {**settings, **{name: SECRETS[name]() for name in generated}}
    lines, done = [], set()
    for line in text.splitlines():
        match = _ASSIGNMENT.match(line)
        key = match.group(1) if match and not line.lstrip().startswith("#") else None
        if key in wanted:
            if key not in done:
                lines.append(f"{key}={wanted[key]}")
                done.add(key)
            continue  # a duplicate of a key we set
        lines.append(line)
    if not text.strip():
        lines = ["# Written by `make up` (scripts/compose_env.py): secrets, keep it private."]
    lines += [f"{key}={value}" for key, value in wanted.items() if key not in done]
    return "\n".join(lines) + "\n", generated


def profiles_for(usecases: str, usecases_dir: Path) -> str:
    """The Compose profiles the use cases need: `federated` when one is a federated server."""
    for name in filter(None, (item.strip() for item in usecases.split(","))):
        props = usecases_dir / name / "federated.props"
        if props.is_file() and not _CLIENT.search(props.read_text()):
            return "federated"
    return ""


def write_env_file(path: Path, settings: Mapping[str, str]) -> list[str]:
    """Apply `update` to the file at `path` (created if missing), atomically, mode 0600."""
    text = path.read_text() if path.exists() else ""
    new_text, generated = update(text, settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(new_text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
    return generated


def main(argv: list[str]) -> int:
    if not argv or any("=" not in item for item in argv[1:]):
        print(__doc__, file=sys.stderr)
        return 2
    settings = dict(item.split("=", 1) for item in argv[1:])
    if "USECASES" in settings:
        usecases_dir = Path(__file__).resolve().parents[1] / "usecases"
        settings["COMPOSE_PROFILES"] = profiles_for(settings["USECASES"], usecases_dir)
    try:
        generated = write_env_file(Path(argv[0]), settings)
    except (OSError, ValueError) as error:
        print(f"compose_env: error: {error}", file=sys.stderr)
        return 1
    if generated:
        print(f"compose_env: generated {', '.join(generated)} in {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
