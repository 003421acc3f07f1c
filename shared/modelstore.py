"""Versioned models per use case in Redis, authenticated with an HMAC.

Anyone who can write a Redis key could otherwise make the launcher unpickle arbitrary code, so
model bytes are wrapped in an envelope whose HMAC-SHA256 (key: STREAMER_MODEL_SECRET) covers the
use case, the version and the payload; `load` verifies it before `pickle.loads` and refuses
the model otherwise. Key names are in docs/wire-format.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import pickle
import time
import zlib
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from shared.algorithms.base import Algorithm
from shared.config.settings import ConnectionSettings
from shared.errors import StreamerError

MAGIC = b"STRM1"
CODEC_PICKLE = b"p"
CODEC_PICKLE_ZLIB = b"z"
_MAC_SIZE = hashlib.sha256().digest_size
# zlib level 1: River trees shrink several times for a small fraction of the pickling time.
ZLIB_LEVEL = 1


class ModelIntegrityError(StreamerError):
    """Model bytes in Redis fail their HMAC check (tampered, truncated or another secret)."""


@dataclass(frozen=True)
class ModelVersion:
    """A published model: its metadata, and the algorithm when loaded."""

    version: int
    meta: dict[str, Any]
    algorithm: Algorithm | None = None


def model_secret(settings: ConnectionSettings) -> bytes:
    if settings.model_secret is None or not settings.model_secret.get_secret_value():
        raise StreamerError(
            "STREAMER_MODEL_SECRET is not set: the trainer and the launcher need the same secret "
            "to authenticate the models they exchange through Redis"
        )
    return settings.model_secret.get_secret_value().encode()


def seal(secret: bytes, usecase: str, version: int, algorithm: Algorithm) -> bytes:
    """Pickle, compress and sign; CPU-heavy: call it in a worker thread."""
    payload = zlib.compress(pickle.dumps(algorithm, protocol=5), ZLIB_LEVEL)
    header = MAGIC + CODEC_PICKLE_ZLIB
    return header + _mac(secret, usecase, version, header, payload) + payload


def unseal(secret: bytes, usecase: str, version: int, envelope: bytes) -> Algorithm:
    """Verify, then unpickle; CPU-heavy: call it in a worker thread."""
    header, mac = envelope[: len(MAGIC) + 1], envelope[len(MAGIC) + 1 : len(MAGIC) + 1 + _MAC_SIZE]
    payload = envelope[len(MAGIC) + 1 + _MAC_SIZE :]
    if not header.startswith(MAGIC) or not hmac.compare_digest(
        mac, _mac(secret, usecase, version, header, payload)
    ):
        raise ModelIntegrityError(
            f"model version {version} of use case {usecase!r} fails its HMAC check: refused "
            "(tampered bytes, or trainer and launcher use different STREAMER_MODEL_SECRET)"
        )
    codec = header[len(MAGIC) :]
    data = zlib.decompress(payload) if codec == CODEC_PICKLE_ZLIB else payload
    return pickle.loads(data)  # authenticated above


def _mac(secret: bytes, usecase: str, version: int, header: bytes, payload: bytes) -> bytes:
    signer = hmac.new(secret, digestmod=hashlib.sha256)
    signer.update(f"{usecase}\0{version}\0".encode())
    signer.update(header)
    signer.update(payload)
    return signer.digest()


class ModelStore:
    """The models of one use case. `keep` versions are retained; older ones are deleted."""

    def __init__(self, redis: Redis, usecase: str, secret: bytes, keep: int = 5):
        self.redis = redis
        self.usecase = usecase
        self.secret = secret
        self.keep = keep
        self.prefix = f"streamer:{usecase}:"

    def key(self, suffix: str) -> str:
        return self.prefix + suffix

    async def publish(self, algorithm: Algorithm, **meta: Any) -> ModelVersion:
        """Store a new version and notify (stream `models`); returns it with its metadata."""
        version = int(await self.redis.incr(self.key("model:counter")))
        started = time.perf_counter()
        envelope = await asyncio.to_thread(seal, self.secret, self.usecase, version, algorithm)
        full_meta = {
            **algorithm.describe(),
            **meta,
            "version": version,
            "created_at": time.time(),
            "size_bytes": len(envelope),
            "seal_seconds": round(time.perf_counter() - started, 4),
        }
        encoded = {name: _encode(value) for name, value in full_meta.items()}
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(self.key(f"model:{version}"), envelope)
            pipe.hset(self.key(f"model:{version}:meta"), mapping=encoded)
            pipe.set(self.key("model:latest"), version)
            pipe.xadd(self.key("models"), encoded, maxlen=1000, approximate=True)
            stale = version - self.keep
            if stale > 0:
                pipe.delete(self.key(f"model:{stale}"))
            await pipe.execute()
        return ModelVersion(version, full_meta, algorithm)

    async def latest_version(self) -> int | None:
        value = await self.redis.get(self.key("model:latest"))
        return int(value) if value is not None else None

    async def metadata(self, version: int) -> dict[str, Any]:
        raw = await self.redis.hgetall(self.key(f"model:{version}:meta"))
        return {key.decode(): _decode(value) for key, value in raw.items()}

    async def load(self, version: int | None = None) -> ModelVersion | None:
        """The given (default: latest) version, verified and unpickled; None if there is none."""
        if version is None:
            version = await self.latest_version()
            if version is None:
                return None
        envelope = await self.redis.get(self.key(f"model:{version}"))
        if envelope is None:
            return None
        algorithm = await asyncio.to_thread(unseal, self.secret, self.usecase, version, envelope)
        return ModelVersion(version, await self.metadata(version), algorithm)

    async def versions(self) -> list[dict[str, Any]]:
        """Metadata of every published version, oldest first (from the `models` stream)."""
        entries = await self.redis.xrange(self.key("models"))
        return [{k.decode(): _decode(v) for k, v in fields.items()} for _, fields in entries]


def _encode(value: Any) -> str:
    return json.dumps(value)


def _decode(raw: bytes) -> Any:
    return json.loads(raw)
