"""InfluxDB 1.x: line-protocol writes and InfluxQL reads through the TimeSeriesStore interface."""

from __future__ import annotations

import pytest

from shared.clients.influx import AioinfluxStore
from shared.clients.line_protocol import encode_point
from shared.errors import ServiceUnavailableError


@pytest.fixture
async def store(connections, unique):
    store = AioinfluxStore(connections, database=unique)
    await store.ensure_database()
    yield store
    await store.query(f'DROP DATABASE "{unique}"')
    await store.close()


async def test_typed_points_are_written_and_read_back(store):
    base = 1_700_000_000_000_000_000
    lines = [
        encode_point(
            "kdd", {"source": "file a"}, {"f": 0.5 * i, "n": i, "label": "smurf."}, base + i
        )
        for i in range(100)
    ]
    await store.write_lines(lines)
    rows = await store.query('SELECT * FROM "kdd" ORDER BY time ASC')
    assert len(rows) == 100
    assert rows[3]["f"] == 1.5 and rows[3]["n"] == 3 and rows[3]["label"] == "smurf."
    assert rows[3]["source"] == "file a"


async def test_a_replayed_point_overwrites_instead_of_duplicating(store):
    point = encode_point("m", {"source": "s"}, {"v": 1.0}, 1_000)
    await store.write_lines([point, point])
    await store.write_lines([encode_point("m", {"source": "s"}, {"v": 2.0}, 1_000)])
    rows = await store.query('SELECT count("v") AS c, last("v") AS v FROM "m"')
    assert rows[0]["c"] == 1 and rows[0]["v"] == 2.0


async def test_dead_influx_is_named_in_the_error(connections):
    dead = AioinfluxStore(connections.model_copy(update={"influx_url": "http://127.0.0.1:1"}))
    try:
        with pytest.raises(ServiceUnavailableError, match=r"InfluxDB at http://127\.0\.0\.1:1"):
            await dead.check()
    finally:
        await dead.close()
