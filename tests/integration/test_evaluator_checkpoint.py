"""The evaluator's checkpoint in the real Redis: the newest evaluator owns it, an evaluator that
was replaced cannot write it any more, and a retrain request is written with the checkpoint
or not at all."""

from __future__ import annotations

import pytest

from services.evaluator.checkpoint import (
    CheckpointStore,
    EvaluatorReplacedError,
    Pending,
)
from shared.clients.redis import connect_redis
from shared.wire.keys import UseCaseKeys
from shared.wire.store import RetrainRequest


@pytest.fixture
async def redis(connections, unique):
    client = connect_redis(connections)
    yield client
    keys = UseCaseKeys(unique)
    await client.delete(keys.evaluator_checkpoint, keys.train_requests)
    await client.aclose()


async def test_the_newest_evaluator_owns_the_checkpoint_and_the_older_one_stops(redis, unique):
    older = CheckpointStore(redis, unique, b"secret")
    assert await older.claim() is None  # nothing saved yet
    await older.announce(Pending(1, 1000, {0: 9}))
    await older.save(1, b"state after 1")

    newer = CheckpointStore(redis, unique, b"secret")
    assert await newer.claim() == (1, b"state after 1", None)  # the pending one was done
    with pytest.raises(EvaluatorReplacedError, match="another evaluator started"):
        await older.save(2, b"state after 2 by the older one")
    with pytest.raises(EvaluatorReplacedError):
        await older.announce(Pending(2, 2000, {0: 19}))

    await newer.announce(Pending(2, 2000, {0: 19}))
    third = CheckpointStore(redis, unique, b"secret")
    assert await third.claim() == (1, b"state after 1", Pending(2, 2000, {0: 19}))


async def test_trainer_requests_are_written_with_the_checkpoint_or_not_at_all(redis, unique):
    keys = UseCaseKeys(unique)
    store = CheckpointStore(redis, unique, b"secret")
    await store.claim()
    request = RetrainRequest(reason="alert: accuracy", by="evaluator", evaluation="3")
    promotion = RetrainRequest(
        reason="window accuracy", by="evaluator", action="promote", model="m"
    )
    await store.save(3, b"state after 3", [request, promotion])
    entries = await redis.xrange(keys.train_requests)
    assert [RetrainRequest.decode(fields) for _, fields in entries] == [request, promotion]
    assert await redis.hget(keys.evaluator_checkpoint, "evaluation") == b"3"

    await CheckpointStore(redis, unique, b"secret").claim()  # replaced
    with pytest.raises(EvaluatorReplacedError):
        await store.save(4, b"state after 4", [request])
    assert len(await redis.xrange(keys.train_requests)) == 2  # not sent by a fenced evaluator
    assert await redis.hget(keys.evaluator_checkpoint, "state") == b"state after 3"


async def test_without_a_state_to_keep_an_older_one_is_removed(redis, unique):
    store = CheckpointStore(redis, unique, b"secret")
    await store.claim()
    await store.save(5, b"state after 5")
    await store.save(6, None)  # e.g. a metric that no longer pickles
    assert await CheckpointStore(redis, unique, b"secret").claim() is None
    no_secret = CheckpointStore(redis, unique, None)
    assert await no_secret.claim() is None and not no_secret.enabled
