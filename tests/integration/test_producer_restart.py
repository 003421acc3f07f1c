"""A restarted producer, on the real Kafka: after a SIGKILL in the middle of a replay, after a
graceful stop, or with a second producer of the same source, every line ends up in every topic
exactly once; `--from-start` replays on purpose; a changed file or topics that disagree stop it
with a message naming the file and `--from-start`.

Topics are read with read_committed (as the launcher and trainer read them), to their end
offsets, counting every record-id: a duplicate would show as a count of 2.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.producer.replay import ProducerError
from services.producer.service import prepare, produce_all
from shared.clients.kafka import (
    ensure_topics,
    make_consumer,
    make_producer,
    partitions_of,
    send,
    start_client,
)
from shared.config import ConnectionSettings, load_usecase
from tests.integration.test_producer import (
    REPO,
    make_usecase,
    read_topic,
    record_ids,
    subprocess_env,
    write_data,
)

KILLS = 5  # at most: until one SIGKILL lands while a transaction is open


async def start_producer(folder: Path, bootstrap: str, *options: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "produce",
        *options,
        str(folder),
        cwd=REPO,
        env=subprocess_env(bootstrap),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def run_producer(folder: Path, bootstrap: str, *options: str) -> dict[str, Any]:
    """`streamer produce` to its end; its summary log line."""
    process = await start_producer(folder, bootstrap, *options)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 120)
    assert process.returncode == 0, stderr.decode()
    logs = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    [summary] = [entry for entry in logs if "records_sent" in entry]
    return summary


async def partitions(bootstrap: str, topic: str) -> list[TopicPartition]:
    """The topic's partitions; none while it does not exist."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await start_client(admin, bootstrap)
    try:
        numbers = (await partitions_of(admin, [topic])).get(topic, [])
    finally:
        await admin.close()
    return [TopicPartition(topic, number) for number in numbers]


async def offsets(bootstrap: str, topic: str) -> tuple[dict[int, int], dict[int, int]]:
    """Per partition: the end offset (high watermark) and the last stable offset, which stays
    below it while a transaction is open."""
    tps = await partitions(bootstrap, topic)
    ends: list[dict[int, int]] = []
    for isolation in ("read_uncommitted", "read_committed"):
        consumer = make_consumer(bootstrap, None, isolation_level=isolation)
        await start_client(consumer, bootstrap)
        try:
            found = await consumer.end_offsets(tps)
            ends.append({tp.partition: offset for tp, offset in found.items()})
        finally:
            await consumer.stop()
    return ends[0], ends[1]


async def wait_for_records(
    bootstrap: str, topic: str, more_than: int, in_transaction: bool = False
) -> None:
    """Until the (existing) topic's partitions hold more than `more_than` offsets (records
    written, committed or not) and, with `in_transaction`, a transaction is open with records
    written: a kill right then most likely lands inside it."""
    tps = await partitions(bootstrap, topic)
    written = make_consumer(bootstrap, None, isolation_level="read_uncommitted")
    committed = make_consumer(bootstrap, None, isolation_level="read_committed")
    await start_client(written, bootstrap)
    await start_client(committed, bootstrap)
    try:
        async with asyncio.timeout(60):
            while True:
                high = await written.end_offsets(tps)
                stable = await committed.end_offsets(tps) if in_transaction else high
                if sum(high.values()) > more_than and (stable != high or not in_transaction):
                    return
                await asyncio.sleep(0.01)  # polling the broker: no event to wait on
    finally:
        await written.stop()
        await committed.stop()


async def committed_count(bootstrap: str, topic: str) -> int:
    """Committed records in the topic now (read to its last stable offsets)."""
    _, stable = await offsets(bootstrap, topic)
    consumer = make_consumer(bootstrap, None, isolation_level="read_committed")
    await start_client(consumer, bootstrap)
    tps = [TopicPartition(topic, p) for p in stable]
    count = 0
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        async with asyncio.timeout(30):
            for tp in tps:
                while await consumer.position(tp) < stable[tp.partition]:
                    batch = await consumer.getmany(tp, timeout_ms=200, max_records=5000)
                    count += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return count


