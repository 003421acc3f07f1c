"""A SIGKILLed evaluator, restarted, ends with exactly the cumulative metrics of an evaluator
that was never interrupted, and of scikit-learn on the same outputs.

The test writes a known set of outputs to a topic itself (three partitions, launcher-like
replays, a few malformed messages), runs two `streamer evaluate` processes on it under two use
cases, kills one of them twice while it is provably mid-stream (its committed offsets are below
the topic's end), restarts it, and compares. Its Elasticsearch `batches` documents must cover
every offset of the topic exactly once: a restart that scored again from the start, or that
replayed the evaluation it was killed in differently, would leave overlapping ones.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import SecretStr
from sklearn.metrics import accuracy_score, f1_score

from services.evaluator.checkpoint import CheckpointStore
from services.evaluator.service import Evaluator
from shared.clients.elastic import connect_elasticsearch
from shared.clients.influx import AioinfluxStore
from shared.clients.kafka import ensure_topics, make_consumer, make_producer, start_client
from shared.clients.redis import connect_redis
from shared.config import load_usecase
from shared.wire.influx import MetricsMeasurement
from shared.wire.kafka import DeadLetter, Output, Timings, dead_letter_topic
from shared.wire.keys import UseCaseKeys
from tests.integration.pipeline_helpers import service, service_env

PARTITIONS = 3
OUTPUTS = 24_000  # unique ones, 8,000 per partition
LABELS = ("normal.", "smurf.", "neptune.", "back.")
T0 = 1_764_000_000_000


def known_outputs(topic: str) -> tuple[list[tuple[int, bytes, bytes]], list[tuple[str, str]], set]:
    """(partition, key, value) to write, in order; the (target, prediction) of each output
    scored once; the (partition, offset) of the malformed messages.

    Like the launcher, input partition p's outputs go to output partition p in input order;
    now and then a block of outputs is written again (a launcher that crashed before its
    commit) and a message is not an output at all."""
    rng = random.Random(20251201)
    messages: list[tuple[int, bytes, bytes]] = []
    pairs: list[tuple[str, str]] = []
    malformed: set[tuple[int, int]] = set()
    offsets = [0] * PARTITIONS
    written: list[list[tuple[bytes, bytes]]] = [[] for _ in range(PARTITIONS)]
    for index in range(OUTPUTS):
        partition, input_offset = index % PARTITIONS, index // PARTITIONS
        accuracy = 0.9 if (index // 3000) % 2 == 0 else 0.6  # drifts, for the detector
        target = rng.choice(LABELS)
        prediction = target if rng.random() < accuracy else rng.choice(LABELS)
        pairs.append((target, prediction))
        output = Output(
            id=f"{topic}.in/{partition}/{input_offset}",
            record_id=f"src:{index + 1}",
            usecase="writer",
            source="src",
            event_time=T0 + index,
            prediction=prediction,
            targets=[target],
            model_version=index // 1000,
            staleness=0,
            timings=Timings(produced=T0 + index, consumed=T0 + index + 3, predicted=T0 + index + 5),
        )
        written[partition].append((output.id.encode(), output.encode()))
        messages.append((partition, *written[partition][-1]))
        offsets[partition] += 1
        if input_offset % 700 == 699:  # a replay of the last 25 outputs of this partition
            for item in written[partition][-25:]:
                messages.append((partition, *item))
                offsets[partition] += 1
        if index % 2500 == 1234:
            messages.append((partition, b"bad", b'{"id": "%d", "prediction": ' % index))
            malformed.add((partition, offsets[partition]))
            offsets[partition] += 1
    return messages, pairs, malformed


async def write(bootstrap: str, topic: str, messages: list[tuple[int, bytes, bytes]]) -> None:
    producer = make_producer(bootstrap)
    await start_client(producer, bootstrap)
    try:
        futures = [
            await producer.send(topic, value, key=key, partition=partition)
            for partition, key, value in messages
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


def write_usecase(root, name: str, topic: str):
    folder = root / name
    folder.mkdir()
    (folder / "streaming.props").write_text(
        f"mainTopic={topic}.in\noutputTopic={topic}\nproblem.type=Generic\n"
        f"topic.partitions={PARTITIONS}\nreadingTimeInterval=100\nmax.poll.records=400\n"
        "visualization=true\nonline.train=true\n"
    )
    (folder / "algs.props").write_text(
        "algorithm=HoeffdingTreeClassifier\nevaluation.metrics=Accuracy,MacroF1\n"
        "evaluation.window=2000\nevaluation.sample=0.01\n"
    )
    (folder / "monitoring.props").write_text(
        "metrics=Accuracy\ndetector=ThresholdDetector\nthreshold.robustness=2\n"
        "threshold.threshold=0.8\nthreshold.threshold.alert-if-greater=false\n"
        "threshold.threshold.abs=false\nalert.cooldown=1\n"
    )
    return folder


async def committed(admin: AIOKafkaAdminClient, group: str, topic: str) -> int:
    offsets = await admin.list_consumer_group_offsets(group)
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == topic and meta.offset > 0)


async def wait_committed(admin, group: str, topic: str, at_least: int, process, wait_s=180) -> int:
    async with asyncio.timeout(wait_s):
        while True:
            assert process.poll() is None, "the evaluator exited"
            done = await committed(admin, group, topic)
            if done >= at_least:
                return done
            await asyncio.sleep(0.02)


async def kill_mid_evaluation(process, redis, checkpoint: str) -> None:
    """SIGKILL as soon as an evaluation is under way (its write-ahead is in Redis)."""
    async with asyncio.timeout(30):
        while not await redis.hexists(checkpoint, "pending"):
            assert process.poll() is None, "the evaluator exited"
    process.send_signal(signal.SIGKILL)
    process.wait(10)


async def batch_documents(connections, usecase: str, total: int) -> list[dict]:
    """The evaluator's `batches` documents, once they cover `total` offsets."""
    client = connect_elasticsearch(connections)
    try:
        async with asyncio.timeout(60):
            while True:
                await client.indices.refresh(index="streamer-batches")
                found = await client.search(
                    index="streamer-batches",
                    query={"term": {"usecase": usecase}},
                    size=10_000,
                )
                docs = [hit["_source"] for hit in found["hits"]["hits"]]
                covered = sum(
                    int(last) - int(first) + 1
                    for doc in docs
                    for part in doc["output_offsets"].split(",")
                    for first, last in [part.split(":")[1].split("-")]
                )
                if covered >= total:
                    return docs
                await asyncio.sleep(0.5)
    finally:
        await client.close()


