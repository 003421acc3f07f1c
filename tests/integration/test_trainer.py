"""The trainer on the real Kafka, Redis and InfluxDB: the single learner of a streaming model.

It reads the input topic itself, learns every record once and in order, never before a
launcher predicted it, publishes versions (on time, on a records bound, on a launcher's
demand), resumes from its checkpoint, refits on request, and keeps one active trainer per use
case. Its models are checked against River's own Hoeffding tree trained on the same records.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from redis.asyncio import Redis
from river import tree

from services.trainer.service import Trainer
from shared.clients.influx import AioinfluxStore
from shared.clients.kafka import ensure_topics, make_producer, start_client
from shared.clients.redis import connect_redis
from shared.config import UseCase, load_usecase
from shared.modelstore import ModelStore
from shared.records import KDDClassificationRecord
from shared.wire.influx import RecordsMeasurement
from shared.wire.keys import UseCaseKeys
from shared.wire.store import request_training
from tests.integration.pipeline_helpers import kdd_slice, service, service_env

SECRET = "integration-test-secret"
PUBLISH_OFTEN = "model.publish.interval=100\n"


@dataclass
class Case:
    """A KDD use case whose input topic the test fills, as producer and launcher would."""

    usecase: UseCase
    folder: Path
    lines: list[str]
    store: ModelStore
    redis: Redis
    bootstrap: str

    @property
    def topic(self) -> str:
        return self.usecase.streaming.main_topics[0]

    async def produce(self, first: int, last: int) -> None:
        """Lines [first, last) into the input topic (offsets = line indexes)."""
        producer = make_producer(self.bootstrap)
        await start_client(producer, self.bootstrap)
        try:
            for index in range(first, last):
                await producer.send(
                    self.topic,
                    self.lines[index].encode(),
                    key=b"kdd",
                    headers=[("record-id", f"kdd:{index + 1}".encode())],
                )
            await producer.flush()
        finally:
            await producer.stop()

    async def predicted_up_to(self, offset: int) -> None:
        """As a launcher does after committing a batch: records before `offset` predicted."""
        await self.redis.hset(
            UseCaseKeys(self.usecase.name).launcher_progress, f"{self.topic}/0", offset
        )

    async def store_records(self, first: int, last: int) -> None:
        """Lines [first, last) in InfluxDB as the launcher stores them, confirmed complete."""
        influx = AioinfluxStore(self.usecase.connections)
        measurement = RecordsMeasurement(self.usecase.name)
        try:
            await influx.ensure_database()
            await influx.write_lines(
                [
                    measurement.point(
                        self.lines[i],
                        source="kdd",
                        topic=self.topic,
                        partition=0,
                        offset=i,
                        event_time_ms=1000 + i,
                        record_id=f"kdd:{i + 1}",
                    )
                    for i in range(first, last)
                ]
            )
            await influx.write_lines([measurement.progress_point(self.topic, 0, last - 1)])
        finally:
            await influx.close()

    async def latest(self) -> dict[str, Any] | None:
        version = await self.store.latest_version()
        return None if version is None else await self.store.metadata(version)


@contextlib.asynccontextmanager
async def kdd_case(
    tmp_path: Path, data_dir: Path, connections, unique: str, rows: int, algs: str = ""
) -> AsyncIterator[Case]:
    lines = kdd_slice(data_dir, rows, tmp_path / "kdd.csv").read_text().splitlines()
    folder = tmp_path / unique
    folder.mkdir()
    (folder / "streaming.props").write_text(
        f"mainTopic={unique}\noutputTopic={unique}.outputs\nproblem.type=KDDClassification\n"
    )
    (folder / "algs.props").write_text(f"algorithm=HoeffdingTreeClassifier\n{algs}")
    settings = connections.model_copy(
        update={"model_secret": SecretStr(SECRET), "influx_db": unique}
    )
    usecase = load_usecase(folder, settings)
    bootstrap = usecase.bootstrap_servers
    await ensure_topics(bootstrap, [unique])
    redis = connect_redis(settings)
    try:
        yield Case(
            usecase, folder, lines, ModelStore(redis, unique, SECRET.encode()), redis, bootstrap
        )
    finally:
        influx = AioinfluxStore(settings)
        await influx.query(f'DROP DATABASE "{unique}"')
        await influx.close()
        keys = [key async for key in redis.scan_iter(f"streamer:{unique}:*")]
        if keys:
            await redis.delete(*keys)
        await redis.aclose()


@contextlib.asynccontextmanager
async def running(usecase: UseCase) -> AsyncIterator[Trainer]:
    stop = asyncio.Event()
    trainer = Trainer(usecase, stop)
    task = asyncio.create_task(trainer.run())
    try:
        yield trainer
    finally:
        stop.set()
        await asyncio.wait_for(task, 60)


async def wait_until(condition: Callable[[], Awaitable[Any]], wait_s: float = 30.0) -> Any:
    """Poll `condition` (state written by another task or process) until it returns a value."""
    async with asyncio.timeout(wait_s):
        while True:
            result = await condition()
            if result:
                return result
            await asyncio.sleep(0.05)


def river_tree(lines: list[str], count: int) -> tree.HoeffdingTreeClassifier:
    """The outside reference: River's tree after the first `count` lines, in order."""
    model = tree.HoeffdingTreeClassifier()
    for line in lines[:count]:
        record = KDDClassificationRecord.parse(line)
        model.learn_one(record.values, record.targets[0])
    return model


