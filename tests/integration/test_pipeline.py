"""End to end on the real services: producer -> Kafka -> launcher -> InfluxDB/outputs, trainer."""

from __future__ import annotations

import asyncio
import collections
import os
import signal

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from river import metrics, tree

from shared.clients.kafka import ensure_topics, make_consumer, make_producer, send, start_client
from shared.clients.redis import connect_redis
from shared.modelstore import ModelStore
from shared.records import KDDClassificationRecord
from tests.integration.pipeline_helpers import (
    MODEL_SECRET,
    InputPositions,
    collect_outputs,
    kdd_slice,
    make_kdd_usecase,
    read_to_end,
    run_producer,
    service,
    service_env,
)

ROWS = 20_000


def river_predictions_at(path, outputs: list[dict]) -> dict[str, object]:
    """The outside reference: for each output, what River's own Hoeffding tree predicts for its
    record after learning exactly the records its version had learnt (`offset - staleness` of
    the input's offsets, in the file's order). Keyed by record id."""
    records = [KDDClassificationRecord.parse(line) for line in path.read_text().splitlines()]
    positions = InputPositions(outputs)
    model, learnt, expected = tree.HoeffdingTreeClassifier(), 0, {}
    for output in sorted(outputs, key=positions.learnt):
        while learnt < positions.learnt(output):
            record = records[positions.line_of_learnt(learnt)]
            model.learn_one(record.values, record.targets[0])
            learnt += 1
        x = records[positions.line_of(output)].values
        expected[output["record_id"]] = model.predict_one(x) if learnt else None
    return expected


def river_prequential_accuracy(path, warm_up: int) -> float:
    """River's own test-then-train loop on the same rows, scored after the warm-up."""
    model = tree.HoeffdingTreeClassifier()
    accuracy = metrics.Accuracy()
    with open(path) as lines:
        for index, line in enumerate(lines):
            record = KDDClassificationRecord.parse(line)
            prediction = model.predict_one(record.values)
            if index >= warm_up:
                accuracy.update(record.targets[0], prediction)
            model.learn_one(record.values, record.targets[0])
    return accuracy.get()


async def test_every_record_gets_one_prediction_from_a_version_of_the_one_trained_model(
    tmp_path, data_dir, kafka_bootstrap, connections, unique
):
    """Launchers predict, the trainer learns each record once in order: every prediction is
    exactly River's for a tree that learnt the records before the version's position, and
    the staleness each output reports says which records those are."""
    datafile = kdd_slice(data_dir, ROWS, tmp_path / "kdd.csv")
    folder = make_kdd_usecase(tmp_path, unique, datafile)
    env = service_env(unique)
    log = tmp_path / "services.log"
    redis = connect_redis(connections)
    store = ModelStore(redis, unique, MODEL_SECRET.encode())
    try:
        with service("launch", folder, env, log), service("train", folder, env, log):
            await asyncio.to_thread(run_producer, folder, env, log)
            outputs = await read_to_end(kafka_bootstrap, f"{unique}.outputs", ROWS, 180)
            versions = await wait_for_versions(store, learned=ROWS, wait_s=120)
    finally:
        await redis.aclose()
    expected = {f"kdd:{line}" for line in range(1, ROWS + 1)}
    ids = collections.Counter(output["record_id"] for output in outputs)
    missing = expected - set(ids)
    assert not missing, f"{len(missing)} records without output; log: {log.read_text()[-3000:]}"
    assert [rid for rid, count in ids.items() if count > 1] == []
    assert len(versions) >= 2, versions
    assert versions[-1]["records_learned"] == ROWS  # every record learnt once
    assert versions[-1]["positions"] == {f"{unique}/0": ROWS}
    assert [v["version"] for v in versions] == sorted(v["version"] for v in versions)
    assert all(v["snapshot"] for v in versions)  # launchers load inference snapshots

    reference = river_predictions_at(datafile, outputs)
    wrong = [o["record_id"] for o in outputs if o["prediction"] != reference[o["record_id"]]]
    assert wrong == [], f"{len(wrong)} predictions differ from River's, e.g. {wrong[:5]}"
    staleness = [o["staleness"] for o in outputs if o["staleness"] is not None]
    assert max(staleness) <= 2000  # launcher.max.staleness
    # without any version yet, only the first records may be predicted (by no model)
    unversioned = [int(o["id"].rsplit("/", 1)[1]) for o in outputs if o["model_version"] is None]
    assert max(unversioned, default=0) <= 2000


async def wait_for_versions(store: ModelStore, learned: int, wait_s: float) -> list[dict]:
    """Model versions, once the trainer has learned `learned` records (or the wait is over)."""
    deadline = asyncio.get_running_loop().time() + wait_s
    versions = await store.versions()
    while asyncio.get_running_loop().time() < deadline:
        if versions and versions[-1]["records_learned"] >= learned:
            break
        await asyncio.sleep(0.5)
        versions = await store.versions()
    return versions


