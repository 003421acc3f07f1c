"""Read from Kafka how far a source was replayed: its last committed record in each partition.

Read with isolation_level=read_committed, after the producer fenced its predecessor (which
settles that predecessor's open transaction), so an aborted or unfinished block never counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.producer.position import PositionError, Tail, line_of, tail_windows
from shared.clients.kafka import MAX_MESSAGE_BYTES, SEND_TIMEOUT_S, make_consumer, start_client
from shared.wire.kafka import RECORD_ID_HEADER

FETCH_RECORDS = 5000


async def committed_tails(
    bootstrap: str, partitions: Mapping[str, Sequence[int]], source: bytes
) -> dict[str, list[Tail]]:
    """Per topic, the last committed record of `source` in each of its `partitions` that has
    one. Raises PositionError naming the topic and partition it could not read, or the record
    whose `record-id` is not `<source>:<line>`."""
    consumer = make_consumer(
        bootstrap,
        None,
        isolation_level="read_committed",
        max_partition_fetch_bytes=MAX_MESSAGE_BYTES,
    )
    await start_client(consumer, bootstrap)
    tails: dict[str, list[Tail]] = {}
    where = f"topics {', '.join(partitions)}"
    try:
        async with asyncio.timeout(SEND_TIMEOUT_S):
            for topic in partitions:
                tails[topic] = []
                for partition in partitions[topic]:
                    where = f"{topic} (partition {partition})"
                    tail = await _partition_tail(consumer, TopicPartition(topic, partition), source)
                    if tail is not None:
                        tails[topic].append(tail)
    except TimeoutError as error:
        raise PositionError(
            f"cannot read the end of {where} within {SEND_TIMEOUT_S:g} s"
        ) from error
    except KafkaError as error:
        raise PositionError(f"cannot read the end of {where}: {error!r}") from error
    finally:
        await consumer.stop()
    return tails


async def _partition_tail(consumer: AIOKafkaConsumer, tp: TopicPartition, source: bytes):
    """The committed record of `source` with the highest line in `tp`, reading back from the
    end in growing windows; None when the partition holds none."""
    consumer.assign([tp])
    begin = (await consumer.beginning_offsets([tp]))[tp]
    end = (await consumer.end_offsets([tp]))[tp]  # read_committed: the last stable offset
    for start, stop in tail_windows(begin, end):
        consumer.seek(tp, start)
        found: Tail | None = None
        while await consumer.position(tp) < stop:
            batch = await consumer.getmany(tp, timeout_ms=500, max_records=FETCH_RECORDS)
            for record in batch.get(tp, ()):
                if record.offset >= stop or record.key != source:
                    continue
                line = line_of(dict(record.headers).get(RECORD_ID_HEADER), source)
                if line is None:
                    raise PositionError(
                        f"the record at {tp.topic} (partition {tp.partition}, offset "
                        f"{record.offset}) is keyed {source.decode()!r} but has no "
                        f"{RECORD_ID_HEADER} header '{source.decode()}:<line>'"
                    )
                if found is None or line > found.line:
                    found = Tail(tp.topic, tp.partition, record.offset, line, record.value)
        if found is not None:
            return found
    return None