async def assert_predicts_as_river(case: Case, learnt: int, holdout: list[str]) -> None:
    loaded = await case.store.load()
    assert loaded is not None and loaded.algorithm is not None
    reference = river_tree(case.lines, learnt)
    for line in holdout:
        x = KDDClassificationRecord.parse(line).values
        assert loaded.algorithm.predict_one(x) == reference.predict_one(x)


async def test_each_record_is_learnt_once_in_order_and_never_before_a_launcher_predicted_it(
    tmp_path, data_dir, connections, unique
):
    async with kdd_case(tmp_path, data_dir, connections, unique, 3500, PUBLISH_OFTEN) as case:
        await case.produce(0, 3000)
        await case.predicted_up_to(1000)
        async with running(case.usecase) as trainer:
            first = await wait_until(lambda: _at(case, 1000))
            # the rest is fetched, and held back until a launcher has predicted it
            await wait_until(lambda: _holding(trainer, 2000))
            assert (await case.latest())["positions"] == {f"{case.topic}/0": 1000}
            await case.predicted_up_to(3000)
            last = await wait_until(lambda: _at(case, 3000))
        assert first["records_learned"] == 1000 and first["mode"] == "stream"
        assert last["records_learned"] == 3000  # nothing skipped, nothing learnt twice
        assert last["snapshot"] is True and last["size_bytes"] < 100_000
        await assert_predicts_as_river(case, 3000, case.lines[3000:])


async def _at(case: Case, position: int) -> dict[str, Any] | None:
    meta = await case.latest()
    if meta and meta["positions"].get(f"{case.topic}/0") == position:
        return meta
    return None


async def _holding(trainer: Trainer, count: int) -> bool:
    """The trainer fetched records it may not learn yet: it knows `count` records wait."""
    stream = trainer.stream
    return stream is not None and any(stream._pending.values()) and stream.lag() == count


async def test_a_waiting_launcher_gets_a_version_as_soon_as_the_trainer_learnt_what_it_needs(
    tmp_path, data_dir, connections, unique
):
    """With no version due by time for 10 minutes and 20,000 records to learn, a launcher that
    waits for one that learnt 1,500 records gets it long before the trainer caught up."""
    algs = "model.publish.interval=600000\n"
    async with kdd_case(tmp_path, data_dir, connections, unique, 20_000, algs) as case:
        await case.produce(0, 20_000)
        await case.predicted_up_to(20_000)
        await case.redis.hset(UseCaseKeys(unique).launcher_demand, f"{case.topic}/0", 1500)
        async with running(case.usecase):
            needed = await wait_until(lambda: _at_least(case, 1500, 0), 20)
            await wait_until(lambda: _at(case, 20_000), 60)
        assert 1500 <= needed["positions"][f"{case.topic}/0"] < 20_000


async def _at_least(case: Case, position: int, after: int) -> dict[str, Any] | None:
    meta = await case.latest()
    if meta and meta["version"] > after and meta["positions"].get(f"{case.topic}/0", 0) >= position:
        return meta
    return None