async def test_a_launcher_killed_mid_stream_leaves_no_record_without_output_nor_any_twice(
    tmp_path, data_dir, kafka_bootstrap, unique
):
    """SIGKILL while provably mid-stream: the group's committed input offset is above 0 and
    below the input's end when the launcher is killed, and still is afterwards (no commit of
    the dead launcher landed later). A second launcher finishes; outputTopic, read
    (read_committed) to its end offsets with every message counted, holds one output per
    record."""
    rows = 8_000
    datafile = kdd_slice(data_dir, rows, tmp_path / "kdd.csv")
    folder = make_kdd_usecase(tmp_path, unique, datafile, extra="max.poll.records=200\n")
    env = service_env(unique)
    log = tmp_path / "services.log"
    expected = {f"kdd:{line}" for line in range(1, rows + 1)}
    await asyncio.to_thread(run_producer, folder, env, log)  # the whole input, committed
    end = await input_end(kafka_bootstrap, unique)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await start_client(admin, kafka_bootstrap)
    try:
        with service("launch", folder, env, log) as launcher:
            async with asyncio.timeout(120):
                while not 0 < (at_kill := await committed(admin, unique)) < end:
                    assert launcher.poll() is None, log.read_text()[-3000:]
                    await asyncio.sleep(0.01)  # polling the broker: no event to wait on
            os.kill(launcher.pid, signal.SIGKILL)
            launcher.wait()
        after_kill = await committed(admin, unique)
        with service("launch", folder, env, log):
            outputs = await collect_outputs(kafka_bootstrap, f"{unique}.outputs", expected, 120)
    finally:
        await admin.close()
    assert 0 < at_kill <= after_kill < end  # killed mid-stream, proven after the fact too
    ids = collections.Counter(output["record_id"] for output in outputs)
    assert expected - set(ids) == set(), log.read_text()[-3000:]
    assert [rid for rid, count in ids.items() if count > 1] == []
    assert len(outputs) == rows


async def committed(admin: AIOKafkaAdminClient, usecase: str) -> int:
    """The launchers' committed offset of the (one-partition) input topic."""
    offsets = await admin.list_consumer_group_offsets(f"streamer-{usecase}")
    return sum(meta.offset for tp, meta in offsets.items() if tp.topic == usecase)


async def input_end(bootstrap: str, topic: str) -> int:
    consumer = make_consumer(bootstrap, None)
    await start_client(consumer, bootstrap)
    try:
        ends = await consumer.end_offsets([TopicPartition(topic, 0)])
    finally:
        await consumer.stop()
    return sum(ends.values())


async def test_malformed_lines_go_to_the_dead_letter_topic_with_their_reason(
    tmp_path, data_dir, kafka_bootstrap, unique
):
    good = kdd_slice(data_dir, 3, tmp_path / "kdd.csv").read_text().splitlines()
    bad = {
        "wrong field count": (b"1,2,3", "expected 42 fields, got 3"),
        "non-numeric": (good[0].replace(",181,", ",12abc,").encode(), "src_bytes: not a number"),
        "empty": (b"", "empty line"),
        "binary garbage": (bytes([0xFF, 0x00, 0xC3, 0x28]) * 64, "not UTF-8 text"),
        "1 MB line": (b"9" * 1_000_000, "expected 42 fields, got 1"),
    }
    folder = make_kdd_usecase(tmp_path, unique, tmp_path / "kdd.csv")
    await ensure_topics(kafka_bootstrap, [unique, f"{unique}.dlq"])
    producer = make_producer(kafka_bootstrap)
    await start_client(producer, kafka_bootstrap)
    try:
        await send(
            producer, unique, good[0].encode(), key=b"kdd", headers=[("record-id", b"kdd:1")]
        )
        for name, (value, _) in bad.items():
            await send(producer, unique, value, key=b"kdd", headers=[("record-id", name.encode())])
        await send(
            producer, unique, good[1].encode(), key=b"kdd", headers=[("record-id", b"kdd:2")]
        )
    finally:
        await producer.stop()

    env = service_env(unique)
    with service("launch", folder, env, tmp_path / "launcher.log"):
        outputs = await collect_outputs(
            kafka_bootstrap, f"{unique}.outputs", {"kdd:1", "kdd:2"}, 60
        )
        dead = await read_topic(kafka_bootstrap, f"{unique}.dlq", len(bad), 60)
    assert {output["record_id"] for output in outputs} == {"kdd:1", "kdd:2"}
    by_name = {dict(m.headers)["record-id"].decode(): m for m in dead}
    assert set(by_name) == set(bad)
    for name, (value, reason) in bad.items():
        message = by_name[name]
        headers = dict(message.headers)
        assert message.value == value, name
        assert headers["error"].decode().startswith(reason), (name, headers["error"])
        assert headers["source-topic"] == unique.encode()
        assert headers["source-partition"] == b"0"
        assert int(headers["source-offset"]) >= 1


async def read_topic(bootstrap: str, topic: str, count: int, wait_s: float) -> list:
    consumer = make_consumer(bootstrap, None, topic, max_partition_fetch_bytes=8 * 1024 * 1024)
    await start_client(consumer, bootstrap)
    messages: list = []
    try:
        async with asyncio.timeout(wait_s):
            while len(messages) < count:
                for batch in (await consumer.getmany(timeout_ms=500)).values():
                    messages.extend(batch)
    finally:
        await consumer.stop()
    return messages
