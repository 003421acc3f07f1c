"""Concept drift end to end: an abrupt change in a synthetic stream raises an alert, the
evaluator asks for a retrain, the trainer performs it, the launcher adopts it, accuracy recovers.
"""

from __future__ import annotations

import asyncio
import csv

from river.datasets import synth

from shared.clients.redis import connect_redis
from shared.modelstore import ModelStore
from tests.integration.pipeline_helpers import (
    MODEL_SECRET,
    collect_outputs,
    run_producer,
    service,
    service_env,
)

BEFORE, AFTER = 10_000, 10_000
FEATURES = ["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan"]


def agrawal_with_change(path) -> None:
    """Agrawal's function 0 for BEFORE records, then function 6: a change at record BEFORE+1."""
    rows = [*synth.Agrawal(classification_function=0, seed=1).take(BEFORE)]
    rows += [*synth.Agrawal(classification_function=6, seed=2).take(AFTER)]
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*FEATURES, "label"])
        for x, y in rows:
            writer.writerow([*(x[name] for name in FEATURES), y])


def accuracy(outputs: list[dict], first: int, last: int) -> float:
    chosen = [o for o in outputs if first <= int(o["record_id"].rsplit(":", 1)[1]) - 1 < last]
    return sum(str(o["prediction"]) == o["targets"][0] for o in chosen) / len(chosen)


async def test_an_abrupt_change_raises_an_alert_and_a_retrain_that_restores_accuracy(
    tmp_path, kafka_bootstrap, connections, unique
):
    data = tmp_path / "agrawal.csv"
    agrawal_with_change(data)
    folder = tmp_path / unique
    folder.mkdir()
    (folder / "streaming.props").write_text(
        f"mainTopic={unique}\noutputTopic={unique}.outputs\nproblem.type=Generic\n"
        f"datafile={data}\ncontainsHeader=true\nproducerType=BLOCK\nrecordsPerBlock=200\n"
        "producerTimeInterval=200\nreadingTimeInterval=200\nvisualization=false\n"
    )
    (folder / "algs.props").write_text(
        "algorithm=HoeffdingTreeClassifier\ntraining.interval=-1\ntraining.maxdata=1500\n"
        "evaluation.metrics=Accuracy\n"
    )
    (folder / "monitoring.props").write_text(
        "metrics=Accuracy\ndetector=ThresholdDetector\nthreshold.robustness=2\n"
        "threshold.threshold=0.8\nthreshold.threshold.alert-if-greater=false\n"
        "threshold.threshold.abs=false\nalert.cooldown=60000\n"
    )
    env = service_env(unique)
    log = tmp_path / "services.log"
    expected = {f"agrawal:{line}" for line in range(2, BEFORE + AFTER + 2)}  # line 1: header
    with (
        service("launch", folder, env, log),
        service("train", folder, env, log),
        service("evaluate", folder, env, log),
    ):
        await asyncio.to_thread(run_producer, folder, env, log)
        outputs = await collect_outputs(kafka_bootstrap, f"{unique}.outputs", expected, 120)
    assert expected <= {o["record_id"] for o in outputs}, log.read_text()[-3000:]

    redis = connect_redis(connections)
    try:
        requests = await redis.xrange(f"streamer:{unique}:train:requests")
        store = ModelStore(redis, unique, MODEL_SECRET.encode())
        versions = await store.versions()
    finally:
        await redis.aclose()
    assert len(requests) == 1, requests  # one alert, one retrain: the cooldown holds
    fields = {k.decode(): v.decode() for k, v in requests[0][1].items()}
    delay = int(fields["records_scored"]) - BEFORE
    assert 0 < delay <= 4000, fields  # raised after the change, within 4,000 records
    retrains = [v for v in versions if v["mode"] == "retrain"]
    assert retrains and retrains[0]["records_learned"] == 1500

    before = accuracy(outputs, BEFORE - 2000, BEFORE)
    right_after = accuracy(outputs, BEFORE, BEFORE + 1000)
    recovered = accuracy(outputs, BEFORE + AFTER - 3000, BEFORE + AFTER)
    print(
        f"detection delay {delay} records; accuracy {before:.3f} -> {right_after:.3f} -> "
        f"{recovered:.3f}"
    )
    assert before > 0.95 and right_after < 0.7 and recovered > 0.85