async def test_model_publish_records_bounds_what_a_version_adds(
    tmp_path, data_dir, connections, unique
):
    algs = "model.publish.interval=600000\nmodel.publish.records=400\n"
    async with kdd_case(tmp_path, data_dir, connections, unique, 2000, algs) as case:
        await case.produce(0, 2000)
        await case.predicted_up_to(2000)
        async with running(case.usecase):
            await wait_until(lambda: _at(case, 2000))
        versions = await case.store.versions()
    assert [v["new_records"] for v in versions] == [400] * 5
    assert [v["positions"][f"{unique}/0"] for v in versions] == [400, 800, 1200, 1600, 2000]


async def test_a_stopped_trainer_resumes_from_its_checkpoint_and_learns_no_record_twice(
    tmp_path, data_dir, connections, unique
):
    algs = "model.publish.interval=100\nmodel.checkpoint.interval=600000\n"
    async with kdd_case(tmp_path, data_dir, connections, unique, 4000, algs) as case:
        await case.produce(0, 2000)
        await case.predicted_up_to(2000)
        async with running(case.usecase):
            await wait_until(lambda: _at(case, 2000))
        # a graceful stop checkpoints what it learnt
        checkpoint = await case.store.load_checkpoint()
        assert checkpoint is not None and checkpoint.meta["positions"] == {f"{unique}/0": 2000}

        await case.produce(2000, 3500)
        await case.predicted_up_to(3500)
        async with running(case.usecase) as restarted:
            last = await wait_until(lambda: _at(case, 3500))
        assert last["records_learned"] == 3500
        assert restarted.counters.records_learned == 1500  # only the new ones
        await assert_predicts_as_river(case, 3500, case.lines[3500:])


async def test_a_killed_trainer_resumes_from_its_last_checkpoint_without_learning_twice(
    tmp_path, data_dir, connections, unique
):
    """SIGKILL leaves versions newer than the checkpoint; the restarted trainer learns again,
    into the checkpoint's model, only what that model had not learnt."""
    algs = "model.publish.interval=100\nmodel.checkpoint.interval=600000\n"
    async with kdd_case(tmp_path, data_dir, connections, unique, 6000, algs) as case:
        env = {**service_env(unique), "STREAMER_MODEL_SECRET": SECRET}
        log = tmp_path / "trainer.log"
        await case.produce(0, 5000)
        await case.predicted_up_to(1000)
        with service("train", case.folder, env, log) as trainer:
            await wait_until(lambda: _at(case, 1000), 60)  # the first version: a checkpoint
            await case.predicted_up_to(3000)
            await wait_until(lambda: _at(case, 3000), 60)  # a version, not a checkpoint
            os.kill(trainer.pid, signal.SIGKILL)
            trainer.wait()
        checkpoint = await case.store.load_checkpoint()
        assert checkpoint.meta["positions"] == {f"{unique}/0": 1000}, log.read_text()[-2000:]

        await case.predicted_up_to(5000)
        with service("train", case.folder, env, log):
            last = await wait_until(lambda: _at(case, 5000), 60)
        assert last["records_learned"] == 5000, log.read_text()[-2000:]
        await assert_predicts_as_river(case, 5000, case.lines[5000:])


async def test_a_retrain_refits_on_the_stored_window_and_streaming_goes_on_from_its_end(
    tmp_path, data_dir, connections, unique
):
    algs = "model.publish.interval=100\ntraining.maxdata=300\n"
    async with kdd_case(tmp_path, data_dir, connections, unique, 2000, algs) as case:
        await case.produce(0, 1000)
        await case.store_records(0, 1000)
        await case.predicted_up_to(1000)
        async with running(case.usecase) as trainer:
            await wait_until(lambda: _at(case, 1000))
            await request_training(case.redis, unique, reason="alert: accuracy", by="test")
            retrained = await wait_until(lambda: _with_mode(case, "retrain"))
            await case.produce(1000, 1500)
            await case.predicted_up_to(1500)
            resumed = await wait_until(lambda: _at(case, 1500))
        assert retrained["records_learned"] == 300  # training.maxdata most recent records
        # an API-style request locates no change: since-change (the default) serves it as window
        assert retrained["reason"] == "alert: accuracy (window)" and retrained["checkpoint"]
        assert retrained["positions"] == {f"{unique}/0": 1000}  # the window's end
        assert resumed["records_learned"] == 300 + 500
        assert trainer.counters.requests == 1
        reference = tree.HoeffdingTreeClassifier()
        for line in case.lines[700:1500]:
            record = KDDClassificationRecord.parse(line)
            reference.learn_one(record.values, record.targets[0])
        loaded = await case.store.load()
        for line in case.lines[1500:]:
            x = KDDClassificationRecord.parse(line).values
            assert loaded.algorithm.predict_one(x) == reference.predict_one(x)


