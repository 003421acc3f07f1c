"""A PATCH through the API changes a RUNNING trainer: started with a 10-minute interval between
the refits of a batch model (classical mode), it publishes a model within seconds once
training.interval is set to 500 ms, without a restart."""

from __future__ import annotations

import asyncio
import time

from shared.clients.influx import AioinfluxStore
from shared.wire.influx import RecordsMeasurement
from tests.integration.pipeline_helpers import kdd_slice, service, service_env
from tests.integration.test_api import AUTH, cleanup, make_usecase, running_api

PICKUP_S = 10.0  # the trainer re-reads the overrides every 2 s, then waits one interval


async def test_patching_training_interval_changes_the_running_trainer(
    tmp_path, data_dir, connections, unique
):
    usecases_dir = tmp_path / "usecases"
    folder = make_usecase(
        usecases_dir,
        unique,
        training_interval_ms=600_000,
        algorithm="sklearn.tree.DecisionTreeClassifier",
    )
    settings = connections.model_copy(update={"influx_db": unique, "usecases_dir": usecases_dir})
    lines = kdd_slice(data_dir, 200, tmp_path / "kdd.csv").read_text().splitlines()
    influx = AioinfluxStore(settings)
    await influx.ensure_database()
    measurement = RecordsMeasurement(unique)
    await influx.write_lines(
        [
            measurement.point(
                line,
                source="kdd",
                topic=unique,
                partition=0,
                offset=index,
                event_time_ms=1000 + index,
                record_id=f"kdd:{index}",
            )
            for index, line in enumerate(lines)
        ]
    )
    # as the launcher does after a batch: these points are complete
    await influx.write_lines([measurement.progress_point(unique, 0, len(lines) - 1)])
    await influx.close()
    log = tmp_path / "trainer.log"
    try:
        async with running_api(settings, unique) as (_, client):
            with service("train", folder, service_env(unique), log):
                await _wait_for_trainer(client, unique, log)
                await asyncio.sleep(2.5)  # it has read the (empty) overrides at least once
                models = (await client.get(f"/usecases/{unique}/models")).json()
                assert models["versions"] == [], "nothing is due for 10 minutes"

                changed_at = time.monotonic()
                response = await client.patch(
                    f"/usecases/{unique}/config", json={"training.interval": 500}, headers=AUTH
                )
                assert response.status_code == 200, response.text
                version = await _wait_for_model(client, unique, log)
                took = time.monotonic() - changed_at
        assert version["reason"] == "interval"
        assert version["records_learned"] == len(lines)
        assert took < PICKUP_S
        assert "configuration changed" in log.read_text()
    finally:
        await cleanup(settings, unique)


async def _wait_for_trainer(client, name: str, log) -> None:
    """Until the trainer's heartbeat names the use case (it has started its loop)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        health = await client.get("/health", params={"required_services": "trainer"})
        if health.status_code == 200:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"the trainer did not start: {log.read_text()}")


async def _wait_for_model(client, name: str, log) -> dict:
    deadline = time.monotonic() + PICKUP_S
    while time.monotonic() < deadline:
        versions = (await client.get(f"/usecases/{name}/models")).json()["versions"]
        if versions:
            return versions[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no model within {PICKUP_S} s of the PATCH: {log.read_text()}")
