"""Kafka: our producer and consumer settings against the real KRaft broker."""

from __future__ import annotations

import asyncio

import pytest

from shared import retry
from shared.clients.kafka import ensure_topics, make_consumer, make_producer, send, start_client
from shared.errors import ServiceUnavailableError


async def consume(bootstrap: str, group: str, topic: str, count: int, wait_s: float = 30.0):
    consumer = make_consumer(bootstrap, group, topic)
    await start_client(consumer, bootstrap)
    received = []
    try:
        async with asyncio.timeout(wait_s):
            while len(received) < count:
                batch = await consumer.getmany(timeout_ms=500)
                for messages in batch.values():
                    received.extend(messages)
        await consumer.commit()
        return received
    finally:
        await consumer.stop()


async def test_produced_records_are_consumed_in_order_with_keys_and_headers(
    kafka_bootstrap, unique
):
    await ensure_topics(kafka_bootstrap, [unique], partitions=2)
    producer = make_producer(kafka_bootstrap)
    await start_client(producer, kafka_bootstrap)
    try:
        for index in range(50):
            metadata = await send(
                producer,
                unique,
                f"line {index}".encode(),
                key=b"source",
                headers=[("record-id", str(index).encode())],
            )
            assert metadata.topic == unique
    finally:
        await producer.stop()

    received = await consume(kafka_bootstrap, f"{unique}-group", unique, 50)
    assert [m.value for m in received] == [f"line {i}".encode() for i in range(50)]
    assert {m.key for m in received} == {b"source"}
    assert [dict(m.headers)["record-id"] for m in received] == [str(i).encode() for i in range(50)]
    assert len({m.partition for m in received}) == 1  # one key, one partition: order kept


async def test_committed_offsets_are_not_delivered_again(kafka_bootstrap, unique):
    await ensure_topics(kafka_bootstrap, [unique])
    producer = make_producer(kafka_bootstrap)
    await start_client(producer, kafka_bootstrap)
    try:
        for index in range(10):
            await send(producer, unique, str(index).encode())
    finally:
        await producer.stop()
    first = await consume(kafka_bootstrap, f"{unique}-g", unique, 10)
    assert len(first) == 10

    producer = make_producer(kafka_bootstrap)
    await start_client(producer, kafka_bootstrap)
    try:
        await send(producer, unique, b"late")
    finally:
        await producer.stop()
    second = await consume(kafka_bootstrap, f"{unique}-g", unique, 1)
    assert [m.value for m in second] == [b"late"]


async def test_ensure_topics_is_idempotent(kafka_bootstrap, unique):
    await ensure_topics(kafka_bootstrap, [unique, unique], partitions=3)
    await ensure_topics(kafka_bootstrap, [unique], partitions=3)
    producer = make_producer(kafka_bootstrap)
    await start_client(producer, kafka_bootstrap)
    try:
        assert len(await producer.partitions_for(unique)) == 3
    finally:
        await producer.stop()


async def test_unreachable_broker_is_a_clear_error_not_a_hang(monkeypatch):
    """Outside a running service (which retries until stopped), a call gives up."""
    monkeypatch.setattr(retry, "GIVE_UP_S", 2.0)
    dead = "127.0.0.1:1"
    producer = make_producer(dead)
    said = r"Kafka did not answer \(connecting to 127\.0\.0\.1:1; gave up after 2 s\)"
    with pytest.raises(ServiceUnavailableError, match=said):
        await start_client(producer, dead)