def river_tree_on(lines: list[str]) -> tree.HoeffdingTreeClassifier:
    model = tree.HoeffdingTreeClassifier()
    for line in lines:
        record = KDDClassificationRecord.parse(line)
        model.learn_one(record.values, record.targets[0])
    return model


async def assert_predicts_like(case: Case, reference: tree.HoeffdingTreeClassifier) -> None:
    loaded = await case.store.load()
    assert loaded is not None and loaded.algorithm is not None
    for line in case.lines[1500:]:
        x = KDDClassificationRecord.parse(line).values
        assert loaded.algorithm.predict_one(x) == reference.predict_one(x)


@pytest.mark.parametrize(
    ("algs", "since", "first_learnt"),
    [
        ("", 700, 700),  # since-change: from the located change
        ("retrain.min-records=200\n", 950, 800),  # too few after it: 200 before the newest
        ("retrain.strategy=reset\n", 700, 1000),  # a fresh model from the current positions
    ],
)
async def test_a_retrain_learns_a_fresh_model_from_the_located_change_then_goes_on(
    tmp_path, data_dir, connections, unique, algs, since, first_learnt
):
    """The alert's request says where the change began (input offset); the fresh model learns
    from there, from Kafka, publishes its first version (a retrain, a checkpoint) once it learnt
    as far as the model it replaces, and keeps learning as records arrive. It predicts exactly
    as River's tree trained on the same records (the outside reference)."""
    async with kdd_case(
        tmp_path, data_dir, connections, unique, 2000, PUBLISH_OFTEN + algs
    ) as case:
        await case.produce(0, 1000)
        await case.predicted_up_to(1000)
        async with running(case.usecase) as trainer:
            await wait_until(lambda: _at(case, 1000))
            await request_training(
                case.redis,
                unique,
                "alert: accuracy",
                "evaluator",
                since=json.dumps({f"{unique}/0": since}),
            )
            if first_learnt < 1000:
                retrained = await wait_until(lambda: _with_mode(case, "retrain"))
                assert retrained["positions"] == {f"{unique}/0": 1000}  # not behind the old one
                assert retrained["records_learned"] == 1000 - first_learnt
                assert retrained["checkpoint"] is True
            await case.produce(1000, 1500)
            await case.predicted_up_to(1500)
            resumed = await wait_until(lambda: _at(case, 1500))
            versions = await case.store.versions()
        strategy = "reset" if "reset" in algs else "since-change"
        (retrain,) = [v for v in versions if v["mode"] == "retrain"]
        assert retrain["reason"] == f"alert: accuracy ({strategy})"
        assert resumed["records_learned"] == 1500 - first_learnt
        assert trainer.counters.requests == 1
        await assert_predicts_like(case, river_tree_on(case.lines[first_learnt:1500]))


async def test_a_second_request_for_the_same_change_is_not_retrained_again(
    tmp_path, data_dir, connections, unique
):
    """An alert that outlasts its cooldown asks again, for the change it located before: the
    model already learns from there, starting it over would only lose what it learnt since."""
    async with kdd_case(tmp_path, data_dir, connections, unique, 2000, PUBLISH_OFTEN) as case:
        await case.produce(0, 1000)
        await case.predicted_up_to(1000)
        since = json.dumps({f"{unique}/0": 600})
        async with running(case.usecase) as trainer:
            await wait_until(lambda: _at(case, 1000))
            await request_training(case.redis, unique, "alert: accuracy", "evaluator", since=since)
            await wait_until(lambda: _with_mode(case, "retrain"))
            await request_training(case.redis, unique, "alert: accuracy", "evaluator", since=since)
            await wait_until(lambda: _requests_read(trainer, 2))
            await case.produce(1000, 1500)
            await case.predicted_up_to(1500)
            resumed = await wait_until(lambda: _at(case, 1500))
            versions = await case.store.versions()
        assert [v["mode"] for v in versions].count("retrain") == 1
        assert resumed["records_learned"] == 900
        await assert_predicts_like(case, river_tree_on(case.lines[600:1500]))


async def _requests_read(trainer: Trainer, count: int) -> bool:
    return trainer.counters.requests >= count


