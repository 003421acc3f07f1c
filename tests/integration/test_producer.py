"""The producer against the real Kafka: every line arrives once per topic, in order, with its
key and record-id; SIGTERM flushes what was reported; a dead broker fails fast and clearly."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.producer.replay import ProducerError, ProducerStats
from services.producer.service import prepare, produce_all
from shared.clients.kafka import ensure_topics, make_consumer, start_client
from shared.config import ConnectionSettings, load_usecase

REPO = Path(__file__).resolve().parents[2]


def make_usecase(
    root: Path, bootstrap: str, topics: list[str], datafile: Path, name: str = "uc", **keys: Any
) -> Path:
    folder = root / name
    folder.mkdir()
    settings = {
        "bootstrap.servers": bootstrap,
        "mainTopic": ", ".join(topics),
        "outputTopic": f"{topics[0]}.out",
        "problem.type": "Generic",
        "datafile": str(datafile),
        "topic.partitions": 2,
        **keys,
    }
    (folder / "streaming.props").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    (folder / "algs.props").write_text("algorithm=HoeffdingTreeClassifier\n")
    return folder


async def produce(folder: Path) -> ProducerStats:
    usecase = load_usecase(folder, ConnectionSettings())
    [stats] = await produce_all([prepare(usecase)], stop=asyncio.Event(), progress=False)
    return stats


async def read_topic(bootstrap: str, topic: str, expected: int) -> list[Any]:
    """Every committed record of a topic, duplicates included: from the beginning until
    `expected` records arrived, then on to the end offsets of that moment, so extras show.

    Waits for `expected` first: a producer's last commit is acknowledged before the broker
    has marked every partition, and until then read_committed readers do not see it."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await start_client(admin, bootstrap)
    try:
        [described] = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    consumer = make_consumer(bootstrap, None, isolation_level="read_committed")
    await start_client(consumer, bootstrap)
    records: list[Any] = []

    async def take(*tps: TopicPartition) -> None:
        for batch in (await consumer.getmany(*tps, timeout_ms=200, max_records=5000)).values():
            records.extend(batch)

    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        with contextlib.suppress(TimeoutError):  # then fewer: the caller's checks say which
            async with asyncio.timeout(20):
                while len(records) < expected:
                    await take()
        async with asyncio.timeout(20):
            ends = await consumer.end_offsets(partitions)
            for tp in partitions:
                while await consumer.position(tp) < ends[tp]:
                    await take(tp)
        return records
    finally:
        await consumer.stop()


def record_ids(records: list[Any]) -> Counter[str]:
    """How many times each record-id is in `records`."""
    return Counter(dict(r.headers)["record-id"].decode() for r in records)


def line_number(record: Any) -> int:
    return int(dict(record.headers)["record-id"].rsplit(b":", 1)[1])


def check_topic(
    records: list[Any], rows: list[tuple[int, bytes]], source: str, partitions: int = 2
) -> None:
    """Exactly the expected lines, each once, with the source as key and record-ids; each
    partition in file order, and the blocks spread over `partitions` partitions."""
    ids = sorted(dict(r.headers)["record-id"] for r in records)
    assert ids == sorted(f"{source}:{number}".encode() for number, _ in rows)
    in_file_order = sorted(records, key=line_number)
    assert [r.value for r in in_file_order] == [value for _, value in rows]
    assert {r.key for r in records} == {source.encode()}
    used = sorted({r.partition for r in records})
    assert len(used) == partitions, used
    for partition in used:
        numbers = [line_number(r) for r in records if r.partition == partition]  # offset order
        assert numbers == sorted(numbers), f"partition {partition} out of file order"


def write_data(path: Path, count: int, group_size: int = 0) -> list[tuple[int, bytes]]:
    """A header, `count` rows and a blank line every 10 rows; returns (line number, bytes)."""
    text, rows = ["id,value,label"], []
    for i in range(1, count + 1):
        group = (i - 1) // group_size if group_size else i
        text.append(f"{group},{i * 0.5},c{i % 3}")
        rows.append((len(text), text[-1].encode()))
        if i % 10 == 0:
            text.append("")
    data = ("\n".join(text) + "\n").encode()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return rows


