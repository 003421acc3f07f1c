"""The kdd-cup-99 use case with the evaluator: metrics, alerts and model versions reach
Elasticsearch, InfluxDB and the original's log files."""

from __future__ import annotations

import asyncio
import shutil

from shared.clients.elastic import connect_elasticsearch
from shared.clients.influx import AioinfluxStore
from shared.clients.redis import connect_redis
from shared.heartbeat import read_heartbeats
from tests.integration.pipeline_helpers import (
    REPO,
    collect_outputs,
    kdd_slice,
    run_producer,
    service,
    service_env,
)

ROWS = 6000


async def test_the_kdd_run_leaves_metrics_alerts_models_and_log_files(
    tmp_path, data_dir, kafka_bootstrap, connections, unique
):
    datafile = kdd_slice(data_dir, ROWS, tmp_path / "kdd.csv")
    folder = tmp_path / unique
    shutil.copytree(REPO / "usecases" / "kdd-cup-99", folder)
    streaming = (folder / "streaming.props").read_text()
    streaming = streaming.replace("mainTopic=kdd-cup-99", f"mainTopic={unique}")
    streaming = streaming.replace("outputTopic=kdd-cup-99.outputs", f"outputTopic={unique}.out")
    streaming = streaming.replace(
        "datafile=${STREAMER_DATA_DIR}/kdd-cup-99/kddcup.data_10_percent.gz", f"datafile={datafile}"
    )
    (folder / "streaming.props").write_text(streaming + "recordsPerBlock=500\n")
    algs = (
        (folder / "algs.props")
        .read_text()
        .replace("training.interval=5000", "training.interval=1000")
    )
    (folder / "algs.props").write_text(algs)
    # a threshold no batch of this slice reaches: the alert path runs for sure
    monitoring = (folder / "monitoring.props").read_text()
    (folder / "monitoring.props").write_text(
        monitoring.replace("threshold.threshold=0.9", "threshold.threshold=1.01").replace(
            "threshold.robustness=3", "threshold.robustness=1"
        )
    )
    env = service_env(unique)
    log = tmp_path / "services.log"
    expected = {f"kdd:{line}" for line in range(1, ROWS + 1)}
    workdir = tmp_path / "run"
    workdir.mkdir()
    with (
        service("launch", folder, env, log),
        service("train", folder, env, log),
        service("evaluate", folder, env, log, cwd=workdir),
    ):
        await asyncio.to_thread(run_producer, folder, env, log)
        outputs = await collect_outputs(kafka_bootstrap, f"{unique}.out", expected, 120)
        assert expected <= {o["record_id"] for o in outputs}, log.read_text()[-3000:]
        counts = await wait_for_documents(connections, unique, 60)
        launcher = await launcher_heartbeat(connections, unique)
        # the alert's retrain publishes a version the infoLog names (streaming versions, one a
        # second, are not logged)
        await wait_for_text(workdir / "logs" / unique / "infoLog", "model version", 60)
    assert counts["metrics"] > 0 and counts["batches"] > 0, counts
    assert counts["alerts"] > 0 and counts["detections"] > 0, counts
    assert counts["models"] > 0, counts
    # the launcher's heartbeat counts what it did, and nothing is left behind in its partitions
    assert launcher["counters"][unique]["outputs"] == ROWS
    assert launcher["counters"][unique]["lag"] == 0

    logs = workdir / "logs" / unique
    metrics_log = (logs / "metricsLog").read_text()
    assert "[cumulative] accuracy = " in metrics_log and " INFO [" in metrics_log
    info_log = (logs / "infoLog").read_text()
    assert "ALERT started" in info_log and "retrain requested" in info_log
    assert "model version" in info_log
    for name in ("errorLog", "displayLogTrain", "displayLogTest"):
        assert (logs / name).exists()

    influx = AioinfluxStore(connections.model_copy(update={"influx_db": unique}))
    try:
        rows = await influx.query(
            f'SELECT last("value") FROM "{unique}_metrics" WHERE "view"=\'cumulative\' '
            "AND \"metric\"='accuracy'"
        )
    finally:
        await influx.close()
    assert 0.9 < rows[0]["last"] <= 1.0


async def launcher_heartbeat(connections, usecase: str) -> dict:
    """The launcher's heartbeat once it reports every record (it beats every 3 s)."""
    redis = connect_redis(connections)
    try:
        async with asyncio.timeout(15):
            while True:
                for beat in await read_heartbeats(redis):
                    done = beat.counters.get(usecase, {}).get("outputs", 0) >= ROWS
                    if beat.service == "launcher" and usecase in beat.usecases and done:
                        return beat.model_dump()
                await asyncio.sleep(0.5)
    finally:
        await redis.aclose()


async def wait_for_documents(connections, usecase: str, wait_s: float) -> dict[str, int]:
    """Document counts per index for this use case, once metrics, alerts and models exist."""
    client = connect_elasticsearch(connections)
    names = ("metrics", "batches", "detections", "alerts", "models", "predictions")
    counts: dict[str, int] = {}
    try:
        async with asyncio.timeout(wait_s):
            while True:
                for name in names:
                    index = f"streamer-{name}"
                    if await client.indices.exists(index=index):
                        await client.indices.refresh(index=index)
                        found = await client.count(
                            index=index, query={"term": {"usecase": usecase}}
                        )
                        counts[name] = found["count"]
                if all(counts.get(name, 0) > 0 for name in ("metrics", "alerts", "models")):
                    return counts
                await asyncio.sleep(0.5)
    except TimeoutError:
        return counts
    finally:
        await client.close()


async def wait_for_text(path, text: str, wait_s: float) -> None:
    async with asyncio.timeout(wait_s):
        while not (path.exists() and text in path.read_text()):  # noqa: ASYNC110 (a file)
            await asyncio.sleep(0.2)