def assert_each_line_once(records: list[Any], rows: list[tuple[int, bytes]], source: str) -> None:
    counts = record_ids(records)
    duplicated = {record_id: n for record_id, n in counts.items() if n > 1}
    assert not duplicated, (
        f"{len(duplicated)} lines sent more than once, e.g. {list(duplicated)[:5]}"
    )
    expected = {f"{source}:{number}" for number, _ in rows}
    missing, extra = expected - set(counts), set(counts) - expected
    assert not missing, f"{len(missing)} lines missing, e.g. {sorted(missing)[:5]}"
    assert not extra, f"{len(extra)} unexpected records, e.g. {sorted(extra)[:5]}"


MODES = {
    # Large blocks without a pause, in small batches (one produce request at a time per
    # partition): most of the time a transaction is open with records written, so a kill
    # most likely lands there
    "BLOCK": {
        "producerType": "BLOCK",
        "recordsPerBlock": 5000,
        "producerTimeInterval": 0,
        "batch.size": 16384,
    },
    "FAST": {"producerType": "FAST"},
}
LINES = {"BLOCK": 200_000, "FAST": 400_000}
KILL_AFTER = {"BLOCK": 7_000, "FAST": 50_000}  # records written by the run: after 1-2 commits


@pytest.mark.parametrize("partitions", [1, 3])
@pytest.mark.parametrize("mode", ["BLOCK", "FAST"])
async def test_a_producer_killed_mid_replay_and_restarted_sends_every_line_once(
    tmp_path, kafka_bootstrap, unique, mode, partitions
):
    count = LINES[mode]
    rows = write_data(tmp_path / "lines.csv.gz", count)
    topics = [f"{unique}-a", f"{unique}-b"]
    folder = make_usecase(
        tmp_path,
        kafka_bootstrap,
        topics,
        tmp_path / "lines.csv.gz",
        containsHeader="true",
        **{"topic.partitions": partitions, **MODES[mode]},
    )
    # created here, as the producer would: a metadata request for a missing topic may create
    # it with the broker's default of 1 partition
    await ensure_topics(kafka_bootstrap, topics, partitions=partitions)
    open_at_a_kill, committed, written = False, 0, 0
    for _ in range(KILLS):
        process = await start_producer(folder, kafka_bootstrap)
        await wait_for_records(kafka_bootstrap, topics[1], written + KILL_AFTER[mode], True)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        high, stable = await offsets(kafka_bootstrap, topics[1])
        written = sum(high.values())
        open_at_a_kill = open_at_a_kill or stable != high
        committed = await committed_count(kafka_bootstrap, topics[1])
        assert committed < count, "the kill came after the end of the replay"
        if open_at_a_kill and committed > 0:
            break
    assert open_at_a_kill, f"none of {KILLS} SIGKILLs landed inside a transaction"
    assert committed > 0, "nothing was committed before the kills"

    summary = await run_producer(folder, kafka_bootstrap)
    assert summary["outcome"] == "end of file"
    for topic in topics:
        records = await read_topic(kafka_bootstrap, topic, count)
        assert_each_line_once(records, rows, "lines")
        assert len({r.partition for r in records}) == partitions


async def test_a_graceful_stop_then_a_restart_continues_and_from_start_replays(
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
        producerTimeInterval=100,  # 6 s for the whole file: stopped long before
        **{"topic.partitions": 3},
    )
    await ensure_topics(kafka_bootstrap, [unique], partitions=3)
    process = await start_producer(folder, kafka_bootstrap)
    await wait_for_records(kafka_bootstrap, unique, 20)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 15)
    assert process.returncode == 0, stderr.decode()
    logs = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    [first] = [entry for entry in logs if "records_sent" in entry]
    assert first["outcome"] == "stopped" and 20 <= first["records_sent"] < 300

    second = await run_producer(folder, kafka_bootstrap)
    assert second["resumed_after"] == rows[first["records_sent"] - 1][0]
    assert (second["records_sent"], second["outcome"]) == (
        300 - first["records_sent"],
        "end of file",
    )
    assert_each_line_once(await read_topic(kafka_bootstrap, unique, 300), rows, "slow")

    third = await run_producer(folder, kafka_bootstrap)  # nothing left to send
    assert (third["records_sent"], third["outcome"]) == (0, "end of file")
    assert third["resumed_after"] == rows[-1][0]

    again = await run_producer(folder, kafka_bootstrap, "--from-start")
    assert (again["records_sent"], again["resumed_after"]) == (300, 0)
    counts = record_ids(await read_topic(kafka_bootstrap, unique, 600))
    assert counts == {f"slow:{number}": 2 for number, _ in rows}