async def test_block_mode_delivers_every_line_once_per_topic_in_order(
    tmp_path, kafka_bootstrap, unique
):
    rows = write_data(tmp_path / "sensor.csv", 45)
    topics = [f"{unique}-a", f"{unique}-b"]
    folder = make_usecase(
        tmp_path,
        kafka_bootstrap,
        topics,
        tmp_path / "sensor.csv",
        containsHeader="true",
        recordsPerBlock=10,
        producerTimeInterval=20,
    )
    stats = await produce(folder)
    assert (stats.records_sent, stats.blocks, stats.blank_lines) == (45, 5, 4)
    assert stats.outcome == "end of file"
    for topic in topics:
        check_topic(await read_topic(kafka_bootstrap, topic, len(rows)), rows, "sensor")


async def test_block_by_group_mode_delivers_every_line_including_the_last_group(
    tmp_path, kafka_bootstrap, unique
):
    rows = write_data(tmp_path / "engines.csv", 33, group_size=7)  # 5 groups, the last of 5
    topics = [f"{unique}-a", f"{unique}-b"]
    folder = make_usecase(
        tmp_path,
        kafka_bootstrap,
        topics,
        tmp_path / "engines.csv",
        containsHeader="true",
        producerType="BLOCKBYGROUP",
        recordsPerBlock=4,
        producerTimeInterval=10,
    )
    stats = await produce(folder)
    assert (stats.records_sent, stats.blocks) == (33, 4 * 2 + 2)  # 7 = 4 + 3 per group; 5 = 4 + 1
    for topic in topics:
        check_topic(await read_topic(kafka_bootstrap, topic, len(rows)), rows, "engines")


async def test_fast_mode_delivers_a_gzip_file_once_per_topic_in_order(
    tmp_path, kafka_bootstrap, unique
):
    rows = write_data(tmp_path / "bulk.csv.gz", 20_000)
    topics = [f"{unique}-a", f"{unique}-b"]
    folder = make_usecase(
        tmp_path,
        kafka_bootstrap,
        topics,
        tmp_path / "bulk.csv.gz",
        containsHeader="true",
        producerType="FAST",
    )
    stats = await produce(folder)
    assert (stats.records_sent, stats.blank_lines) == (20_000, 2_000)
    for topic in topics:
        check_topic(await read_topic(kafka_bootstrap, topic, len(rows)), rows, "bulk")


async def test_timestamp_mode_delivers_every_line(tmp_path, kafka_bootstrap, unique):
    lines = [f"2024-01-01T00:00:{second:02d},{second}" for second in range(30)] + ["bad,30"]
    (tmp_path / "clock.csv").write_text("\n".join(lines) + "\n")
    folder = make_usecase(
        tmp_path,
        kafka_bootstrap,
        [unique],
        tmp_path / "clock.csv",
        producerType="TIMESTAMP",
        scale=100,  # 1 s of data every 10 ms
    )
    started = time.monotonic()
    stats = await produce(folder)
    assert 0.25 < time.monotonic() - started < 10  # 29 gaps of 10 ms, loosely
    assert (stats.records_sent, stats.bad_timestamps) == (31, 1)
    rows = [(number, line.encode()) for number, line in enumerate(lines, start=1)]
    check_topic(await read_topic(kafka_bootstrap, unique, len(rows)), rows, "clock")


async def test_a_one_megabyte_line_gets_through(tmp_path, kafka_bootstrap, unique):
    big = b"x" * 1_000_000
    (tmp_path / "big.csv").write_bytes(b"a,1\n" + big + b"\nb,2\n")
    folder = make_usecase(
        tmp_path, kafka_bootstrap, [unique], tmp_path / "big.csv", producerTimeInterval=0
    )
    stats = await produce(folder)
    assert stats.records_sent == 3
    records = sorted(await read_topic(kafka_bootstrap, unique, 3), key=line_number)
    assert [r.value for r in records] == [b"a,1", big, b"b,2"]