async def dead_letters(bootstrap: str, topic: str, usecase: str, count: int) -> list[DeadLetter]:
    consumer = make_consumer(bootstrap, None, topic, isolation_level="read_committed")
    await start_client(consumer, bootstrap)
    letters: list[DeadLetter] = []
    try:
        async with asyncio.timeout(30):
            while sum(letter.usecase == usecase for letter in letters) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for part in batch.values():
                    letters += [DeadLetter.from_headers(m.headers) for m in part]
    finally:
        await consumer.stop()
    return [letter for letter in letters if letter.usecase == usecase]


async def test_a_killed_evaluator_ends_with_exactly_the_metrics_of_an_undisturbed_one(
    tmp_path, kafka_bootstrap, connections, unique
):
    topic = f"{unique}.out"
    await ensure_topics(kafka_bootstrap, [topic], partitions=PARTITIONS)
    messages, pairs, malformed = known_outputs(topic)
    await write(kafka_bootstrap, topic, messages)
    end = len(messages)
    calm = write_usecase(tmp_path, f"{unique}a", topic)
    killed = write_usecase(tmp_path, f"{unique}b", topic)
    env = service_env(unique)
    log = tmp_path / "services.log"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await start_client(admin, kafka_bootstrap)
    group = f"streamer-evaluator-{killed.name}"
    redis = connect_redis(connections)
    checkpoint = UseCaseKeys(killed.name).evaluator_checkpoint
    kills, replays = [], 0
    try:
        with service("evaluate", calm, env, log, cwd=tmp_path) as undisturbed:
            for fraction in (0.25, 0.6):
                with service("evaluate", killed, env, log, cwd=tmp_path) as victim:
                    await wait_committed(admin, group, topic, int(end * fraction), victim)
                    await kill_mid_evaluation(victim, redis, checkpoint)
                    kills.append(await committed(admin, group, topic))
                    replays += await redis.hexists(checkpoint, "pending")
            with service("evaluate", killed, env, log, cwd=tmp_path) as survivor:
                await wait_committed(admin, group, topic, end, survivor)
            calm_group = f"streamer-evaluator-{calm.name}"
            await wait_committed(admin, calm_group, topic, end, undisturbed)
            assert undisturbed.poll() is None
    finally:
        await admin.close()
        await redis.aclose()
    # killed twice, each time provably mid-stream: what it had committed was below the end
    assert len(kills) == 2 and all(0 < done < end for done in kills), (kills, end)
    assert kills[0] < kills[1]

    influx = AioinfluxStore(connections.model_copy(update={"influx_db": unique}))
    try:
        finals = {}
        for folder in (calm, killed):
            latest = await MetricsMeasurement(folder.name).latest(influx, "cumulative")
            finals[folder.name] = {point.metric: point.value for point in latest}
    finally:
        await influx.close()
    targets, predictions = zip(*pairs, strict=True)
    expected_accuracy = accuracy_score(targets, predictions)
    assert finals[killed.name]["accuracy"] == finals[calm.name]["accuracy"]  # exactly
    assert abs(finals[killed.name]["accuracy"] - expected_accuracy) < 1e-12
    # River sums MacroF1's per-class scores in the order of a set of labels, which depends on
    # the process's hash seed: two processes may differ in the last bit, not more
    expected_f1 = f1_score(targets, predictions, average="macro")
    for folder in (calm, killed):
        assert abs(finals[folder.name]["macro_f1"] - expected_f1) < 1e-12

    # every offset scored exactly once, by evaluations numbered 1, 2, 3... across the kills
    docs = await batch_documents(connections, killed.name, end)
    covered: dict[int, list[tuple[int, int]]] = {}
    for doc in docs:
        for part in doc["output_offsets"].split(","):
            partition, bounds = part.split(":")
            first, last = map(int, bounds.split("-"))
            covered.setdefault(int(partition), []).append((first, last))
    per_partition = {p: sum(1 for m in messages if m[0] == p) for p in range(PARTITIONS)}
    for partition, ranges in covered.items():
        ranges.sort()
        assert ranges[0][0] == 0 and ranges[-1][1] == per_partition[partition] - 1
        for (_, last), (first, _) in itertools.pairwise(ranges):
            assert first == last + 1, f"partition {partition}: {last} then {first}"
    evaluations = sorted(doc["evaluation"] for doc in docs)
    assert evaluations == list(range(1, len(docs) + 1))
    assert sum(doc["records"] for doc in docs) == OUTPUTS
    assert sum(doc["malformed"] for doc in docs) == len(malformed)
    assert sum(doc["duplicates"] for doc in docs) == end - OUTPUTS - len(malformed)

    # each malformed message has its dead letter, with the reason
    letters = await dead_letters(
        kafka_bootstrap, dead_letter_topic(topic), killed.name, len(malformed)
    )
    assert {(letter.source_partition, letter.source_offset) for letter in letters} == malformed
    assert all(letter.error.startswith("not an output: ") for letter in letters)

    text = log.read_text()
    assert text.count("resumed from the checkpoint") == 2, text[-3000:]
    # at least one kill hit an evaluation between its write-ahead and its checkpoint
    assert replays >= 1 and text.count('"replaying": true') == replays

    redis = connect_redis(connections)
    try:
        keys = [UseCaseKeys(folder.name) for folder in (calm, killed)]
        assert all([await redis.exists(k.evaluator_checkpoint) for k in keys])
        await redis.delete(
            *(name for k in keys for name in (k.evaluator_checkpoint, k.train_requests))
        )
    finally:
        await redis.aclose()


