"""Model store on the real Redis: versions, metadata, notification, HMAC refusal."""

from __future__ import annotations

import pytest

from shared.algorithms.base import Algorithm
from shared.clients.redis import connect_redis
from shared.modelstore import ModelIntegrityError, ModelStore


class MajorityClass(Algorithm):
    """A tiny real algorithm: predicts the most frequent label seen."""

    name = "MajorityClass"

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def learn_one(self, x, y) -> None:
        self.counts[y] = self.counts.get(y, 0) + 1

    def predict_one(self, x):
        return max(self.counts, key=self.counts.get) if self.counts else None


@pytest.fixture
async def redis(connections, unique):
    client = connect_redis(connections)
    yield client
    keys = [key async for key in client.scan_iter(f"streamer:{unique}:*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_versions_advance_with_metadata_and_load_back(redis, unique):
    store = ModelStore(redis, unique, b"secret", keep=2)
    assert await store.load() is None
    model = MajorityClass()
    for label in ["a", "b", "b"]:
        model.learn_one({}, label)
    first = await store.publish(model, mode="continuous", records_learned=3)
    model.learn_one({}, "a")
    model.learn_one({}, "a")
    second = await store.publish(model, mode="continuous", records_learned=5)
    third = await store.publish(model, mode="retrain", records_learned=5)
    assert (first.version, second.version, third.version) == (1, 2, 3)
    assert await store.latest_version() == 3

    loaded = await store.load()
    assert loaded is not None and loaded.version == 3
    assert loaded.algorithm.predict_one({}) == "a"
    assert loaded.meta["mode"] == "retrain" and loaded.meta["algorithm"] == "MajorityClass"
    assert loaded.meta["size_bytes"] > 0
    assert [v["version"] for v in await store.versions()] == [1, 2, 3]
    assert await store.load(1) is None  # only `keep` versions are retained
    assert (await store.load(2)).algorithm.predict_one({}) == "a"


async def test_tampered_or_foreign_models_are_refused(redis, unique):
    store = ModelStore(redis, unique, b"secret")
    published = await store.publish(MajorityClass(), mode="continuous")
    key = store.key(f"model:{published.version}")
    envelope = await redis.get(key)

    other_secret = ModelStore(redis, unique, b"another secret")
    with pytest.raises(ModelIntegrityError, match="fails its HMAC check"):
        await other_secret.load()

    await redis.set(key, envelope[:-1] + bytes([envelope[-1] ^ 1]))
    with pytest.raises(ModelIntegrityError, match=f"model version 1 of use case '{unique}'"):
        await store.load()

    # the bytes of another use case's version do not pass as this one's either
    foreign = ModelStore(redis, f"{unique}x", b"secret")
    await foreign.publish(MajorityClass(), mode="continuous")
    await redis.set(key, await redis.get(foreign.key("model:1")))
    with pytest.raises(ModelIntegrityError):
        await store.load()
    await redis.delete(*[k async for k in redis.scan_iter(f"streamer:{unique}x:*")])