async def test_a_batch_model_refits_on_the_stored_records_from_the_located_change(
    tmp_path, data_dir, connections, unique
):
    algs = "training.interval=-1\ntraining.maxdata=-1\nalgorithm.max_depth=4\n"
    async with kdd_case(tmp_path, data_dir, connections, unique, 1000, algs) as case:
        (case.folder / "algs.props").write_text(
            f"algorithm=sklearn.tree.DecisionTreeClassifier\n{algs}"
        )
        usecase = load_usecase(case.folder, case.usecase.connections)
        await case.store_records(0, 1000)
        await case.predicted_up_to(1000)
        since = json.dumps({f"{unique}/0": 640})
        await request_training(case.redis, unique, "alert: accuracy", "evaluator", since=since)
        async with running(usecase):
            retrained = await wait_until(lambda: _with_mode(case, "retrain"))
        assert retrained["records_learned"] == 360
        assert retrained["reason"] == "alert: accuracy (since-change)"


async def _with_mode(case: Case, mode: str) -> dict[str, Any] | None:
    meta = await case.latest()
    return meta if meta and meta["mode"] == mode else None


async def test_a_checkpoint_signed_with_another_secret_is_refused_and_replaced(
    tmp_path, data_dir, connections, unique
):
    async with kdd_case(tmp_path, data_dir, connections, unique, 500, PUBLISH_OFTEN) as case:
        foreign = ModelStore(case.redis, unique, b"another secret")
        await foreign.publish(river_algorithm(), mode="stream", records_learned=999)
        await case.produce(0, 300)
        await case.predicted_up_to(300)
        async with running(case.usecase):
            fresh = await wait_until(lambda: _at(case, 300))
        assert fresh["version"] >= 2 and fresh["records_learned"] == 300  # not 999 + 300
        assert (await case.store.load()).algorithm is not None  # its own bytes pass the check


def river_algorithm():
    from shared.algorithms.builtin import hoeffding_tree

    return hoeffding_tree({}, "test")


async def test_a_stop_during_a_long_retrain_abandons_it_and_publishes_nothing(
    tmp_path, data_dir, connections, unique
):
    """SIGTERM must not wait for a long refit (containers get 40 s, `streamer run` 30 s): a
    retrain on every stored record (training.maxdata=-1) is abandoned between two pages or
    slices, and nothing is published."""
    rows = 40_000
    algs = "training.maxdata=-1\n"
    async with kdd_case(tmp_path, data_dir, connections, unique, rows, algs) as case:
        for first in range(0, rows, 10_000):
            await case.store_records(first, first + 10_000)
        await request_training(case.redis, unique, "alert: accuracy", by="test")
        stop = asyncio.Event()
        trainer = Trainer(case.usecase, stop)
        task = asyncio.create_task(trainer.run())
        await wait_until(lambda: _refitting(trainer))
        stop.set()
        stopped_at = asyncio.get_running_loop().time()
        counters = await asyncio.wait_for(task, 30)
        assert asyncio.get_running_loop().time() - stopped_at < 5
        assert counters.trainings == 0
        assert await case.store.latest_version() is None  # nothing published


async def _refitting(trainer: Trainer) -> bool:
    return trainer.training


async def test_one_trainer_learns_while_a_second_stands_by_and_takes_over_when_it_stops(
    tmp_path, data_dir, connections, unique
):
    async with kdd_case(tmp_path, data_dir, connections, unique, 1000, PUBLISH_OFTEN) as case:
        await case.produce(0, 500)
        await case.predicted_up_to(500)
        stops = [asyncio.Event(), asyncio.Event()]
        trainers = [Trainer(case.usecase, stop) for stop in stops]
        tasks = [asyncio.create_task(trainer.run()) for trainer in trainers]
        try:
            await wait_until(lambda: _at(case, 500))
            assert sorted(t.counters.standby for t in trainers) == [0, 1]
            active = 0 if trainers[0].counters.standby == 0 else 1
            stops[active].set()
            await asyncio.wait_for(tasks[active], 30)
            await case.produce(500, 800)
            await case.predicted_up_to(800)
            taken_over = await wait_until(lambda: _at(case, 800))
            assert trainers[1 - active].counters.standby == 0
        finally:
            for stop in stops:
                stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        assert taken_over["records_learned"] == 800


@pytest.fixture(autouse=True)
def _short_lease(monkeypatch):
    """Standbys look for the lease every RENEW_S: keep the take-over test quick."""
    monkeypatch.setattr("services.trainer.service.RENEW_S", 0.5)
