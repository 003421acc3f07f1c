"""Scale-out on the real services: two launchers share a 2-partition use case and predict with
versions of the one model the trainer learns from the whole stream.

Before launchers only predicted, each learnt its own half of the stream and two launchers were
less accurate than one (-0.9 points on 60,000 KDD rows). Now: every prediction comes from a
published version, consistent with the staleness it reports; each launcher predicts with the
newest version, or one replaced at most ADOPT_MS before; and two launchers are as accurate as
one.
"""

from __future__ import annotations

import asyncio
import bisect
import collections
from contextlib import ExitStack
from pathlib import Path

from river import metrics

from shared.clients.redis import connect_redis
from shared.modelstore import ModelStore
from tests.integration.pipeline_helpers import (
    MODEL_SECRET,
    kdd_slice,
    read_to_end,
    run_producer,
    service,
    service_env,
)

ROWS = 20_000
PUBLISH_MS = 250
BLOCK_MS = 250  # producerTimeInterval
#: launcher.max.staleness's default: a record further in its partition waits for a version
WARM_UP = 2000
#: A version published, fetched, verified and loaded in the background, then adopted at the
#: next batch: measured 0-1 ms on a 2-core machine; 56-408 ms when launchers only looked for
#: versions after each fetch instead of watching the versions' stream (a run failed at 408).
#: The margin is for a machine far busier than that one.
ADOPT_MS = 250


def make_usecase(root: Path, name: str, datafile: Path) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "streaming.props").write_text(
        f"mainTopic={name}\noutputTopic={name}.outputs\nproblem.type=KDDClassification\n"
        f"datafile={datafile}\ntopic.partitions=2\nproducerType=BLOCK\n"
        f"recordsPerBlock=500\nproducerTimeInterval={BLOCK_MS}\nreadingTimeInterval=100\n"
    )
    (folder / "algs.props").write_text(
        f"algorithm=HoeffdingTreeClassifier\nmodel.publish.interval={PUBLISH_MS}\n"
    )
    return folder


async def run_pipeline(
    tmp_path: Path, connections, name: str, datafile: Path, launchers: int
) -> tuple[list[dict], dict[int, dict]]:
    """The replay with `launchers` launchers and one trainer: every output, and the metadata
    of every version the trainer published."""
    folder = make_usecase(tmp_path, name, datafile)
    env = service_env(name)
    log = tmp_path / f"{name}.log"
    with ExitStack() as stack:
        for _ in range(launchers):
            stack.enter_context(service("launch", folder, env, log))
        stack.enter_context(service("train", folder, env, log))
        await asyncio.to_thread(run_producer, folder, env, log)
        outputs = await read_to_end(
            connections.kafka_bootstrap_or(""), f"{name}.outputs", ROWS, 180
        )
    redis = connect_redis(connections)
    try:
        versions = await ModelStore(redis, name, MODEL_SECRET.encode()).versions()
    finally:
        await redis.aclose()
    assert len({o["record_id"] for o in outputs}) == len(outputs) == ROWS, log.read_text()[-3000:]
    return outputs, {meta["version"]: meta for meta in versions}


def accuracy(outputs: list[dict]) -> float:
    metric = metrics.Accuracy()
    for output in outputs:
        metric.update(output["targets"][0], output["prediction"])
    return metric.get()


def after_warm_up(outputs: list[dict]) -> list[dict]:
    return [output for output in outputs if offset_of(output) > WARM_UP]


def partition_of(output: dict) -> int:
    return int(output["id"].rsplit("/", 2)[1])


def offset_of(output: dict) -> int:
    return int(output["id"].rsplit("/", 1)[1])


async def test_two_launchers_predict_with_versions_of_one_model_and_as_well_as_one(
    tmp_path, data_dir, connections, unique
):
    datafile = kdd_slice(data_dir, ROWS, tmp_path / "kdd.csv")
    alone, _ = await run_pipeline(tmp_path, connections, f"{unique}a", datafile, launchers=1)
    shared, versions = await run_pipeline(tmp_path, connections, f"{unique}b", datafile, 2)

    # every prediction comes from a published version, and its staleness is that version's
    topic = f"{unique}b"
    for output in shared:
        if output["model_version"] is None:
            assert offset_of(output) <= 2000  # before any version (launcher.max.staleness)
            continue
        meta = versions[output["model_version"]]
        position = meta["positions"].get(f"{topic}/{partition_of(output)}", 0)
        assert output["staleness"] == max(0, offset_of(output) - position), output

    # both launchers predict with the newest version of the one model: each batch with the
    # version that was the newest when the batch was taken, or one replaced at most ADOPT_MS
    # before (each version is loaded from the moment it is published, adopted between batches)
    order = sorted(versions)
    lateness: dict[int, list[float]] = collections.defaultdict(list)
    for output in shared:
        version = output["model_version"]
        if version is None or version == order[-1]:
            continue
        replaced_ms = versions[order[bisect.bisect_right(order, version)]]["created_at"] * 1000
        taken_ms = output["timings"]["consumed"]
        lateness[partition_of(output)].append(max(0.0, taken_ms - replaced_ms))
    assert sorted(lateness) == [0, 1]
    for partition, values in sorted(lateness.items()):
        values.sort()
        print(
            f"launcher of partition {partition}: its version was replaced before it took a "
            f"batch by p99 {values[int(len(values) * 0.99)]:.0f} ms, max {values[-1]:.0f} ms"
        )
    assert max(values[-1] for values in lateness.values()) <= ADOPT_MS

    # compared after the warm-up: the records at offsets up to launcher.max.staleness (2,000,
    # the default) may be predicted before the first version exists or not, depending on when
    # the trainer's first version lands, in either run; every later record has a version
    one, two = accuracy(after_warm_up(alone)), accuracy(after_warm_up(shared))
    print(
        f"accuracy after the warm-up: one launcher {one:.4f}, two launchers {two:.4f}; "
        f"whole stream: {accuracy(alone):.4f} and {accuracy(shared):.4f}"
    )
    assert abs(one - two) <= 0.002