class Crash(Exception):
    """Stands for a SIGKILL between an evaluation's writes and its checkpoint."""


async def test_an_evaluation_cut_short_after_its_writes_is_replayed_identically(
    tmp_path, kafka_bootstrap, connections, unique, monkeypatch
):
    """The worst moment to die: InfluxDB and Elasticsearch have the evaluation, the
    checkpoint does not. The restarted evaluator must write the very same points and
    documents again (same offsets, number and time), not a second, different version."""
    topic = f"{unique}.out"
    await ensure_topics(kafka_bootstrap, [topic], partitions=PARTITIONS)
    messages, _, _ = known_outputs(topic)
    messages = messages[:4000]
    await write(kafka_bootstrap, topic, messages)
    folder = write_usecase(tmp_path, unique, topic)
    settings = connections.model_copy(
        update={"influx_db": unique, "model_secret": SecretStr("restart-test")}
    )
    usecase = load_usecase(folder, settings)
    real_save = CheckpointStore.save

    async def save_then_die_at_3(self, evaluation, sealed, request):
        if evaluation == 3:
            raise Crash
        await real_save(self, evaluation, sealed, request)

    monkeypatch.setattr(CheckpointStore, "save", save_then_die_at_3)
    with pytest.raises(Crash):
        await Evaluator(usecase, asyncio.Event(), tmp_path / "logs").run()
    monkeypatch.setattr(CheckpointStore, "save", real_save)
    before = {doc["evaluation"]: doc for doc in await batch_documents(connections, unique, 1)}
    assert sorted(before) == [1, 2, 3]

    stop = asyncio.Event()
    evaluator = Evaluator(usecase, stop, tmp_path / "logs")
    running = asyncio.create_task(evaluator.run())
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await start_client(admin, kafka_bootstrap)
    try:
        async with asyncio.timeout(120):
            while await committed(admin, f"streamer-evaluator-{unique}", topic) < len(messages):
                assert not running.done(), running
                await asyncio.sleep(0.05)
    finally:
        stop.set()
        await running
        await admin.close()
    docs = await batch_documents(connections, unique, len(messages))
    after = {doc["evaluation"]: doc for doc in docs}
    assert len(after) == len(docs)  # one document per evaluation
    assert after[3] == before[3]  # same offsets, same time: the same document
    influx = AioinfluxStore(settings)
    try:
        rows = await influx.query(
            f'SELECT "value", "evaluation" FROM "{unique}_metrics" '
            "WHERE \"view\"='cumulative' AND \"metric\"='accuracy'"
        )
    finally:
        await influx.close()
    assert sorted(row["evaluation"] for row in rows) == sorted(after)  # one point each
