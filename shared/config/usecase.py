"""Load a use-case folder (`usecases/<name>/`) into validated, typed configuration.

Every problem in every file is collected before failing, each named by file, line, key and
reason. Unknown keys are warnings (typos get a "did you mean"); the original's Java-only Kafka
keys are accepted and ignored.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError

from shared.config.models import (
    AlgsConfig,
    FederatedConfig,
    MonitoringConfig,
    PropsModel,
    StreamingConfig,
)
from shared.config.props import PropEntry, read_props
from shared.config.settings import ConnectionSettings
from shared.errors import ConfigError, ConfigIssue

log = logging.getLogger(__name__)

STREAMING_FILE = "streaming.props"
ALGS_FILE = "algs.props"
MONITORING_FILE = "monitoring.props"
FEDERATED_FILE = "federated.props"

# Keys of the original's files that only make sense to the Java Kafka client, or that we set
# ourselves for delivery guarantees: accepted so original folders load, and ignored.
IGNORED_KAFKA_KEYS: Mapping[str, str] = {
    "key.serializer": "Java serializer class; records travel as bytes",
    "value.serializer": "Java serializer class; records travel as bytes",
    "key.deserializer": "Java deserializer class; records travel as bytes",
    "value.deserializer": "Java deserializer class; records travel as bytes",
    "block.on.buffer.full": "obsolete Kafka producer key",
    "application.id": "Kafka Streams id; the launcher uses group.id",
    "acks": "the producer always uses acks=all with idempotence",
    "retries": "the producer always retries (idempotent)",
    "enable.auto.commit": "offsets are committed after outputs are acknowledged",
    "auto.commit.interval.ms": "offsets are committed after outputs are acknowledged",
    "auto.offset.reset": "the launcher starts from the earliest offset",
    "receive.buffer.bytes": "no aiokafka equivalent",
    "commit.interval.ms": "offsets are committed after outputs are acknowledged",
}

_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class UseCase:
    """A fully validated use case: what every service receives."""

    name: str
    folder: Path
    streaming: StreamingConfig
    algs: AlgsConfig
    monitoring: MonitoringConfig | None
    connections: ConnectionSettings
    warnings: tuple[str, ...] = field(default=())
    federated: FederatedConfig | None = None

    @property
    def is_federated_server(self) -> bool:
        return self.federated is not None and not self.federated.is_client

    @property
    def is_federated_client(self) -> bool:
        return self.federated is not None and self.federated.is_client

    @property
    def bootstrap_servers(self) -> str:
        return self.connections.kafka_bootstrap_or(self.streaming.bootstrap_servers)

    @property
    def topic_partitions(self) -> int:
        """Partitions of the topics the services create: the props' or the deployment's
        (STREAMER_TOPIC_PARTITIONS), whichever is more."""
        return max(self.streaming.topic_partitions, self.connections.topic_partitions or 1)

    @property
    def group_id(self) -> str:
        return self.streaming.group_id or f"streamer-{self.name}"

    def resolved(self) -> dict[str, Any]:
        """The effective configuration, secrets masked (`streamer config validate`, the API)."""
        connections = self.connections.model_dump(mode="json")
        connections["kafka_bootstrap"] = self.bootstrap_servers
        for key, value in self.connections:
            if isinstance(value, SecretStr):
                connections[key] = "**********"
        return {
            "usecase": self.name,
            "folder": str(self.folder),
            "connections": connections,
            STREAMING_FILE: self.streaming.model_dump(mode="json", by_alias=True),
            ALGS_FILE: self.algs.model_dump(mode="json", by_alias=True),
            MONITORING_FILE: (
                self.monitoring.model_dump(mode="json", by_alias=True, exclude_none=True)
                if self.monitoring
                else None
            ),
            FEDERATED_FILE: (
                self.federated.model_dump(mode="json", by_alias=True) if self.federated else None
            ),
            "warnings": list(self.warnings),
        }


def find_usecase_folder(ref: str | Path, connections: ConnectionSettings) -> Path:
    """A use case is named (looked up in the use-cases folder) or given as a path."""
    candidate = Path(ref)
    if candidate.is_dir():
        return candidate.resolve()
    named = connections.usecases_dir / str(ref)
    if named.is_dir():
        return named.resolve()
    raise ConfigError(
        [ConfigIssue(named, None, "usecase", f"no use-case folder {ref!r} (looked in {named})")]
    )


def load_usecase(ref: str | Path, connections: ConnectionSettings | None = None) -> UseCase:
    """Read and validate the props files of one use case; raise ConfigError listing all issues."""
    connections = connections or ConnectionSettings()
    folder = find_usecase_folder(ref, connections)
    variables = {**os.environ, "STREAMER_DATA_DIR": str(connections.data_dir.resolve())}
    issues: list[ConfigIssue] = []
    warnings: list[str] = []

    def load(
        model: type[PropsModel], filename: str, required: bool, defaults: Mapping[str, str] = {}
    ) -> Any:
        path = folder / filename
        if not path.is_file():
            if required:
                issues.append(ConfigIssue(path, None, filename, "file is missing"))
            return None
        return _validate_file(model, path, folder, variables, issues, warnings, defaults)

    name = folder.name if folder.name not in ("", ".") else "default"
    federated = load(FederatedConfig, FEDERATED_FILE, required=False)
    # a federated server reads no topic: its streaming.props only says its held-out stream
    server = federated is not None and not federated.is_client
    topics = {"mainTopic": name, "outputTopic": f"{name}.outputs"} if server else {}
    streaming = load(StreamingConfig, STREAMING_FILE, required=True, defaults=topics)
    algs = load(AlgsConfig, ALGS_FILE, required=True)
    monitoring = load(MonitoringConfig, MONITORING_FILE, required=False)
    if streaming is not None and streaming.datafile and not streaming.datafile.is_file():
        warnings.append(f"{folder / STREAMING_FILE}: datafile: {streaming.datafile} does not exist")
    if federated is not None and federated.is_client and streaming is not None:
        issues.extend(_federated_client_issues(folder, streaming))
    if federated is not None and algs is not None and algs.challengers:
        entry = read_props(folder / ALGS_FILE).get("challengers")
        reason = "not with federated.props: a federation averages one model's parameters"
        issues.append(
            ConfigIssue(folder / ALGS_FILE, entry.line if entry else None, "challengers", reason)
        )
    for message in warnings:
        log.warning(message)
    if issues:
        raise ConfigError(issues)
    return UseCase(
        name, folder, streaming, algs, monitoring, connections, tuple(warnings), federated
    )


def _federated_client_issues(folder: Path, streaming: StreamingConfig) -> list[ConfigIssue]:
    """A federated client publishes a version per round, never on demand: a launcher bounded
    by launcher.max.staleness would wait for versions that never come."""
    if streaming.launcher_max_staleness == -1:
        return []
    path = folder / STREAMING_FILE
    entry = read_props(path).get("launcher.max.staleness")
    reason = (
        "must be -1 in a federated client (federated.props has server.address): its model "
        "changes once per round, not on a launcher's demand"
    )
    return [ConfigIssue(path, entry.line if entry else None, "launcher.max.staleness", reason)]


def _validate_file(
    model: type[PropsModel],
    path: Path,
    folder: Path,
    variables: Mapping[str, str],
    issues: list[ConfigIssue],
    warnings: list[str],
    defaults: Mapping[str, str] = {},
) -> BaseModel | None:
    entries = read_props(path)
    known = model.known_keys()
    values: dict[str, Any] = dict(defaults)
    # `prefix.*` fields gather every `prefix.<name>` key that is not a field of its own
    wildcards = {key.removesuffix("*") for key in known if key.endswith(".*")}
    params: dict[str, dict[str, str]] = {}
    claimed: dict[str, dict[str, dict[str, str]]] = {}  # keys a model claims (claim_key)
    unknown: list[tuple[str, str]] = []  # (key, value) of keys no field takes
    empty: set[str] = set()
    reported: set[str] = set()  # keys already in `issues`: no second "missing" for them
    for key, entry in entries.items():
        if not entry.value:
            empty.add(key)  # `key=` means "not set", as the original's null checks treat it
            continue
        try:
            value = _interpolate(entry.value, variables)
        except KeyError as missing:
            issues.append(_issue(entry, key, f"environment variable {missing.args[0]} is not set"))
            reported.add(key)
            continue
        if key in known:
            values[key] = value
        elif (prefix := next((p for p in wildcards if key.startswith(p)), None)) is not None:
            params.setdefault(prefix + "*", {})[key.removeprefix(prefix)] = value
        elif key in IGNORED_KAFKA_KEYS:
            log.debug("%s:%d: %s ignored (%s)", path, entry.line, key, IGNORED_KAFKA_KEYS[key])
        else:
            unknown.append((key, value))
    # keys whose meaning depends on other keys' values (a challenger's parameters), whatever
    # the order of the file
    claim = getattr(model, "claim_key", None)
    for key, value in unknown:
        owner = claim(key, values) if claim is not None else None
        if owner is not None:
            alias, name, parameter = owner
            claimed.setdefault(alias, {}).setdefault(name, {})[parameter] = value
            continue
        close = difflib.get_close_matches(key, sorted(known), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        warnings.append(f"{path}:{entries[key].line}: {key}: unknown key, ignored{hint}")
    values.update(params)
    values.update(claimed)
    try:
        config = model.model_validate(values)
    except ValidationError as error:
        for detail in error.errors():
            key = str(detail["loc"][0]) if detail["loc"] else path.name
            if key in reported:
                continue
            where = entries.get(key)
            if detail["type"] == "missing":
                reason = "value is empty" if key in empty else "required key is missing"
            else:
                reason = f"{detail['msg']} (got {detail['input']!r})"
            issues.append(ConfigIssue(path, where.line if where else None, key, reason))
        return None
    for key, reason in getattr(config, "problems", list)():
        where = entries.get(key)
        issues.append(ConfigIssue(path, where.line if where else None, key, reason))
    return _resolve_paths(config, folder)


def _issue(entry: PropEntry, key: str, reason: str) -> ConfigIssue:
    return ConfigIssue(entry.file, entry.line, key, reason)


def _interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Expand `${VAR}` and `${VAR:-default}`; an unset variable without default is an error."""

    def expand(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in variables:
            return variables[name]
        if default is not None:
            return default
        raise KeyError(name)

    return _VARIABLE.sub(expand, value)


def _resolve_paths(config: BaseModel, folder: Path) -> BaseModel:
    """Relative paths in props files are relative to the use-case folder."""
    updates = {
        name: (folder / value).resolve()
        for name, value in config
        if isinstance(value, Path) and not value.is_absolute()
    }
    return config.model_copy(update=updates) if updates else config
