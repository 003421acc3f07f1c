"""The Elasticsearch sink against the real server: templates, idempotent replays, rejected
documents, and outages of the connection path (a TCP proxy that is stopped and restarted)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from urllib.parse import urlsplit

import pytest
from elasticsearch import AsyncElasticsearch

from shared.clients.elastic import connect_elasticsearch
from shared.config import ConnectionSettings
from shared.sinks.documents import INDICES
from shared.sinks.elastic import TEMPLATE_PRIORITY, ElasticSink, ensure_templates
from tests.integration.tcp_proxy import TcpProxy

T0 = 1_735_689_600_000


def metric(n: int, usecase: str = "kdd", **overrides: object) -> dict:
    doc = {
        "@timestamp": T0 + n,
        "usecase": usecase,
        "output_topic": "kdd.out",
        "output_offsets": f"0:{n}-{n}",
        "view": "cumulative",
        "evaluation": n,
        "metric": "accuracy",
        "value": n / 100,
        "defined": True,
        "pairs": n * 10,
    }
    doc.update(overrides)
    return doc


@pytest.fixture
async def elastic(connections: ConnectionSettings):
    client = connect_elasticsearch(connections)
    yield client
    await client.close()


@pytest.fixture
async def prefix(elastic: AsyncElasticsearch, unique: str):
    """A fresh index prefix; its indices and templates are removed afterwards."""
    prefix = f"{unique}-"
    yield prefix
    indices = await elastic.indices.get(index=f"{prefix}*", allow_no_indices=True)
    for name in indices:
        await elastic.indices.delete(index=name)
    for name in INDICES:
        with contextlib.suppress(Exception):
            await elastic.indices.delete_index_template(name=f"{prefix}{name}")


@pytest.fixture
async def proxy(connections: ConnectionSettings):
    address = urlsplit(connections.es_url)
    running = TcpProxy(address.hostname or "127.0.0.1", address.port or 9200)
    await running.start()
    yield running
    await running.stop()


async def count(elastic: AsyncElasticsearch, index: str) -> int:
    await elastic.indices.refresh(index=index)
    return (await elastic.count(index=index))["count"]


def normalised(mapping: dict) -> dict:
    """GET _mapping answers `"dynamic": "false"` for the `false` we send."""
    return {**mapping, "dynamic": str(mapping.get("dynamic")).lower()}


async def test_templates_are_idempotent_and_indices_get_exactly_the_declared_mappings(
    elastic, prefix
):
    first = await ensure_templates(elastic, prefix)
    second = await ensure_templates(elastic, prefix)
    assert first == second == [f"{prefix}{name}" for name in INDICES]

    templates = await elastic.indices.get_index_template(name=f"{prefix}*")
    by_name = {item["name"]: item["index_template"] for item in templates["index_templates"]}
    assert sorted(by_name) == sorted(first)
    for name, spec in INDICES.items():
        template = by_name[f"{prefix}{name}"]
        assert template["index_patterns"] == [f"{prefix}{name}*"]
        assert template["priority"] == TEMPLATE_PRIORITY
        assert template["template"]["mappings"] == spec.mappings()
        assert template["template"]["settings"]["index"] == {
            "number_of_shards": "1",
            "number_of_replicas": "0",
        }

    for name, spec in INDICES.items():  # the first write creates each index from its template
        await elastic.index(
            index=f"{prefix}{name}", id=spec.document_id(spec.example), document=spec.example
        )
    mappings = await elastic.indices.get_mapping(index=f"{prefix}*")
    settings = await elastic.indices.get_settings(index=f"{prefix}*")
    assert sorted(mappings) == sorted(first)
    for name, spec in INDICES.items():
        assert normalised(mappings[f"{prefix}{name}"]["mappings"]) == normalised(spec.mappings())
        index_settings = settings[f"{prefix}{name}"]["settings"]["index"]
        assert (index_settings["number_of_shards"], index_settings["number_of_replicas"]) == (
            "1",
            "0",
        )


async def test_an_undeclared_field_sent_anyway_creates_no_mapping(elastic, prefix):
    await ensure_templates(elastic, prefix)
    doc = {**INDICES["batches"].example, "records per s (avg)": 3}  # what the original did
    await elastic.index(index=f"{prefix}batches", id="x", document=doc, refresh=True)
    mapping = await elastic.indices.get_mapping(index=f"{prefix}batches")
    assert "records per s (avg)" not in mapping[f"{prefix}batches"]["mappings"]["properties"]


async def test_a_replay_overwrites_instead_of_duplicating(connections, elastic, prefix):
    sink = ElasticSink.connect(connections, prefix=prefix, batch_size=7)
    try:
        for _ in range(2):  # the second round is a replay of the same documents
            for n in range(20):
                sink.add("metrics", None, metric(n))
            for name, spec in INDICES.items():
                sink.add(name, None, spec.example)
            assert await sink.flush() is True
        assert sink.stats.indexed == 2 * (20 + len(INDICES))
        assert (sink.stats.failed, sink.stats.dropped, sink.stats.pending) == (0, 0, 0)
        assert await count(elastic, f"{prefix}metrics") == 21
        for name in INDICES:
            if name != "metrics":
                assert await count(elastic, f"{prefix}{name}") == 1

        # a detection is rewritten in place as it progresses
        ongoing = INDICES["detections"].example
        doc_id = sink.add("detections", None, {**ongoing, "stop": 15, "active": False})
        assert await sink.flush() is True
        await elastic.indices.refresh(index=f"{prefix}detections")
        stored = await elastic.get(index=f"{prefix}detections", id=doc_id)
        assert stored["_source"]["stop"] == 15 and stored["_source"]["active"] is False
        assert await count(elastic, f"{prefix}detections") == 1
        found = await elastic.search(
            index=f"{prefix}metrics", query={"range": {"value": {"gte": 0.15}}}, size=0
        )
        assert found["hits"]["total"]["value"] == 5 + 1  # 15..19, and the example's 0.97
    finally:
        await sink.close()


async def test_documents_elasticsearch_rejects_are_counted_not_retried(
    connections, elastic, prefix, caplog
):
    # An index created by hand before the templates existed: its `metric` is a number.
    await elastic.indices.create(
        index=f"{prefix}metrics", mappings={"properties": {"metric": {"type": "long"}}}
    )
    sink = ElasticSink.connect(connections, prefix=prefix)
    try:
        sink.add("metrics", None, metric(1))
        sink.add("metrics", None, metric(2))
        sink.add("batches", None, INDICES["batches"].example)
        with caplog.at_level(logging.ERROR, logger="shared.sinks.elastic"):
            assert await sink.flush() is True
        assert (sink.stats.indexed, sink.stats.failed, sink.stats.pending) == (1, 2, 0)
        assert sink.stats.healthy  # a bad document is not an outage: no backoff
        assert "rejected 2 documents" in caplog.text
        assert "metrics/kdd:kdd.out:0:1-1:cumulative:accuracy: 400" in caplog.text
    finally:
        await sink.close()


async def test_an_outage_is_buffered_within_the_bound_and_flushed_after_recovery(
    connections, elastic, prefix, proxy, caplog
):
    settings = connections.model_copy(update={"es_url": proxy.url})
    sink = ElasticSink.connect(
        settings, prefix=prefix, max_documents=50, batch_size=20, initial_backoff=5.0
    )
    try:
        sink.add("metrics", None, metric(0))
        assert await sink.flush() is True  # templates installed, one document through

        await proxy.stop()
        with caplog.at_level(logging.WARNING, logger="shared.sinks.elastic"):
            for n in range(1, 81):
                sink.add("metrics", None, metric(n))
            started = time.monotonic()
            assert await sink.flush(force=True) is False  # never raises
            assert time.monotonic() - started < 5
        stats = sink.stats
        assert (stats.pending, stats.dropped, stats.indexed) == (50, 30, 1)
        assert stats.consecutive_failures == 1 and not stats.healthy
        assert "ConnectionError" in (stats.last_error or "")
        assert "buffer full: dropping the oldest" in caplog.text
        assert "elasticsearch unavailable, retrying in 5.0 s" in caplog.text

        # Backing off: an unforced flush does not even try.
        assert await sink.flush() is False
        assert sink.stats.consecutive_failures == 1

        await proxy.start()  # same port: the service is back
        assert await sink.flush(force=True) is True
        stats = sink.stats
        assert (stats.pending, stats.dropped, stats.indexed, stats.failed) == (0, 30, 51, 0)
        assert stats.healthy and stats.last_error is None

        assert await count(elastic, f"{prefix}metrics") == 51
        found = await elastic.search(
            index=f"{prefix}metrics", size=100, source=["evaluation"], sort=["evaluation"]
        )
        kept = [hit["_source"]["evaluation"] for hit in found["hits"]["hits"]]
        assert kept == [0, *range(31, 81)]  # the 30 oldest were dropped, not the newest
    finally:
        await sink.close()


async def test_the_background_task_retries_with_backoff_until_elasticsearch_is_back(
    connections, elastic, prefix, proxy
):
    settings = connections.model_copy(update={"es_url": proxy.url})
    sink = ElasticSink.connect(
        settings,
        prefix=prefix,
        batch_size=5,
        flush_interval=0.05,
        initial_backoff=0.1,
        max_backoff=0.4,
    )
    async with sink:
        await proxy.stop()
        for n in range(30):
            sink.add("metrics", None, metric(n))
        await wait_for(lambda: sink.stats.consecutive_failures >= 3, "three failed attempts")
        assert sink.stats.pending == 30 and sink.stats.indexed == 0

        await proxy.start()
        await wait_for(lambda: sink.stats.pending == 0, "the buffer to drain")
        assert sink.stats.indexed == 30 and sink.stats.healthy
    assert await count(elastic, f"{prefix}metrics") == 30


async def test_close_with_elasticsearch_down_returns_and_counts_the_loss(connections, caplog):
    settings = connections.model_copy(update={"es_url": "http://127.0.0.1:1"})
    sink = ElasticSink.connect(settings, close_timeout=3.0)
    await sink.start()
    for n in range(10):
        sink.add("metrics", None, metric(n))
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="shared.sinks.elastic"):
        await sink.close()  # no exception, bounded time
    assert time.monotonic() - started < 5
    assert (sink.stats.pending, sink.stats.dropped, sink.stats.indexed) == (0, 10, 0)
    assert "10 documents could not be written before shutdown" in caplog.text
    await sink.close()  # idempotent


async def wait_for(condition, what: str) -> None:
    try:
        async with asyncio.timeout(15):
            while not condition():  # noqa: ASYNC110 - polling counters, no event to wait on
                await asyncio.sleep(0.02)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_an_index_created_before_a_field_was_declared_gets_it(elastic, prefix):
    spec = INDICES["batches"]
    older = {**spec.mappings(), "properties": dict(spec.mappings()["properties"])}
    del older["properties"]["malformed"]
    await elastic.indices.create(index=f"{prefix}batches", mappings=older)
    await ensure_templates(elastic, prefix)
    mapping = await elastic.indices.get_mapping(index=f"{prefix}batches")
    assert mapping[f"{prefix}batches"]["mappings"]["properties"]["malformed"] == {"type": "long"}
