"""Run-time configuration: the few props keys that may change while services run.

The API validates a change with the same pydantic models as the props files, stores it in the
Redis hash `streamer:<usecase>:config:overrides` and appends it to the audit stream; every
service re-reads the hash every few seconds (`LiveConfig.refresh`) and continues with the new
values, without a restart. Key names: shared/wire/keys.py (docs/wire-format.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, ValidationError
from redis.asyncio import Redis

from shared.config.models import AlgsConfig, MonitoringConfig, StreamingConfig
from shared.config.usecase import UseCase
from shared.errors import ConfigError, ConfigIssue
from shared.wire.keys import UseCaseKeys
from shared.wire.store import Fields

# key -> the props file it belongs to
MUTABLE_KEYS: dict[str, str] = {
    "training.interval": "algs",
    "training.maxdata": "algs",
    "retrain.strategy": "algs",
    "retrain.min-records": "algs",
    "evaluation.metrics": "algs",
    "evaluation.window": "algs",
    "online.train": "streaming",
    "online.inference": "streaming",
    "producerTimeInterval": "streaming",
    "recordsPerBlock": "streaming",
    "maxBlocks": "streaming",
    "threshold.robustness": "monitoring",
    "threshold.threshold": "monitoring",
    "threshold.threshold.alert-if-greater": "monitoring",
    "threshold.threshold.abs": "monitoring",
    "cusum.drift": "monitoring",
    "cusum.threshold": "monitoring",
    "cusum.factor": "monitoring",
    "cusum.robustness": "monitoring",
    "cusumonline.drift": "monitoring",
    "cusumonline.threshold": "monitoring",
    "cusumonline.factor": "monitoring",
    "cusumonline.robustness": "monitoring",
    "alert.cooldown": "monitoring",
}
REFRESH_S = 2.0
AUDIT_MAXLEN = 10000
_MODELS: dict[str, type[BaseModel]] = {
    "streaming": StreamingConfig,
    "algs": AlgsConfig,
    "monitoring": MonitoringConfig,
}


def apply_overrides(base: UseCase, overrides: dict[str, str]) -> UseCase:
    """`base` with the overrides applied, validated like the props files (ConfigError naming
    the key otherwise). Only MUTABLE_KEYS may change."""
    issues: list[ConfigIssue] = []
    grouped: dict[str, dict[str, str]] = {"streaming": {}, "algs": {}, "monitoring": {}}
    for key, value in overrides.items():
        section = MUTABLE_KEYS.get(key)
        if section is None:
            issues.append(_issue(base, key, "cannot be changed at run time"))
        else:
            grouped[section][key] = value
    sections: dict[str, Any] = {}
    for section, changes in grouped.items():
        current = getattr(base, section)
        if not changes:
            sections[section] = current
            continue
        if current is None:  # no monitoring.props: start from the defaults
            current = MonitoringConfig()
        values = {**current.model_dump(by_alias=True, exclude_none=True), **changes}
        try:
            updated = _MODELS[section].model_validate(values)
        except ValidationError as error:
            for detail in error.errors():
                key = str(detail["loc"][0]) if detail["loc"] else section
                issues.append(_issue(base, key, f"{detail['msg']} (got {detail['input']!r})"))
            continue
        for key, reason in getattr(updated, "problems", list)():
            issues.append(_issue(base, key, reason))
        sections[section] = updated
    if issues:
        raise ConfigError(issues)
    return replace(base, **sections)


def _issue(base: UseCase, key: str, reason: str) -> ConfigIssue:
    return ConfigIssue(base.folder / "(run-time override)", None, key, reason)


async def read_overrides(redis: Redis, usecase: str) -> dict[str, str]:
    # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
    raw: Fields = await redis.hgetall(UseCaseKeys(usecase).config_overrides)  # type: ignore[assignment]
    return {key.decode(): value.decode() for key, value in raw.items()}


async def change_config(redis: Redis, base: UseCase, changes: dict[str, str], who: str) -> UseCase:
    """Validate `changes` on top of the current overrides, store them, audit each key."""
    current = await read_overrides(redis, base.name)
    merged = {**current, **changes}
    updated = apply_overrides(base, merged)  # raises ConfigError: nothing is stored
    resolved_before = apply_overrides(base, current).resolved()
    async with redis.pipeline(transaction=True) as pipe:
        # redis-py takes fields as an invariant dict of its own unions: a dict[str, str] is fine
        pipe.hset(UseCaseKeys(base.name).config_overrides, mapping=changes)  # type: ignore[arg-type]
        for key, new in changes.items():
            old = current.get(key, _props_value(resolved_before, key))
            # redis-py takes fields as an invariant dict of its own unions: a dict[str, str] is fine
            pipe.xadd(
                UseCaseKeys(base.name).config_audit,
                _audit_entry(who, key, str(old), new),  # type: ignore[arg-type]
                maxlen=AUDIT_MAXLEN,
                approximate=True,
            )
        await pipe.execute()
    return updated


async def audit(redis: Redis, usecase: str, who: str, key: str, old: str, new: str) -> None:
    """An audit entry for a change made outside the props keys (a change of champion)."""
    # redis-py takes fields as an invariant dict of its own unions: a dict[str, str] is fine
    await redis.xadd(
        UseCaseKeys(usecase).config_audit,
        _audit_entry(who, key, old, new),  # type: ignore[arg-type]
        maxlen=AUDIT_MAXLEN,
        approximate=True,
    )


def _audit_entry(who: str, key: str, old: str, new: str) -> dict[str, str]:
    return {"who": who, "at": str(time.time()), "key": key, "old": old, "new": new}


def _props_value(resolved: dict[str, Any], key: str) -> Any:
    for section in ("streaming.props", "algs.props", "monitoring.props"):
        values = resolved.get(section) or {}
        if key in values:
            value = values[key]
            return ",".join(map(str, value)) if isinstance(value, list) else json.dumps(value)
    return None


class LiveConfig:
    """A service's view of its use case: the props files plus the current overrides."""

    def __init__(self, base: UseCase):
        self.base = base
        self.current = base
        self.overrides: dict[str, str] = {}
        self._checked = 0.0

    async def refresh(self, redis: Redis, force: bool = False) -> bool:
        """Re-read the overrides (at most every REFRESH_S); True when the configuration changed.
        An override that no longer validates is ignored (the API refuses such changes)."""
        now = time.monotonic()
        if not force and now - self._checked < REFRESH_S:
            return False
        overrides = await read_overrides(redis, self.base.name)
        self._checked = now  # after the read: Redis away, the next call tries again
        if overrides == self.overrides:
            return False
        try:
            self.current = apply_overrides(self.base, overrides)
        except ConfigError:
            return False
        self.overrides = overrides
        return True
