"""Concept drift end to end, on the real services: a change in a synthetic stream raises an
alert, the evaluator locates where the change began, the trainer retrains a fresh model from
there (`retrain.strategy=since-change`, the default), the launchers adopt it, and accuracy
recovers faster than River's plain test-then-train loop on the same rows (the outside reference,
run here), for an abrupt and for a gradual change. docs/monitoring.md has the figures.

Both use cases run at once in one launcher, one trainer and one evaluator process, replayed at
1,000 records/s each (BLOCK), so the launchers' staleness stays small (docs/pipeline.md).
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest
from river import tree
from river.datasets import synth

from shared.clients.redis import connect_redis
from shared.modelstore import ModelStore
from shared.wire.kafka import parse_input_id
from shared.wire.keys import UseCaseKeys
from shared.wire.store import RetrainRequest
from tests.integration.pipeline_helpers import (
    MODEL_SECRET,
    collect_outputs,
    run_producer,
    service,
    service_env,
)

BEFORE, AFTER = 10_000, 10_000  # records of the old concept, then of the new one
GRADUAL_WIDTH = 2_000
AFTER_ALERT = 5_000  # the records over which recovery is compared
FEATURES = ["salary", "commission", "age", "elevel", "car", "zipcode", "hvalue", "hyears", "loan"]
Row = tuple[dict, int]


def abrupt_rows() -> list[Row]:
    """Agrawal's function 0, then function 6 from row BEFORE on."""
    old = synth.Agrawal(classification_function=0, seed=1).take(BEFORE)
    return [*old, *synth.Agrawal(classification_function=6, seed=2).take(AFTER)]


def gradual_rows() -> list[Row]:
    """From function 0 to function 6 over GRADUAL_WIDTH rows centred on row BEFORE."""
    stream = synth.ConceptDriftStream(
        stream=synth.Agrawal(classification_function=0, seed=1),
        drift_stream=synth.Agrawal(classification_function=6, seed=2),
        position=BEFORE,
        width=GRADUAL_WIDTH,
        seed=3,
    )
    return [*stream.take(BEFORE + AFTER)]


def write_csv(path: Path, rows: list[Row]) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow([*FEATURES, "label"])
        for x, y in rows:
            writer.writerow([*(x[name] for name in FEATURES), y])


def plain_loop(rows: list[Row]) -> list[bool]:
    """River's test-then-train loop with the pipeline's model and no monitoring: whether each
    row is predicted right."""
    model = tree.HoeffdingTreeClassifier()
    right = []
    for x, y in rows:
        right.append(model.predict_one(x) == y)
        model.learn_one(x, y)
    return right


#: algs.props lines of each strategy tested: `challenger` needs the promotion rule.
STRATEGIES = {
    "since-change": "",
    "challenger": "retrain.strategy=challenger\npromotion.metric=Accuracy\n"
    "promotion.margin=0.02\npromotion.min-records=300\nevaluation.window=1000\n",
}


def make_usecase(root: Path, name: str, datafile: Path, strategy: str = "since-change") -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "streaming.props").write_text(
        f"mainTopic={name}\noutputTopic={name}.outputs\nproblem.type=Generic\n"
        f"datafile={datafile}\ncontainsHeader=true\nproducerType=BLOCK\nrecordsPerBlock=200\n"
        "producerTimeInterval=200\nreadingTimeInterval=200\nvisualization=false\n"
        "launcher.max.staleness=200\n"
    )
    (folder / "algs.props").write_text(
        "algorithm=HoeffdingTreeClassifier\ntraining.interval=-1\nevaluation.metrics=Accuracy\n"
        + STRATEGIES[strategy]
    )
    (folder / "monitoring.props").write_text(
        "metrics=Accuracy\nmonitoring.view=window\ndetector=ThresholdDetector\n"
        "threshold.robustness=2\n"
        "threshold.threshold=0.8\nthreshold.threshold.alert-if-greater=false\n"
        "threshold.threshold.abs=false\nalert.cooldown=5000\n"
    )
    return folder


async def wait_until_serving(log: Path, names: list[str], wait_s: float = 60) -> None:
    """Until, for each use case, the launcher has its input partition, the trainer and the
    evaluator have started (their logs say so): records produced before would reach the
    launcher in one burst, predicted without a model version yet."""
    wanted = {
        (logger, msg, name)
        for name in names
        for logger, msg in [
            ("launcher", "partitions assigned"),
            ("trainer", "trainer started"),
            ("evaluator", "evaluator started"),
        ]
    }
    async with asyncio.timeout(wait_s):
        while True:
            seen = set()
            for line in (await asyncio.to_thread(log.read_text)).splitlines():
                if not line.startswith("{"):
                    continue
                entry = json.loads(line)
                for name in names:
                    if name == entry.get("usecase") or f"'{name}'" in str(entry.get("partitions")):
                        seen.add((entry.get("logger"), entry.get("msg"), name))
            if wanted <= seen:
                return
            await asyncio.sleep(0.2)


