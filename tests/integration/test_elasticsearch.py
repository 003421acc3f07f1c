"""Elasticsearch: indexing with deterministic ids against the real single-node server."""

from __future__ import annotations

import pytest
from elasticsearch.helpers import async_bulk

from shared.clients.elastic import check_elasticsearch, connect_elasticsearch
from shared.errors import ServiceUnavailableError


@pytest.fixture
async def elastic(connections):
    client = connect_elasticsearch(connections)
    yield client
    await client.close()


async def test_bulk_with_deterministic_ids_does_not_duplicate_on_replay(elastic, unique):
    await elastic.indices.create(
        index=unique,
        mappings={"properties": {"usecase": {"type": "keyword"}, "value": {"type": "double"}}},
    )
    try:
        actions = [
            {"_index": unique, "_id": f"kdd-{i}", "usecase": "kdd", "value": i / 10}
            for i in range(20)
        ]
        for _ in range(2):  # a replay writes the same documents again
            ok, errors = await async_bulk(elastic, actions, refresh="wait_for")
            assert ok == 20 and errors == []
        count = await elastic.count(index=unique, query={"term": {"usecase": "kdd"}})
        assert count["count"] == 20
        found = await elastic.search(index=unique, query={"range": {"value": {"gte": 1.5}}})
        assert found["hits"]["total"]["value"] == 5
    finally:
        await elastic.indices.delete(index=unique)


async def test_dead_elasticsearch_is_named_in_the_error(connections):
    settings = connections.model_copy(update={"es_url": "http://127.0.0.1:1"})
    client = connect_elasticsearch(settings)
    try:
        with pytest.raises(
            ServiceUnavailableError, match=r"Elasticsearch at http://127\.0\.0\.1:1"
        ):
            await check_elasticsearch(client, settings.es_url)
    finally:
        await client.close()
