"""Champion and challengers on the real services (producer, launcher, trainer, evaluator as
processes; the API in-process): every output carries each model's prediction, equal to what
River's own models predict after the same records; the leaderboard's accuracy of each model
equals scikit-learn's over the outputs; a clearly better challenger is promoted by the rule, the
launchers switch, and a rollback through the API restores the former champion."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path
from typing import Any

import httpx
from river import dummy, tree
from sklearn.metrics import accuracy_score

from shared.clients.kafka import make_consumer, start_client
from shared.records import KDDClassificationRecord
from tests.integration.pipeline_helpers import (
    InputPositions,
    make_kdd_usecase,
    run_producer,
    service,
    service_env,
    wait_for,
)
from tests.integration.test_api import AUTH, running_api

CHALLENGER = "river.tree.HoeffdingTreeClassifier"
PRIOR = "river.dummy.PriorClassifier"
TREE = "HoeffdingTreeClassifier"
#: KDD rows where normal traffic gives way to a smurf attack: the models disagree there.
FIRST_ROW = 6_500
#: Paced at 1,000 records/s, versions at most 200 records behind (one every 100 records): the
#: predictions follow the attack's start, and the evaluations see the models part ways.
PACED = (
    "producerType=BLOCK\nrecordsPerBlock=50\nproducerTimeInterval=50\nlauncher.max.staleness=200\n"
)


def kdd_rows(data_dir: Path, first: int, count: int) -> list[str]:
    """Lines first..first+count-1 (0-based) of the real KDD 10% file (never committed)."""
    with gzip.open(data_dir / "kdd-cup-99" / "kddcup.data_10_percent.gz", "rt") as source:
        lines = [line for _, line in zip(range(first + count), source, strict=False)]
    return lines[first:]


async def read_outputs(bootstrap: str, topic: str, count: int, wait_s: float) -> list[dict]:
    """The first `count` outputs of `topic` (one partition), in offset order."""
    consumer = make_consumer(bootstrap, None, topic, isolation_level="read_committed")
    await start_client(consumer, bootstrap)
    outputs: list[dict] = []
    try:
        async with asyncio.timeout(wait_s):
            while len(outputs) < count:
                for messages in (await consumer.getmany(timeout_ms=500)).values():
                    outputs += [json.loads(message.value) for message in messages]
    except TimeoutError:
        pass  # the caller says what is missing
    finally:
        await consumer.stop()
    return sorted(outputs, key=lambda output: int(output["id"].rsplit("/", 1)[1]))


def replay_references(lines: list[str], outputs: list[dict], models: dict[str, Any]) -> dict:
    """What each reference model predicts for each output after learning the records that the
    predicting version had learnt (those below the output's offset minus its staleness)."""
    records = [KDDClassificationRecord.parse(line) for line in lines]
    positions = InputPositions(outputs)
    learnt = 0
    expected: dict[str, list[Any]] = {name: [None] * len(outputs) for name in models}
    for index in sorted(range(len(outputs)), key=lambda i: positions.learnt(outputs[i])):
        while learnt < positions.learnt(outputs[index]):
            record = records[positions.line_of_learnt(learnt)]
            for model in models.values():
                model.learn_one(record.values, record.targets[0])
            learnt += 1
        x = records[positions.line_of(outputs[index])].values
        for name, model in models.items():
            expected[name][index] = model.predict_one(x) if learnt else None
    return expected


def scored(outputs: list[dict], predictions: list[Any]) -> float:
    """Accuracy as the evaluator's metric counts it: a missing prediction is no pair."""
    pairs = [(o["targets"][0], p) for o, p in zip(outputs, predictions, strict=True) if p]
    return accuracy_score([t for t, _ in pairs], [p for _, p in pairs])


async def wait_for_leaderboard(client: httpx.AsyncClient, name: str, pairs: int) -> dict:
    """The leaderboard once each model's cumulative view covers `pairs` records."""

    async def covering() -> dict | None:
        body = (await client.get(f"/usecases/{name}/leaderboard")).json()
        covered = [row["pairs"].get("cumulative", 0) for row in body["models"]]
        return body if len(covered) == 2 and min(covered) >= pairs else None

    return await wait_for(covering, f"a leaderboard covering {pairs} records", 60)


async def test_every_output_carries_each_models_prediction_and_the_leaderboard_scores_them(
    tmp_path, data_dir, kafka_bootstrap, connections, unique
):
    rows = 3_000
    lines = kdd_rows(data_dir, FIRST_ROW, rows)
    datafile = tmp_path / "kdd.csv"
    datafile.write_text("".join(lines))
    folder = make_kdd_usecase(tmp_path, unique, datafile, extra=PACED)
    (folder / "algs.props").write_text(
        f"algorithm={TREE}\nalgorithm.grace_period=200\nchallengers={CHALLENGER}\n"
        f"{CHALLENGER}.grace_period=20\n{CHALLENGER}.leaf_prediction=nb\n"
        "evaluation.metrics=Accuracy\nmodel.publish.records=100\n"
    )
    env, log = service_env(unique), tmp_path / "services.log"
    settings = connections.model_copy(update={"influx_db": unique, "usecases_dir": tmp_path})
    with (
        service("launch", folder, env, log),
        service("train", folder, env, log),
        service("evaluate", folder, env, log, cwd=tmp_path),
    ):
        await asyncio.to_thread(run_producer, folder, env, log)
        outputs = await read_outputs(kafka_bootstrap, f"{unique}.outputs", rows, 120)
        assert len(outputs) == rows, log.read_text()[-3000:]
        ranked = sum(output["champion"] is not None for output in outputs)  # had a version
        async with running_api(settings, unique, heartbeat=False) as (_, client):
            board = await wait_for_leaderboard(client, unique, ranked)
    references = replay_references(
        lines,
        outputs,
        {
            TREE: tree.HoeffdingTreeClassifier(grace_period=200),
            CHALLENGER: tree.HoeffdingTreeClassifier(grace_period=20, leaf_prediction="nb"),
        },
    )
    versioned = [o for o in outputs if o["model_version"] is not None]
    assert len(versioned) == ranked > rows - 300  # the first ones: before any version
    assert all(o["champion"] == TREE and list(o["challengers"]) == [CHALLENGER] for o in versioned)
    champion = [o["prediction"] for o in outputs]
    challenger = [o["challengers"].get(CHALLENGER) for o in outputs]
    assert champion == references[TREE]
    assert challenger == references[CHALLENGER]
    assert champion != challenger  # the two trees do disagree on these rows
    assert len({o["model_version"] for o in outputs}) > 3  # and several versions predicted
    # the leaderboard's accuracy of each model is scikit-learn's over its predictions
    values = {row["model"]: row["values"]["cumulative"]["accuracy"] for row in board["models"]}
    assert abs(values[TREE] - scored(outputs, champion)) < 1e-9, values
    assert abs(values[CHALLENGER] - scored(outputs, challenger)) < 1e-9, values
    assert [row["role"] for row in board["models"]] == ["champion", "challenger"]


async def test_a_better_challenger_is_promoted_and_a_rollback_restores_the_champion(
    tmp_path, data_dir, kafka_bootstrap, connections, unique
):
    phases = [kdd_rows(data_dir, 7_000, 2_500), kdd_rows(data_dir, 9_500, 500)]
    phases.append(kdd_rows(data_dir, 10_000, 500))
    datafile = tmp_path / "kdd.csv"
    folder = make_kdd_usecase(tmp_path, unique, datafile, extra=PACED)
    (folder / "algs.props").write_text(
        f"algorithm={PRIOR}\nchallengers={TREE}\nevaluation.metrics=Accuracy\n"
        "evaluation.window=300\npromotion.metric=accuracy\npromotion.margin=0.2\n"
        "promotion.min-records=300\nmodel.publish.records=100\n"
    )
    env, log = service_env(unique), tmp_path / "services.log"
    settings = connections.model_copy(update={"influx_db": unique, "usecases_dir": tmp_path})
    produced = 0

    async def produce(lines: list[str]) -> list[dict]:
        nonlocal produced
        with datafile.open("a") as source:  # the producer goes on after the lines it sent
            source.writelines(lines)
        await asyncio.to_thread(run_producer, folder, env, log)
        produced += len(lines)
        outputs = await read_outputs(kafka_bootstrap, f"{unique}.outputs", produced, 60)
        assert len(outputs) >= produced, log.read_text()[-3000:]
        return outputs[produced - len(lines) : produced]

    with (
        service("launch", folder, env, log),
        service("train", folder, env, log),
        service("evaluate", folder, env, log, cwd=tmp_path),
    ):
        async with running_api(settings, unique, heartbeat=False) as (_, client):
            first = await produce(phases[0])  # normal traffic, then smurfs: the prior lags
            promotion = await wait_for_version(client, unique, "promotion")
            await wait_for_launcher(client, unique, promotion["version"])
            second = await produce(phases[1])
            refused = await client.post(f"/usecases/{unique}/rollback")
            assert refused.status_code == 401  # no token
            response = await client.post(
                f"/usecases/{unique}/rollback", json={"reason": "check by hand"}, headers=AUTH
            )
            assert response.status_code == 202, response.text
            rollback = await wait_for_version(client, unique, "rollback")
            await wait_for_launcher(client, unique, rollback["version"])
            third = await produce(phases[2])
            newest = (await client.get(f"/usecases/{unique}/models?limit=5")).json()
    before = [
        o for o in first if (o["model_version"] or promotion["version"]) < promotion["version"]
    ]
    assert len(before) > 300 and {o["champion"] for o in before} == {PRIOR}
    # the promotion says why: the rule's metric, values and margin
    assert (promotion["champion"], promotion["previous_champion"]) == (TREE, PRIOR)
    assert promotion["reason"].startswith(f"{TREE} replaces {PRIOR}: window accuracy ")
    assert "(margin 0.2, " in promotion["reason"] and promotion["reason"].endswith("(by evaluator)")
    # launchers switched: the tree's predictions are the outputs now, the prior's the shadow
    assert {o["champion"] for o in second} == {TREE}
    assert all(o["model_version"] >= promotion["version"] for o in second)
    assert all(list(o["challengers"]) == [PRIOR] for o in second)
    # the rollback restored the prior (which kept learning as a challenger)
    assert (rollback["champion"], rollback["previous_champion"]) == (PRIOR, TREE)
    assert rollback["reason"] == f"{PRIOR} replaces {TREE}: check by hand (by api)"
    assert {o["champion"] for o in third} == {PRIOR}
    prior = dummy.PriorClassifier()
    for line in [*phases[0], *phases[1]]:
        record = KDDClassificationRecord.parse(line)
        prior.learn_one(record.values, record.targets[0])
    # it learnt as a challenger: frozen at its promotion it would still say "normal"
    assert third[0]["prediction"] == prior.predict_one({}) == "smurf"
    assert newest["versions"][0]["mode"] != "promotion"  # not promoted again by the rule


async def wait_for_version(client: httpx.AsyncClient, name: str, mode: str) -> dict:
    """The newest version of `mode`, once the trainer published one."""

    async def newest() -> dict | None:
        versions = (await client.get(f"/usecases/{name}/models?limit=50")).json()
        return next((v for v in versions["versions"] if v["mode"] == mode), None)

    return await wait_for(newest, f"a version of mode {mode}", 60)


async def wait_for_launcher(client: httpx.AsyncClient, name: str, version: int) -> None:
    """Until the launcher's heartbeat says it uses `version` or newer."""

    async def adopted() -> bool:
        health = (await client.get("/health", params={"usecase": name})).json()
        versions = [
            instance["model_versions"].get(name) or 0
            for instance in health["instances"]
            if instance["service"] == "launcher" and name in instance["usecases"]
        ]
        return bool(versions) and max(versions) >= version

    await wait_for(adopted, f"a launcher using version {version}", 60)