async def test_use_cases_run_in_parallel_and_one_failure_stops_them_all(
    tmp_path, kafka_bootstrap, unique
):
    rows = write_data(tmp_path / "a.csv", 20)
    header = {"containsHeader": "true"}
    fast = make_usecase(
        tmp_path, kafka_bootstrap, [f"{unique}-a"], tmp_path / "a.csv", "a", **header
    )
    slow = make_usecase(
        tmp_path,
        kafka_bootstrap,
        [f"{unique}-b"],
        tmp_path / "a.csv",
        "b",
        **header,
        recordsPerBlock=1,
        producerTimeInterval=100,
    )
    (tmp_path / "huge.csv").write_bytes(b"ok,1\n" + b"x" * (9 << 20) + b"\n")
    broken = make_usecase(tmp_path, kafka_bootstrap, [f"{unique}-c"], tmp_path / "huge.csv", "c")
    plans = [prepare(load_usecase(folder, ConnectionSettings())) for folder in (fast, slow)]
    results = await produce_all(plans, stop=asyncio.Event(), progress=False)
    assert [stats.records_sent for stats in results] == [20, 20]
    check_topic(
        await read_topic(kafka_bootstrap, f"{unique}-a", len(rows)), rows, "a", partitions=1
    )

    plans = [prepare(load_usecase(folder, ConnectionSettings())) for folder in (slow, broken)]
    started = time.monotonic()
    with pytest.raises(ProducerError, match=r"^c: Kafka refused line 2 of .*huge\.csv"):
        await produce_all(plans, stop=asyncio.Event(), progress=False)
    assert time.monotonic() - started < 5  # b (2 s of blocks) was cancelled, not waited for


def subprocess_env(bootstrap: str) -> dict[str, str]:
    return {**os.environ, "STREAMER_KAFKA_BOOTSTRAP": bootstrap, "PYTHONUNBUFFERED": "1"}


async def test_sigterm_flushes_and_every_reported_record_is_in_the_topic(
    tmp_path, kafka_bootstrap, unique
):
    rows = write_data(tmp_path / "slow.csv", 300)
    folder = make_usecase(
        tmp_path,
        kafka_bootstrap,
        [unique],
        tmp_path / "slow.csv",
        containsHeader="true",
        recordsPerBlock=5,
        producerTimeInterval=200,  # 12 s for the whole file: we stop it long before
        **{"topic.partitions": 1},
    )
    await ensure_topics(kafka_bootstrap, [unique])
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "produce",
        str(folder),
        cwd=REPO,
        env=subprocess_env(kafka_bootstrap),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap)
    await start_client(consumer, kafka_bootstrap)
    try:
        partition = TopicPartition(unique, 0)
        async with asyncio.timeout(15):
            while (await consumer.end_offsets([partition]))[partition] < 10:  # noqa: ASYNC110
                await asyncio.sleep(0.1)  # polling the broker: no event to wait on
    finally:
        await consumer.stop()
    process.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 15)

    assert process.returncode == 0, stderr.decode()
    logs = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    [summary] = [entry for entry in logs if "records_sent" in entry]
    assert summary["outcome"] == "stopped"
    assert any(entry["msg"].startswith("SIGTERM: stopping") for entry in logs)
    sent = summary["records_sent"]
    assert 10 <= sent < 300
    check_topic(await read_topic(kafka_bootstrap, unique, sent), rows[:sent], "slow", partitions=1)


async def test_a_dead_broker_is_an_outage_ridden_out_until_a_stop_ends_it_with_a_clear_error(
    tmp_path, unique
):
    """A service does not exit because Kafka is away (shared/retry.py): it says so once and
    retries; SIGTERM then ends it at once, non-zero, naming Kafka and what it was doing."""
    (tmp_path / "d.csv").write_text("a,1\n")
    folder = make_usecase(tmp_path, "127.0.0.1:1", [unique], tmp_path / "d.csv")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "produce",
        str(folder),
        cwd=REPO,
        env=subprocess_env("127.0.0.1:1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    async with asyncio.timeout(30):
        while b"Kafka unavailable (creating topics at 127.0.0.1:1)" not in (
            line := await process.stdout.readline()
        ):
            assert line, "the producer ended instead of riding the outage out"
    await asyncio.sleep(2.0)  # several backoffs later: still running, still said once
    assert process.returncode is None
    process.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 20)
    assert process.returncode == 1
    assert b"Kafka unavailable" not in stdout  # said once
    assert (
        "error: uc: Kafka did not answer (creating topics at 127.0.0.1:1; the service is "
        "stopping)" in stderr.decode()
    )