def row_of(output: dict) -> int:
    return int(output["record_id"].rsplit(":", 1)[1]) - 2  # line 1 is the header


def accuracy(right: list[bool], first: int, last: int) -> float:
    return sum(right[first:last]) / (last - first)


@pytest.mark.parametrize("strategy", list(STRATEGIES))
async def test_a_retrain_since_the_located_change_recovers_faster_than_the_plain_loop(
    tmp_path, kafka_bootstrap, connections, unique, strategy
):
    """since-change (the default) must beat the plain loop by 5 points after the alert; a
    retrain challenger predicts nothing until promoted, so it must be promoted, beat the plain
    loop after the alert and never lose to it over the whole stream."""
    streams = {"abrupt": abrupt_rows(), "gradual": gradual_rows()}
    reference = {kind: await asyncio.to_thread(plain_loop, rows) for kind, rows in streams.items()}
    names = {kind: f"{unique}{kind}" for kind in streams}
    folders = []
    for kind, rows in streams.items():
        write_csv(tmp_path / f"{kind}.csv", rows)
        folders.append(make_usecase(tmp_path, names[kind], tmp_path / f"{kind}.csv", strategy))
    both = ",".join(map(str, folders))
    env = service_env(unique)
    log = tmp_path / "services.log"
    # record ids are `<file stem>:<line>`; line 1 is the header
    expected = {kind: {f"{kind}:{line}" for line in range(2, BEFORE + AFTER + 2)} for kind in names}
    with (
        service("launch", both, env, log),
        service("train", both, env, log),
        service("evaluate", both, env, log),
    ):
        await wait_until_serving(log, list(names.values()))
        await asyncio.to_thread(run_producer, both, env, log)
        collected = await asyncio.gather(
            *(
                collect_outputs(kafka_bootstrap, f"{name}.outputs", expected[kind], 90)
                for kind, name in names.items()
            )
        )
    outputs = dict(zip(names, collected, strict=True))
    for kind in streams:
        assert expected[kind] <= {o["record_id"] for o in outputs[kind]}, log.read_text()[-3000:]

    redis = connect_redis(connections)
    try:
        requests, versions = {}, {}
        for kind, name in names.items():
            entries = await redis.xrange(UseCaseKeys(name).train_requests)
            requests[kind] = [RetrainRequest.decode(fields) for _, fields in entries]
            versions[kind] = await ModelStore(redis, name, MODEL_SECRET.encode()).versions()
    finally:
        await redis.aclose()

    figures = []
    for kind, rows in streams.items():
        right = [False] * len(rows)
        row_at_offset = {}
        for output in outputs[kind]:
            right[row_of(output)] = str(output["prediction"]) == str(output["targets"][0])
            row_at_offset[parse_input_id(output["id"])[2]] = row_of(output)
        after_change = [r for r in requests[kind] if r.since and int(r.records_scored) > BEFORE]
        assert after_change, (kind, requests[kind], log.read_text()[-3000:])
        request = after_change[0]
        alert = int(request.records_scored)  # rows scored when the alert asked for it
        (since,) = request.since.values()  # one input partition
        located = min(row for offset, row in row_at_offset.items() if offset >= since)
        retrains = [v for v in versions[kind] if v["mode"] == "retrain"]
        assert retrains and f"({strategy})" in retrains[0]["reason"], versions[kind]
        promotions = [v for v in versions[kind] if v["mode"] == "promotion"]
        if strategy == "challenger":  # the retrain challenger replaced the champion
            assert promotions and "#retrain-" in promotions[0]["champion"], versions[kind]
        ours, plain = (
            accuracy(right, alert, alert + AFTER_ALERT),
            accuracy(reference[kind], alert, alert + AFTER_ALERT),
        )
        whole, plain_whole = accuracy(right, 0, len(rows)), accuracy(reference[kind], 0, len(rows))
        figures.append(
            {
                "stream": kind,
                "alert_row": alert,
                "change_located_at_row": located,
                f"accuracy_{AFTER_ALERT}_after_alert": round(ours, 3),
                "plain_loop_same_rows": round(plain, 3),
                "accuracy_whole_stream": round(whole, 3),
                "plain_loop_whole_stream": round(plain_whole, 3),
                "requests": len(requests[kind]),
                "strategy": strategy,
                "promoted_at_version": promotions[0]["version"] if promotions else None,
            }
        )
    print(json.dumps(figures, indent=1))
    for figure in figures:
        kind = figure["stream"]
        # the change is located after it began and before the alert asked for the retrain
        start = BEFORE - (GRADUAL_WIDTH // 2 if kind == "gradual" else 0)
        assert start <= figure["change_located_at_row"] <= figure["alert_row"], figure
        assert figure["alert_row"] <= BEFORE + 2_000, figure
        after_alert = figure[f"accuracy_{AFTER_ALERT}_after_alert"]
        gain = 0.05 if strategy == "since-change" else 0.01
        assert after_alert >= figure["plain_loop_same_rows"] + gain, figure
        assert figure["accuracy_whole_stream"] >= figure["plain_loop_whole_stream"], figure