async def test_a_second_producer_of_the_same_source_fences_the_first(
    tmp_path, kafka_bootstrap, unique
):
    rows = write_data(tmp_path / "twice.csv", 2_000)  # 20 s: the second starts mid-replay
    folder = make_usecase(
        tmp_path,
        kafka_bootstrap,
        [unique],
        tmp_path / "twice.csv",
        containsHeader="true",
        recordsPerBlock=5,
        producerTimeInterval=50,
    )
    await ensure_topics(kafka_bootstrap, [unique], partitions=2)
    first = await start_producer(folder, kafka_bootstrap)
    await wait_for_records(kafka_bootstrap, unique, 10)
    await run_producer(folder, kafka_bootstrap)  # takes over, from where the first was
    _, stderr = await asyncio.wait_for(first.communicate(), 30)
    assert first.returncode == 1
    assert "another producer of this use case and source started" in stderr.decode()
    assert_each_line_once(await read_topic(kafka_bootstrap, unique, 2_000), rows, "twice")


async def produce_in_process(folder: Path) -> None:
    usecase = load_usecase(folder, ConnectionSettings())
    await produce_all([prepare(usecase)], stop=asyncio.Event(), progress=False)


async def test_a_file_shorter_than_what_the_topic_holds_is_a_clear_error(
    tmp_path, kafka_bootstrap, unique
):
    datafile = tmp_path / "short.csv"
    write_data(datafile, 50)
    folder = make_usecase(tmp_path, kafka_bootstrap, [unique], datafile, containsHeader="true")
    await produce_in_process(folder)
    write_data(datafile, 30)
    with pytest.raises(ProducerError) as error:
        await produce_in_process(folder)
    message = str(error.value)
    assert message.startswith(
        f"uc: {datafile} changed since it was replayed: the file has no line 55"
    )
    assert "`streamer produce --from-start` replays it from the first line" in message


async def test_a_changed_line_under_the_position_is_a_clear_error(
    tmp_path, kafka_bootstrap, unique
):
    datafile = tmp_path / "edited.csv"
    write_data(datafile, 50)
    folder = make_usecase(tmp_path, kafka_bootstrap, [unique], datafile, containsHeader="true")
    await produce_in_process(folder)
    datafile.write_text(datafile.read_text().replace("50,25.0,c2", "50,25.0,c0"))  # line 55
    with pytest.raises(ProducerError, match=r"line 55 differs from the line .* holds for it"):
        await produce_in_process(folder)


async def test_topics_that_end_at_different_lines_are_a_clear_error(
    tmp_path, kafka_bootstrap, unique
):
    datafile = tmp_path / "d.csv"
    write_data(datafile, 20)
    first = make_usecase(tmp_path, kafka_bootstrap, [f"{unique}-a"], datafile, "uc")
    await produce_in_process(first)
    both = make_usecase(tmp_path, kafka_bootstrap, [f"{unique}-a", f"{unique}-b"], datafile, "uc2")
    with pytest.raises(
        ProducerError, match=r"up to line 22, .*-b up to line 0\)\. `streamer produce --from-start`"
    ):
        await produce_in_process(both)


async def test_a_record_of_the_source_without_its_record_id_is_a_clear_error(
    tmp_path, kafka_bootstrap, unique
):
    datafile = tmp_path / "d.csv"
    write_data(datafile, 5)
    folder = make_usecase(tmp_path, kafka_bootstrap, [unique], datafile, **{"topic.partitions": 1})
    await ensure_topics(kafka_bootstrap, [unique], partitions=1)
    producer = make_producer(kafka_bootstrap)
    await start_client(producer, kafka_bootstrap)
    try:
        await send(producer, unique, b"written by hand", key=b"d")
    finally:
        await producer.stop()
    with pytest.raises(ProducerError) as error:
        await produce_in_process(folder)
    assert str(error.value) == (
        f"uc: cannot tell how far {datafile} was replayed: the record at {unique} (partition 0, "
        "offset 0) is keyed 'd' but has no record-id header 'd:<line>'. `streamer produce "
        "--from-start` replays it from the first line (lines the topics hold are sent again)"
    )
