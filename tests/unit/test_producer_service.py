"""The producer's replay loop against a fake Kafka producer (no services), and its checks
before connecting: what is sent, in which order, how it waits, when it stops or fails."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import MessageSizeTooLargeError
from typer.testing import CliRunner

from services.cli import app
from services.producer import replay as replay_module
from services.producer.position import FROM_START, Resume, Tail
from services.producer.progress import Tracker
from services.producer.replay import Plan, ProducerError, ProducerStats, Replay
from services.producer.service import prepare, prepare_all, producer_options
from shared.config import ConnectionSettings, ProducerType, load_usecase
from shared.errors import ServiceUnavailableError

ALGS = "algorithm=HoeffdingTreeClassifier\n"


def make_usecase(root: Path, datafile: str, name: str = "uc", **keys: Any):
    """A use-case folder with the given streaming keys (underscores for dots) and its data."""
    folder = root / name
    folder.mkdir()
    settings = {
        "mainTopic": "in1, in2",
        "outputTopic": "out",
        "problem.type": "Generic",
        "datafile": datafile,
        **{key.replace("_", "."): value for key, value in keys.items()},
    }
    (folder / "streaming.props").write_text("".join(f"{k}={v}\n" for k, v in settings.items()))
    (folder / "algs.props").write_text(ALGS)
    return load_usecase(folder, ConnectionSettings(usecases_dir=root, data_dir=root))


class FakeBatch:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes, bytes, dict[str, bytes]]] = []

    def close(self) -> None:
        pass

    def append(self, *, key: bytes, value: bytes, timestamp: None, headers: list) -> object:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value, dict(headers)))
        return object()


class FakeProducer:
    """Records what it is given; `fail` makes the batches of one topic fail, `hang` never acks."""

    def __init__(self, capacity: int = 4, fail: str | None = None, hang: bool = False) -> None:
        self.capacity = capacity
        self.fail = fail
        self.hang = hang
        self.topics: dict[str, list[tuple[bytes, bytes, dict[str, bytes]]]] = defaultdict(list)
        self.batches = 0
        self.batch_values: dict[str, list[list[bytes]]] = defaultdict(list)
        self.partitions: dict[str, list[int]] = defaultdict(list)  # per batch sent
        self.aborted = 0

        self.transactions: list[list[bytes]] = []  # per committed transaction: its values
        self._open: list[bytes] | None = None

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.capacity)

    async def begin_transaction(self) -> None:
        assert self._open is None, "a transaction is already open"
        self._open = []

    async def commit_transaction(self) -> None:
        assert self._open is not None
        self.transactions.append(self._open)
        self._open = None

    async def abort_transaction(self) -> None:
        self._open = None
        self.aborted += 1

    async def flush(self) -> None:
        pass

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.batches += 1
        self.partitions[topic].append(partition)
        if self.hang:
            return future
        if topic == self.fail:
            future.set_exception(MessageSizeTooLargeError())
        else:
            assert self._open is not None, "sent outside a transaction"
            self._open.extend(value for _, value, _ in batch.records)
            self.topics[topic].extend(batch.records)
            self.batch_values[topic].append([value for _, value, _ in batch.records])
            future.set_result(None)
        return future

    def values(self, topic: str) -> list[bytes]:
        return [value for _, value, _ in self.topics[topic]]


class FakeClockReplay(Replay):
    """Sleeps advance a fake clock instantly; `stop_after` waits, a stop is requested."""

    def __init__(self, *args: Any, stop_after: int | None = None, **kwargs: Any) -> None:
        self.now = 1_000.0
        self.waits: list[float] = []
        self.stop_after = stop_after
        super().__init__(*args, clock=lambda: self.now, **kwargs)

    async def _sleep(self, seconds: float) -> bool:
        if seconds > 0:
            self.waits.append(round(seconds, 6))
            if self.stop_after is not None and len(self.waits) >= self.stop_after:
                self.stop.set()
            self.now += seconds
        return self.stop.is_set()


async def replay(
    usecase, producer: FakeProducer, stop_after: int | None = None, resume: Resume = FROM_START
):
    plan = prepare(usecase)
    plan.resume = resume
    stats = ProducerStats(usecase.name, plan.name, usecase.streaming.producer_type, plan.topics)
    runner = FakeClockReplay(
        plan, producer, asyncio.Event(), stats, Tracker(None, None), stop_after=stop_after
    )
    try:
        await runner.run()
    finally:
        stats.blank_lines = plan.source.blank_lines
        plan.source.close()
    return stats, runner


def write_lines(path: Path, count: int, blank_every: int = 0) -> list[bytes]:
    rows, text = [], []
    for i in range(1, count + 1):
        rows.append(b"%d,v%d" % (i, i))
        text.append(rows[-1])
        if blank_every and i % blank_every == 0:
            text.append(b"")
    path.write_bytes(b"\n".join(text) + b"\n")
    return rows


async def test_block_mode_sends_every_line_to_every_topic_with_key_and_record_id(tmp_path):
    rows = write_lines(tmp_path / "data.csv", 10, blank_every=4)
    usecase = make_usecase(tmp_path, "../data.csv", recordsPerBlock=3, producerTimeInterval=500)
    producer = FakeProducer(capacity=2)
    stats, runner = await replay(usecase, producer)
    for topic in ("in1", "in2"):
        assert producer.values(topic) == rows
        assert {key for key, _, _ in producer.topics[topic]} == {b"data"}
        ids = [headers["record-id"] for _, _, headers in producer.topics[topic]]
        assert ids[:5] == [b"data:1", b"data:2", b"data:3", b"data:4", b"data:6"]
    assert runner.waits == [0.5, 0.5, 0.5]  # 4 blocks, one interval between two
    assert (stats.records_sent, stats.blocks, stats.blank_lines) == (10, 4, 2)
    assert stats.outcome == "end of file"


async def test_max_blocks_stops_the_replay(tmp_path):
    write_lines(tmp_path / "data.csv", 10)
    usecase = make_usecase(tmp_path, "../data.csv", recordsPerBlock=3, maxBlocks=2)
    producer = FakeProducer()
    stats, _ = await replay(usecase, producer)
    assert producer.values("in1") == [b"1,v1", b"2,v2", b"3,v3", b"4,v4", b"5,v5", b"6,v6"]
    assert (stats.records_sent, stats.blocks, stats.outcome) == (6, 2, "maxBlocks reached")


async def test_a_stop_during_a_wait_sends_no_further_block(tmp_path):
    write_lines(tmp_path / "data.csv", 10)
    usecase = make_usecase(tmp_path, "../data.csv", recordsPerBlock=3, producerTimeInterval=50)
    producer = FakeProducer()
    stats, _ = await replay(usecase, producer, stop_after=2)
    assert producer.values("in1") == [b"%d,v%d" % (i, i) for i in range(1, 7)]
    assert (stats.records_sent, stats.outcome) == (6, "stopped")


async def test_block_by_group_never_mixes_groups_and_keeps_the_last_one(tmp_path):
    (tmp_path / "data.csv").write_text("1,a\n1,b\n1,c\n2,d\n3,e\n3,f\n")
    usecase = make_usecase(tmp_path, "../data.csv", producerType="BLOCKBYGROUP", recordsPerBlock=2)
    producer = FakeProducer(capacity=100)
    stats, runner = await replay(usecase, producer)
    assert producer.values("in2") == [b"1,a", b"1,b", b"1,c", b"2,d", b"3,e", b"3,f"]
    blocks = [[b"1,a", b"1,b"], [b"1,c"], [b"2,d"], [b"3,e", b"3,f"]]  # one batch per block
    assert producer.batch_values["in1"] == producer.batch_values["in2"] == blocks
    assert (stats.blocks, stats.records_sent) == (4, 6)
    assert len(runner.waits) == 3


async def test_timestamp_mode_waits_the_scaled_gaps_and_sends_unparsable_lines_at_once(tmp_path):
    (tmp_path / "data.csv").write_text(
        "2024-01-01T00:00:00,a\n2024-01-01T00:00:01,b\n2024-01-01T00:00:01,c\n"
        "yesterday,d\n1704067204000,e\n"
    )
    usecase = make_usecase(
        tmp_path, "../data.csv", producerType="TIMESTAMP", epsilonne=100, scale=2
    )
    producer = FakeProducer()
    stats, runner = await replay(usecase, producer)
    assert [v.split(b",")[1] for v in producer.values("in1")] == [b"a", b"b", b"c", b"d", b"e"]
    # (1000 + 100) / 2, then (0 + 100) / 2, then (3000 + 100) / 2 from the last timed record
    assert runner.waits == [0.55, 0.05, 1.55]
    assert (stats.records_sent, stats.bad_timestamps) == (5, 1)


async def test_fast_mode_sends_everything_in_order_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(replay_module, "FAST_CHUNK", 100)
    rows = write_lines(tmp_path / "data.csv", 2_500)
    usecase = make_usecase(tmp_path, "../data.csv", producerType="FAST")
    producer = FakeProducer(capacity=40)
    stats, runner = await replay(usecase, producer)
    assert producer.values("in1") == rows
    assert producer.values("in2") == rows
    ids = [h["record-id"] for _, _, h in producer.topics["in2"]]
    assert ids == [b"data:%d" % i for i in range(1, 2_501)]
    assert (stats.records_sent, stats.blocks, runner.waits) == (2_500, 25, [])


async def test_each_block_is_one_transaction_holding_it_for_every_topic(tmp_path):
    rows = write_lines(tmp_path / "data.csv", 7)
    usecase = make_usecase(tmp_path, "../data.csv", recordsPerBlock=3)
    producer = FakeProducer(capacity=2)  # a block spans several batches
    await replay(usecase, producer)
    blocks = [rows[0:3], rows[3:6], rows[6:7]]
    assert producer.transactions == [block + block for block in blocks]  # in1, then in2


async def test_fast_mode_commits_groups_of_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(replay_module, "FAST_CHUNK", 10)
    monkeypatch.setattr(replay_module, "FAST_CHUNKS_PER_TRANSACTION", 3)
    rows = write_lines(tmp_path / "data.csv", 75)
    usecase = make_usecase(tmp_path, "../data.csv", producerType="FAST", mainTopic="in")
    producer = FakeProducer(capacity=100)
    stats, _ = await replay(usecase, producer)
    assert producer.transactions == [rows[0:30], rows[30:60], rows[60:75]]
    assert (stats.records_sent, stats.blocks) == (75, 8)


async def test_a_resumed_replay_goes_on_with_the_round_robin_after_the_last_block(tmp_path):
    write_lines(tmp_path / "data.csv", 6)
    usecase = make_usecase(tmp_path, "../data.csv", recordsPerBlock=2)
    producer = FakeProducer()
    resume = Resume(0, Tail("in1", 1, 9, 0, b""), {"in1": 2, "in2": 0})
    await replay(usecase, producer, resume=resume)
    assert producer.partitions == {"in1": [2, 0, 1], "in2": [0, 1, 2]}


async def test_a_refused_block_aborts_its_transaction_and_counts_nothing(tmp_path):
    write_lines(tmp_path / "data.csv", 5)
    usecase = make_usecase(tmp_path, "../data.csv", recordsPerBlock=3)
    producer = FakeProducer(fail="in2")
    with pytest.raises(ProducerError):
        await replay(usecase, producer)
    assert (producer.transactions, producer.aborted) == ([], 1)


async def test_max_blocks_caps_fast_mode_at_max_blocks_times_records_per_block(tmp_path):
    write_lines(tmp_path / "data.csv", 500)
    usecase = make_usecase(
        tmp_path, "../data.csv", producerType="FAST", maxBlocks=3, recordsPerBlock=7
    )
    producer = FakeProducer()
    stats, _ = await replay(usecase, producer)
    assert (len(producer.values("in1")), stats.outcome) == (21, "maxBlocks reached")


async def test_a_refused_batch_names_the_use_case_lines_and_topic_and_counts_nothing(tmp_path):
    write_lines(tmp_path / "data.csv", 5)
    usecase = make_usecase(tmp_path, "../data.csv", recordsPerBlock=5)
    with pytest.raises(ProducerError, match=r"uc: Kafka refused lines 1-4 of .*data\.csv for "):
        await replay(usecase, FakeProducer(fail="in2"))


async def test_a_line_larger_than_the_request_limit_is_refused_before_sending(tmp_path):
    (tmp_path / "data.csv").write_bytes(
        b"a,1\n" + b"x" * (replay_module.MAX_MESSAGE_BYTES + 1) + b"\n"
    )
    usecase = make_usecase(tmp_path, "../data.csv")
    producer = FakeProducer()
    with pytest.raises(ProducerError, match=r"line 2 of .* larger than the producer's limit"):
        await replay(usecase, producer)
    assert producer.batches == 0


async def test_missing_acknowledgements_time_out_with_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(replay_module, "SEND_TIMEOUT_S", 0.05)
    write_lines(tmp_path / "data.csv", 3)
    usecase = make_usecase(tmp_path, "../data.csv")
    with pytest.raises(ServiceUnavailableError, match=r"use case uc.*no acknowledgement within"):
        await replay(usecase, FakeProducer(hang=True))


def test_a_missing_datafile_names_the_use_case_and_the_path(tmp_path):
    usecase = make_usecase(tmp_path, "nowhere/data.csv")
    with pytest.raises(ProducerError) as error:
        prepare(usecase)
    assert str(error.value) == (
        f"uc: cannot read datafile {tmp_path}/uc/nowhere/data.csv: No such file or directory"
    )


def test_every_unreadable_datafile_is_reported_at_once(tmp_path):
    first = make_usecase(tmp_path, "missing.csv", name="one")
    second = make_usecase(tmp_path, ".", name="two")  # a folder, not a file
    folder = tmp_path / "three"
    folder.mkdir()
    (folder / "streaming.props").write_text("mainTopic=t\noutputTopic=o\nproblem.type=Generic\n")
    (folder / "algs.props").write_text(ALGS)
    third = load_usecase(folder, ConnectionSettings())
    with pytest.raises(ProducerError) as error:
        prepare_all([first, second, third])
    lines = str(error.value).splitlines()
    assert lines[0].startswith("one: cannot read datafile ")
    assert lines[1] == f"two: cannot read datafile {tmp_path / 'two'}: Is a directory"
    assert lines[2] == f"three: no datafile in {folder / 'streaming.props'}"


def test_produce_fails_on_a_missing_datafile_before_connecting_to_kafka(tmp_path):
    make_usecase(tmp_path, "gone.csv.gz")
    started = time.monotonic()
    result = CliRunner().invoke(
        app,
        ["produce", str(tmp_path / "uc")],
        env={"STREAMER_KAFKA_BOOTSTRAP": "127.0.0.1:1"},  # a connection attempt would retry
    )
    assert result.exit_code == 1
    assert f"error: uc: cannot read datafile {tmp_path}/uc/gone.csv.gz" in result.stderr
    assert time.monotonic() - started < 3


def test_producer_options_pass_the_tuning_keys_and_give_fast_mode_large_batches(tmp_path):
    (tmp_path / "d.csv").write_text("x\n")
    block = make_usecase(tmp_path, "../d.csv", name="a", linger_ms=20)
    fast = make_usecase(tmp_path, "../d.csv", name="b", producerType="FAST")
    tuned = make_usecase(tmp_path, "../d.csv", name="c", producerType="FAST", batch_size=1000)
    assert producer_options(block.streaming) == {"linger_ms": 20}
    assert producer_options(fast.streaming)["max_batch_size"] == replay_module.FAST_BATCH_BYTES
    assert producer_options(tuned.streaming)["max_batch_size"] == 1000
    assert fast.streaming.producer_type is ProducerType.FAST


def test_the_plan_keys_records_by_the_source_name(tmp_path):
    (tmp_path / "kddcup.data_10_percent.gz").write_bytes(gzip.compress(b"0,tcp,smurf.\n"))
    usecase = make_usecase(tmp_path, "../kddcup.data_10_percent.gz")
    plan: Plan = prepare(usecase)
    plan.source.close()
    assert (plan.name, plan.topics) == ("kddcup.data_10_percent", ("in1", "in2"))


def test_a_broken_records_py_is_reported_for_the_modes_that_read_a_column(tmp_path):
    (tmp_path / "d.csv").write_text("1,a\n")
    usecase = make_usecase(tmp_path, "../d.csv", producerType="BLOCKBYGROUP")
    (usecase.folder / "records.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ProducerError, match=r"uc: cannot load the record class .*boom"):
        prepare(usecase)
    plain = prepare(make_usecase(tmp_path, "../d.csv", name="plain"))  # BLOCK reads no column
    plain.source.close()
    assert plain.column is None


@pytest.mark.parametrize(("flag", "from_start"), [([], False), (["--from-start"], True)])
def test_produce_passes_from_start_to_the_service(tmp_path, monkeypatch, flag, from_start):
    (tmp_path / "d.csv").write_text("x\n")
    make_usecase(tmp_path, "../d.csv")
    calls: list[dict[str, Any]] = []

    async def run(usecases, **options):
        calls.append({"usecases": [u.name for u in usecases], **options})

    monkeypatch.setattr("services.producer.run", run)
    result = CliRunner().invoke(app, ["produce", *flag, str(tmp_path / "uc")])
    assert result.exit_code == 0, result.output
    assert calls == [{"usecases": ["uc"], "from_start": from_start}]
