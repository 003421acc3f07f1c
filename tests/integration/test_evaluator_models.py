"""Model versions reach Elasticsearch, but the trainer's continuous `stream` versions (about one
a second) stay out of the infoLog; an unreadable entry is reported, not fatal."""

from __future__ import annotations

import asyncio

from services.evaluator.service import Evaluator
from shared.clients.elastic import connect_elasticsearch
from shared.clients.redis import connect_redis
from shared.config import load_usecase
from shared.wire.keys import UseCaseKeys
from shared.wire.store import ModelMeta


async def test_every_version_is_indexed_and_only_the_non_stream_ones_are_logged(
    tmp_path, connections, unique
):
    folder = tmp_path / unique
    folder.mkdir()
    (folder / "streaming.props").write_text(
        f"mainTopic={unique}.in\noutputTopic={unique}.out\nproblem.type=Generic\n"
        "visualization=true\n"
    )
    (folder / "algs.props").write_text("algorithm=X\nevaluation.metrics=Accuracy\n")
    usecase = load_usecase(folder, connections.model_copy(update={"influx_db": unique}))
    keys = UseCaseKeys(unique)
    redis = connect_redis(connections)
    versions = [
        ModelMeta(version=1, created_at=1_764_000_000.0, mode="stream", records_learned=10),
        ModelMeta(version=2, created_at=1_764_000_001.0, mode="retrain", records_learned=500),
        ModelMeta(version=3, created_at=1_764_000_002.0, mode="stream", records_learned=30),
    ]
    try:
        for meta in versions[:2]:
            await redis.xadd(keys.models, meta.encode())
        await redis.xadd(keys.models, {"version": '"not a number"'})
        await redis.xadd(keys.models, versions[2].encode())
        stop = asyncio.Event()
        evaluator = Evaluator(usecase, stop, tmp_path / "logs")
        running = asyncio.create_task(evaluator.run())
        last = (await redis.xrevrange(keys.models, count=1))[0][0].decode()
        async with asyncio.timeout(60):
            while evaluator.state.models_cursor != last:
                assert not running.done(), running
                await asyncio.sleep(0.1)
        stop.set()
        await running
    finally:
        await redis.delete(keys.models, keys.evaluator_checkpoint)
        await redis.aclose()

    logs = tmp_path / "logs" / unique
    info = (logs / "infoLog").read_text()
    assert "model version 2 (retrain): 500 records learned" in info
    assert "model version 1" not in info and "model version 3" not in info
    assert "unreadable model version entry" in (logs / "errorLog").read_text()
    elastic = connect_elasticsearch(connections)
    try:
        await elastic.indices.refresh(index="streamer-models")
        found = await elastic.search(
            index="streamer-models", query={"term": {"usecase": unique}}, size=10
        )
    finally:
        await elastic.close()
    stored = sorted((hit["_id"], hit["_source"]["mode"]) for hit in found["hits"]["hits"])
    assert stored == [
        (f"{unique}:1", "stream"),
        (f"{unique}:2", "retrain"),
        (f"{unique}:3", "stream"),
    ]
