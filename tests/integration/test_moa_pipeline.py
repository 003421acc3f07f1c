"""A MOA learner in the real pipeline: producer -> Kafka -> launcher -> outputs, and the trainer
publishing MOA models (Java serialization inside our pickles) that another process loads."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import numpy as np

from benchmarks.moa import kdd_rows
from shared.clients.redis import connect_redis
from shared.modelstore import ModelStore
from tests.integration.pipeline_helpers import (
    MODEL_SECRET,
    collect_outputs,
    kdd_slice,
    make_kdd_usecase,
    run_producer,
    service,
    service_env,
)

ROWS = 4_000


def moa_training_accuracy(data_dir, rows: int) -> float:
    """MOA's Hoeffding tree through capymoa's own API, trained on the rows in order, scored on
    them by MOA (correctlyClassifies): the outside reference for the trainer's last model."""
    from capymoa.classifier import HoeffdingTree
    from capymoa.core import LabeledInstance
    from capymoa.stream import Schema

    from shared.algorithms.moa import java_helper

    java_helper()  # the JVM, started as our algorithms start it
    data = kdd_rows(data_dir, rows)
    names = list(data[0][0])
    nominal = {
        name: list(dict.fromkeys(x[name] for x, _ in data))
        for name in names
        if isinstance(data[0][0][name], str)
    }
    labels = list(dict.fromkeys(y for _, y in data))
    schema = Schema.from_custom(
        features=[*names, "class"], target="class", categories={**nominal, "class": labels}
    )

    def instance(x: dict, y: str) -> LabeledInstance:
        values = [nominal[n].index(x[n]) if n in nominal else x[n] for n in names]
        return LabeledInstance.from_array(schema, np.asarray(values, float), labels.index(y))

    model = HoeffdingTree(schema=schema)
    instances = [instance(x, y) for x, y in data]
    for one in instances:
        model.train(one)
    scores = model.moa_learner.correctlyClassifies
    correct = sum(bool(scores(one.java_instance.getData())) for one in instances)
    return correct / len(instances)


async def test_a_moa_tree_runs_the_pipeline_and_every_record_gets_an_output(
    tmp_path, data_dir, kafka_bootstrap, connections, unique
):
    datafile = kdd_slice(data_dir, ROWS, tmp_path / "kdd.csv")
    folder = make_kdd_usecase(tmp_path, unique, datafile)
    (folder / "algs.props").write_text(
        "algorithm=moa.HoeffdingTree\nalgorithm.grace_period=200\nclasses.number=23\n"
        "training.interval=1000\ntraining.maxdata=-1\n"
    )
    env = service_env(unique)
    log = tmp_path / "services.log"
    redis = connect_redis(connections)
    store = ModelStore(redis, unique, MODEL_SECRET.encode())
    try:
        with service("launch", folder, env, log), service("train", folder, env, log):
            await asyncio.to_thread(run_producer, folder, env, log)
            expected = {f"kdd:{line}" for line in range(1, ROWS + 1)}
            outputs = await collect_outputs(kafka_bootstrap, f"{unique}.outputs", expected, 180)
            latest = await wait_for_a_model_of(store, learned=ROWS, wait_s=120)
    finally:
        await redis.aclose()
    ids = collections.Counter(output["record_id"] for output in outputs)
    missing = expected - set(ids)
    assert not missing, f"{len(missing)} records without output; log: {log.read_text()[-3000:]}"
    assert [rid for rid, count in ids.items() if count > 1] == []
    # the last version, unpickled here (this process's own JVM), is MOA's tree of all the rows
    assert latest is not None, log.read_text()[-3000:]
    assert latest.describe()["records_learned"] == ROWS
    assert latest.describe()["moa_class"] == "moa.classifiers.trees.HoeffdingTree"
    data = kdd_rows(data_dir, ROWS)
    predictions = latest.predict_many([x for x, _ in data])
    accuracy = sum(p == y for p, (_, y) in zip(predictions, data, strict=True)) / ROWS
    reference = moa_training_accuracy(data_dir, ROWS)
    assert accuracy >= reference - 0.01, (accuracy, reference)


async def wait_for_a_model_of(store: ModelStore, learned: int, wait_s: float) -> Any:
    """The latest published model once it has learned `learned` records (None if it never
    does within `wait_s`)."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while asyncio.get_running_loop().time() < deadline:
        version = await store.load()
        if version is not None and version.algorithm.describe()["records_learned"] >= learned:
            return version.algorithm
        await asyncio.sleep(0.5)
    return None
