"""Versioned models per use case in Redis, authenticated with an HMAC.

Anyone who can write a Redis key could otherwise make the launcher unpickle arbitrary code, so
model bytes are wrapped in an envelope whose HMAC-SHA256 (key: STREAMER_MODEL_SECRET) covers the
use case, the version and the payload; `unseal` verifies it before `pickle.loads` and refuses
the model otherwise.

A version is what launchers load (`model:<v>`: an inference snapshot when the model has one,
else the full model) and its metadata (shared.wire.store.ModelMeta). Now and then a version is
also a checkpoint: the full, learning model is stored with its metadata in one slot
(`model:checkpoint`), which is what a restarted trainer resumes from. `keep` versions are
retained, older ones deleted with their metadata. Key names: shared/wire/keys.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import pickle
import time
import zlib
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.lock import Lock

from shared.algorithms.base import Algorithm
from shared.config.settings import ConnectionSettings
from shared.errors import StreamerError
from shared.wire.keys import UseCaseKeys
from shared.wire.store import Fields, ModelMeta

MAGIC = b"STRM1"
CODEC_PICKLE = b"p"
CODEC_PICKLE_ZLIB = b"z"
_MAC_SIZE = hashlib.sha256().digest_size
# zlib level 1: River trees shrink several times for a small fraction of the pickling time.
ZLIB_LEVEL = 1
DEFAULT_KEEP = 5

# Everything a version writes, in one atomic step, only while `lease` holds `token` (a trainer
# that lost its lease, paused or partitioned away, cannot publish over its successor).
# KEYS: lease, model, meta, latest, models, checkpoint, checkpoint_full, stale_model, stale_meta
# ARGV: token (empty: not fenced), version, envelope, checkpoint envelope (empty: none),
#       stream maxlen, then the metadata as field, value pairs
_PUT = """
if ARGV[1] ~= '' and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return 0
end
local meta = {}
for i = 6, #ARGV do meta[#meta + 1] = ARGV[i] end
redis.call('SET', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[3], unpack(meta))
redis.call('SET', KEYS[4], ARGV[2])
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[5], '*', unpack(meta))
if ARGV[4] ~= '' then
  redis.call('DEL', KEYS[6])
  redis.call('HSET', KEYS[6], unpack(meta))
  redis.call('SET', KEYS[7], ARGV[4])
end
if KEYS[8] ~= KEYS[2] then
  redis.call('DEL', KEYS[8], KEYS[9])
end
return 1
"""


class ModelIntegrityError(StreamerError):
    """Model bytes in Redis fail their HMAC check (tampered, truncated or another secret)."""


class LeaseLostError(StreamerError):
    """This trainer no longer holds the use case's trainer lease: another one publishes."""


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
    """Pickle, compress and sign; CPU-heavy: call it off the event loop, and in the thread that
    owns `algorithm` when it is still learning."""
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
    algorithm: Algorithm = pickle.loads(data)  # authenticated above
    return algorithm


def _mac(secret: bytes, usecase: str, version: int, header: bytes, payload: bytes) -> bytes:
    signer = hmac.new(secret, digestmod=hashlib.sha256)
    signer.update(f"{usecase}\0{version}\0".encode())
    signer.update(header)
    signer.update(payload)
    return signer.digest()


