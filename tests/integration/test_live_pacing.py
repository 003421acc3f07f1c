"""A running producer follows a pacing change made at run time, without a restart."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from shared.clients.redis import connect_redis
from shared.config import load_usecase
from shared.config.live import change_config
from shared.wire.keys import UseCaseKeys
from tests.integration.pipeline_helpers import (
    REPO,
    kdd_slice,
    make_kdd_usecase,
    service_env,
)

ROWS = 1000


async def test_a_faster_pace_set_at_run_time_takes_effect(
    tmp_path, data_dir, kafka_bootstrap, connections, unique
):
    slow = "producerType=BLOCK\nrecordsPerBlock=10\nproducerTimeInterval=1000\n"
    datafile = kdd_slice(data_dir, ROWS, tmp_path / "kdd.csv")
    folder = make_kdd_usecase(tmp_path, unique, datafile, extra=slow)
    (folder / "streaming.props").write_text(
        (folder / "streaming.props").read_text().replace("producerType=FAST\n", "")
    )
    usecase = load_usecase(folder, connections)
    assert usecase.streaming.records_per_block == 10  # 10 records/s: 100 s for the file
    redis = connect_redis(connections)
    started = time.monotonic()
    producer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli",
        "produce",
        str(folder),
        cwd=REPO,
        env=service_env(unique),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        await asyncio.sleep(3)
        await change_config(
            redis, usecase, {"recordsPerBlock": "250", "producerTimeInterval": "100"}, "test"
        )
        code = await asyncio.wait_for(producer.wait(), 30)
    finally:
        if producer.returncode is None:
            producer.kill()
        keys = UseCaseKeys(unique)
        await redis.delete(keys.config_overrides, keys.config_audit)
        await redis.aclose()
    elapsed = time.monotonic() - started
    assert code == 0 and elapsed < 20, elapsed  # unchanged pacing would take ~100 s
    records = await read_all(kafka_bootstrap, unique, ROWS)
    assert records == ROWS


async def read_all(bootstrap: str, topic: str, expected: int) -> int:
    from shared.clients.kafka import make_consumer, start_client

    consumer = make_consumer(bootstrap, None, topic, isolation_level="read_committed")
    await start_client(consumer, bootstrap)
    count = 0
    try:
        async with asyncio.timeout(30):
            while count < expected:
                batch = await consumer.getmany(timeout_ms=500)
                count += sum(len(messages) for messages in batch.values())
    finally:
        await consumer.stop()
    return count
