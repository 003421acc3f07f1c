"""Trainer on the real Redis and InfluxDB: cursor-based continuous training, retrain requests."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from pydantic import SecretStr

from services.trainer.service import Trainer, request_training
from shared.algorithms.registry import build_algorithm
from shared.clients.influx import AioinfluxStore
from shared.clients.redis import connect_redis
from shared.config import load_usecase
from shared.modelstore import ModelStore
from shared.records import KDDClassificationRecord
from shared.recordstore import progress_point, record_point
from tests.integration.pipeline_helpers import kdd_slice


@contextlib.asynccontextmanager
async def kdd_case(tmp_path, data_dir, connections, unique, rows: int, algs: str):
    """A use case over the first `rows` KDD lines, its InfluxDB database and Redis keys; yields
    (usecase, write(first, last, partition) storing lines as the launcher does, store, redis)."""
    lines = kdd_slice(data_dir, rows, tmp_path / "kdd.csv").read_text().splitlines()
    folder = tmp_path / unique
    folder.mkdir()
    (folder / "streaming.props").write_text(
        "mainTopic=t\noutputTopic=o\nproblem.type=KDDClassification\n"
    )
    (folder / "algs.props").write_text(f"algorithm=HoeffdingTreeClassifier\n{algs}")
    settings = connections.model_copy(update={"model_secret": SecretStr("k"), "influx_db": unique})
    usecase = load_usecase(folder, settings)
    influx = AioinfluxStore(settings)
    await influx.ensure_database()
    redis = connect_redis(settings)

    async def write(first: int, last: int, partition: int = 0) -> None:
        await influx.write_lines(
            [
                record_point(
                    unique,
                    KDDClassificationRecord.parse(lines[i], "kdd"),
                    topic="t",
                    partition=partition,
                    offset=i,
                    event_time_ms=1000 + i,
                    record_id=f"kdd:{i}",
                )
                for i in range(first, last)
            ]
        )
        # as the launcher does after each batch: the points up to here are complete
        await influx.write_lines([progress_point(unique, "t", partition, last - 1)])

    try:
        yield usecase, write, ModelStore(redis, unique, b"k"), redis
    finally:
        await influx.query(f'DROP DATABASE "{unique}"')
        await influx.close()
        keys = [key async for key in redis.scan_iter(f"streamer:{unique}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


@pytest.fixture
async def setup(tmp_path, data_dir, connections, unique):
    algs = "training.interval=200\ntraining.maxdata=100\n"
    async with kdd_case(tmp_path, data_dir, connections, unique, 600, algs) as case:
        yield case


async def wait_until(condition, wait_s: float = 20.0):
    """Poll `condition` (state in Redis, written by another task) until it returns a value."""
    async with asyncio.timeout(wait_s):
        while True:
            result = await condition()
            if result:
                return result
            await asyncio.sleep(0.1)


async def test_continuous_mode_learns_each_point_once_even_when_written_late(setup):
    usecase, write, store, _ = setup
    await write(0, 200)
    stop = asyncio.Event()
    task = asyncio.create_task(Trainer(usecase, stop).run())
    try:
        first = await wait_until(lambda: _learned(store, 200))
        await write(200, 400)  # written while the trainer runs
        await write(0, 50, partition=1)  # a new series appears late
        last = await wait_until(lambda: _learned(store, 450))
    finally:
        stop.set()
        await task
    assert first["mode"] == last["mode"] == "continuous"
    assert last["records_learned"] == 450  # nothing skipped, nothing learned twice
    assert last["cursor"] == {"kdd|t|0": 399, "kdd|t|1": 49}


async def test_a_retrain_request_refits_on_the_recent_window_and_resumes_after_restart(setup):
    usecase, write, store, redis = setup
    await write(0, 300)
    stop = asyncio.Event()
    trainer = Trainer(usecase, stop)
    task = asyncio.create_task(trainer.run())
    try:
        await wait_until(lambda: _learned(store, 300))
        await request_training(redis, usecase.name, reason="alert: accuracy", by="test")
        retrained = await wait_until(lambda: _latest_with_mode(store, "retrain"))
    finally:
        stop.set()
        await task
    assert retrained["records_learned"] == 100  # training.maxdata most recent records
    assert retrained["reason"] == "alert: accuracy"
    assert trainer.counters.requests == 1

    await write(300, 350)
    stop = asyncio.Event()
    task = asyncio.create_task(Trainer(usecase, stop).run())
    try:
        resumed = await wait_until(lambda: _latest_with_mode(store, "continuous", after=retrained))
    finally:
        stop.set()
        await task
    assert resumed["new_records"] == 50  # the restarted trainer continued from the cursor


async def _learned(store: ModelStore, count: int):
    version = await store.latest_version()
    if version is None:
        return None
    meta = await store.metadata(version)
    return meta if meta["records_learned"] >= count else None


async def _latest_with_mode(store: ModelStore, mode: str, after: dict | None = None):
    version = await store.latest_version()
    if version is None or (after and version <= after["version"]):
        return None
    meta = await store.metadata(version)
    return meta if meta["mode"] == mode else None


async def test_points_beyond_the_launchers_progress_are_not_learned_yet(setup, tmp_path):
    """A point is learned only once the launcher's progress point covers it: InfluxDB may show
    a point being written with some of its fields only."""
    usecase, write, _, _ = setup
    await write(0, 100)  # confirmed by a progress point at offset 99
    line = (tmp_path / "kdd.csv").read_text().splitlines()[0]
    pending = [
        record_point(
            usecase.name,
            KDDClassificationRecord.parse(line, "kdd"),
            topic="t",
            partition=0,
            offset=offset,
            event_time_ms=offset,
            record_id=f"kdd:{offset}",
        )
        for offset in range(100, 150)
    ]
    trainer = Trainer(usecase, asyncio.Event())
    trainer.influx = AioinfluxStore(usecase.connections)
    try:
        await trainer.influx.write_lines(pending)  # written, not confirmed yet
        assert len(await trainer._new_examples()) == 100
        await trainer.influx.write_lines([progress_point(usecase.name, "t", 0, 149)])
        assert len(await trainer._new_examples()) == 150
    finally:
        await trainer.influx.close()


async def test_a_model_signed_with_another_secret_is_refused_and_replaced(setup):
    usecase, write, store, redis = setup
    await write(0, 300)
    foreign = ModelStore(redis, usecase.name, b"another secret")
    await foreign.publish(build_algorithm(usecase), mode="continuous", records_learned=999)
    stop = asyncio.Event()
    task = asyncio.create_task(Trainer(usecase, stop).run())
    try:
        fresh = await wait_until(lambda: _latest_with_mode(store, "continuous", {"version": 1}))
    finally:
        stop.set()
        await task
    assert fresh["version"] == 2 and fresh["records_learned"] == 300  # not 999 + 300
    assert (await store.load()).algorithm is not None  # its own bytes pass the check


@pytest.mark.parametrize("retrain", [False, True], ids=["catch-up", "retrain-on-everything"])
async def test_a_stop_during_a_long_training_abandons_it_and_the_next_start_learns_it(
    tmp_path, data_dir, connections, unique, retrain
):
    """SIGTERM must not wait for a long training (containers get 40 s, `streamer run` 30 s):
    a catch-up on a backlog, or a retrain request with training.maxdata=-1 (every stored
    record), is abandoned between two pages or slices, nothing is published, and a new trainer
    learns every record."""
    rows = 40_000
    algs = "training.interval=100\ntraining.maxdata=-1\n"
    async with kdd_case(tmp_path, data_dir, connections, unique, rows, algs) as case:
        usecase, write, store, redis = case
        for first in range(0, rows, 10_000):
            await write(first, first + 10_000)

        if retrain:
            await request_training(redis, unique, "alert: accuracy", by="test")
        stop = asyncio.Event()
        trainer = Trainer(usecase, stop)
        task = asyncio.create_task(trainer.run())
        async with asyncio.timeout(30):
            while not trainer.training:  # noqa: ASYNC110 (state of another task)
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)  # reading or learning the backlog
        stop.set()
        stopped_at = asyncio.get_running_loop().time()
        counters = await asyncio.wait_for(task, 30)
        assert asyncio.get_running_loop().time() - stopped_at < 5
        assert counters.trainings == 0 and counters.records_learned == 0
        assert await store.load() is None  # nothing published

        again = asyncio.Event()
        restarted = Trainer(usecase, again)
        task = asyncio.create_task(restarted.run())
        latest = await wait_until(store.load, 120)
        again.set()
        await asyncio.wait_for(task, 60)
        assert latest.meta["records_learned"] == rows