class ModelStore:
    """The models of one use case. `keep` versions are retained; older ones are deleted."""

    def __init__(self, redis: Redis, usecase: str, secret: bytes, keep: int = DEFAULT_KEEP):
        self.redis = redis
        self.usecase = usecase
        self.secret = secret
        self.keep = max(1, keep)
        self.keys = UseCaseKeys(usecase)
        self._put = redis.register_script(_PUT)

    def key(self, suffix: str) -> str:
        return self.keys.prefix + suffix

    async def next_version(self) -> int:
        """A new version number (never reused, even when a publication fails)."""
        return int(await self.redis.incr(self.keys.model_counter))

    async def put(
        self,
        version: int,
        envelope: bytes,
        meta: ModelMeta,
        *,
        checkpoint: bytes | None = None,
        lease: Lock | None = None,
    ) -> None:
        """Store a sealed version (and its full model as the checkpoint, when given) and
        notify, in one atomic step; with `lease`, only while this process holds it."""
        keys = self.keys
        stale = version - self.keep
        token = lease.local.token if lease is not None else None
        fields = [item for pair in meta.encode().items() for item in pair]
        stale_keys = (
            [keys.model(stale), keys.model_meta(stale)]
            if stale > 0
            else [keys.model(version)] * 2  # nothing to delete (the script skips its own key)
        )
        written = await self._put(
            keys=[
                keys.trainer_lease,
                keys.model(version),
                keys.model_meta(version),
                keys.model_latest,
                keys.models,
                keys.model_checkpoint,
                keys.model_checkpoint_full,
                *stale_keys,
            ],
            args=[
                token.decode() if isinstance(token, bytes) else (token or ""),
                version,
                envelope,
                checkpoint or b"",
                1000,
                *fields,
            ],
        )
        if not written:
            raise LeaseLostError(
                f"{self.usecase}: version {version} not published: this trainer lost its lease"
            )

    async def publish(
        self, algorithm: Algorithm, *, lease: Lock | None = None, **meta: Any
    ) -> ModelVersion:
        """Seal `algorithm` (off the event loop) as a new version that is also a checkpoint,
        and publish it: for a model that no one else is mutating meanwhile (offline training,
        classical refits, tests). The trainer's streaming learner uses `put` directly."""
        version = await self.next_version()
        started = time.perf_counter()
        envelope = await asyncio.to_thread(seal, self.secret, self.usecase, version, algorithm)
        full = ModelMeta.model_validate(
            {
                **algorithm.describe(),
                **meta,
                "version": version,
                "created_at": time.time(),
                "size_bytes": len(envelope),
                "seal_seconds": round(time.perf_counter() - started, 4),
                "checkpoint": True,
            }
        )
        await self.put(version, envelope, full, checkpoint=envelope, lease=lease)
        return ModelVersion(version, full.model_dump(), algorithm)

    async def latest_version(self) -> int | None:
        value = await self.redis.get(self.keys.model_latest)
        return int(value) if value is not None else None

    async def metadata(self, version: int) -> dict[str, Any]:
        # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
        raw: Fields = await self.redis.hgetall(self.keys.model_meta(version))  # type: ignore[assignment]
        return ModelMeta.decode(raw).model_dump() if raw else {}

    async def load(self, version: int | None = None) -> ModelVersion | None:
        """The given (default: latest) version as launchers load it, verified and unpickled;
        None if there is none."""
        if version is None:
            version = await self.latest_version()
            if version is None:
                return None
        # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
        replies: tuple[bytes | None, Fields] = await asyncio.gather(  # type: ignore[assignment]
            self.redis.get(self.keys.model(version)),
            self.redis.hgetall(self.keys.model_meta(version)),
        )
        envelope, raw = replies
        if envelope is None:
            return None
        algorithm = await asyncio.to_thread(unseal, self.secret, self.usecase, version, envelope)
        meta = ModelMeta.decode(raw).model_dump() if raw else {"version": version}
        return ModelVersion(version, meta, algorithm)

    async def load_checkpoint(self) -> ModelVersion | None:
        """The newest checkpoint (full model and metadata), verified and unpickled; None if
        there is none."""
        # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
        replies: tuple[Fields, bytes | None] = await asyncio.gather(  # type: ignore[assignment]
            self.redis.hgetall(self.keys.model_checkpoint),
            self.redis.get(self.keys.model_checkpoint_full),
        )
        raw, envelope = replies
        if not raw or envelope is None:
            return None
        meta = ModelMeta.decode(raw)
        algorithm = await asyncio.to_thread(
            unseal, self.secret, self.usecase, meta.version, envelope
        )
        return ModelVersion(meta.version, meta.model_dump(), algorithm)

    async def versions(self) -> list[dict[str, Any]]:
        """Metadata of every published version, oldest first (from the `models` stream)."""
        # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
        entries: list[tuple[bytes, Fields]] = await self.redis.xrange(self.keys.models)  # type: ignore[assignment]
        return [ModelMeta.decode(fields).model_dump() for _, fields in entries]

    async def next_publication(self, after: bytes | str, block_ms: int) -> bytes | None:
        """Wait at most `block_ms` for a version published after the `models` stream entry
        `after` ("$": from now on): the newest such entry's id, None when none came."""
        # redis-py types replies bytes | str: ours are bytes (decode_responses is off)
        reply: list[tuple[bytes, list[tuple[bytes, Fields]]]] = await self.redis.xread(  # type: ignore[assignment]
            {self.keys.models: after}, block=block_ms
        )
        return reply[0][1][-1][0] if reply else None
