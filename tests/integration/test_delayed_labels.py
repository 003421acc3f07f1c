"""Delayed labels on the real services: the producer holds each label back (label.delay), the
launcher predicts at once, the trainer learns and the evaluator scores each record when its
label arrives on labelTopic, and what waits beyond label.timeout is counted."""

from __future__ import annotations

import asyncio
import collections
import signal
from pathlib import Path

import pytest
from river import evaluate, metrics, tree

from services.producer.labels import LabelSplitter
from shared.clients.influx import AioinfluxStore
from shared.clients.kafka import ensure_topics, make_producer, start_client
from shared.clients.redis import connect_redis
from shared.heartbeat import read_heartbeats
from shared.modelstore import ModelStore
from shared.records import KDDClassificationRecord
from shared.wire.influx import MetricsMeasurement
from shared.wire.kafka import RECORD_ID_HEADER, Label
from tests.integration.pipeline_helpers import (
    MODEL_SECRET,
    collect_outputs,
    kdd_slice,
    run_producer,
    service,
    service_env,
)
from tests.integration.test_pipeline import wait_for_versions
from tests.integration.test_producer import read_topic, record_ids
from tests.integration.test_producer_restart import (
    committed_count,
    start_producer,
    wait_for_records,
)
from tests.integration.test_producer_restart import (
    run_producer as produce_to_the_end,
)

ROWS = 20_000
DELAY = 1000


def make_usecase(root: Path, name: str, datafile: Path, *, delay: str, timeout: str) -> Path:
    """KDD rows replayed at 1,000 records a second (blocks of 100), labels held back."""
    folder = root / name
    folder.mkdir()
    (folder / "streaming.props").write_text(
        f"mainTopic={name}\noutputTopic={name}.outputs\nlabelTopic={name}.labels\n"
        f"label.delay={delay}\nlabel.timeout={timeout}\nproblem.type=KDDClassification\n"
        f"datafile={datafile}\nproducerType=BLOCK\nrecordsPerBlock=100\n"
        "producerTimeInterval=100\nreadingTimeInterval=100\n"
    )
    (folder / "algs.props").write_text(
        "algorithm=HoeffdingTreeClassifier\nevaluation.metrics=Accuracy\n"
    )
    return folder


def river_delayed_accuracy(path: Path, delay: int) -> float:
    """The outside reference: River's progressive validation with the labels `delay` records
    late, on the same rows."""
    rows = [KDDClassificationRecord.parse(line) for line in path.read_text().splitlines()]
    dataset = [(record.values, record.targets[0]) for record in rows]
    score = evaluate.progressive_val_score(
        dataset, tree.HoeffdingTreeClassifier(), metrics.Accuracy(), delay=delay
    )
    return score.get()


async def counters_of(connections, name: str, usecase: str, done, wait_s: float) -> dict:
    """A service's counters for the use case (its heartbeat, every 3 s) once `done(counters)`;
    the last ones seen when the wait is over."""
    redis = connect_redis(connections)
    counters: dict = {}
    try:
        async with asyncio.timeout(wait_s):
            while True:
                for beat in await read_heartbeats(redis):
                    if beat.service == name and beat.counters.get(usecase):
                        counters = beat.counters[usecase]
                if done(counters):
                    return counters
                await asyncio.sleep(0.5)
    except TimeoutError:
        return counters
    finally:
        await redis.aclose()


async def services_started(connections, usecase: str) -> None:
    """The launcher, trainer and evaluator beat: the stream starts once they listen, as a live
    one would (a backlog would be predicted by versions further behind than the delay)."""
    for name in ("launcher", "trainer", "evaluator"):
        await counters_of(connections, name, usecase, bool, 60)


async def cumulative_accuracy(connections, database: str, usecase: str) -> float | None:
    store = AioinfluxStore(connections, database)
    try:
        points = await MetricsMeasurement(usecase).latest(store, view="cumulative")
    finally:
        await store.close()
    return {point.metric.lower(): point.value for point in points}.get("accuracy")


async def test_prequential_accuracy_with_labels_a_thousand_records_late_is_rivers(
    tmp_path, data_dir, kafka_bootstrap, connections, unique
):
    datafile = kdd_slice(data_dir, ROWS, tmp_path / "kdd.csv")
    folder = make_usecase(tmp_path, unique, datafile, delay=str(DELAY), timeout="100000")
    env = service_env(unique)
    log = tmp_path / "services.log"
    expected = {f"kdd:{line}" for line in range(1, ROWS + 1)}
    with (
        service("launch", folder, env, log),
        service("train", folder, env, log),
        service("evaluate", folder, env, log, cwd=tmp_path),
    ):
        await services_started(connections, unique)
        await asyncio.to_thread(run_producer, folder, env, log, 300)
        outputs = await collect_outputs(kafka_bootstrap, f"{unique}.outputs", expected, 120)
        labels = await collect_outputs(kafka_bootstrap, f"{unique}.labels", expected, 60)
        counters = await counters_of(
            connections, "evaluator", unique, lambda c: c.get("labels_joined", 0) >= ROWS, 120
        )
        trainer = await counters_of(
            connections, "trainer", unique, lambda c: c.get("records_learned", 0) >= ROWS, 30
        )
    tail = log.read_text()[-3000:]
    # every record predicted once, without its label; every label sent once
    ids = collections.Counter(output["record_id"] for output in outputs)
    assert set(ids) == expected and max(ids.values()) == 1, tail
    assert all(output["targets"] == [] for output in outputs)
    label_ids = collections.Counter(label["record_id"] for label in labels)
    assert set(label_ids) == expected and max(label_ids.values()) == 1
    # the trainer learnt each record once its label came
    assert trainer.get("records_learned") == ROWS, trainer
    # the evaluator scored each prediction once, when its label arrived
    assert counters.get("labels_joined") == ROWS, counters
    assert counters.get("labels_missing") == 0 and counters.get("labels_waiting") == 0

    truth = {label["record_id"]: label["targets"][0] for label in labels}
    # as River's progressive validation, a record predicted by no model yet is not scored
    scored = [output for output in outputs if output["prediction"] is not None]
    right = sum(output["prediction"] == truth[output["record_id"]] for output in scored)
    from_outputs = right / len(scored)
    from_evaluator = await cumulative_accuracy(connections, unique, unique)
    river = river_delayed_accuracy(datafile, DELAY)
    figures = f"outputs {from_outputs:.4f}, evaluator {from_evaluator}, River {river:.4f}"
    print(f"delayed labels, {ROWS} KDD rows, delay {DELAY}: {figures}")
    assert from_evaluator is not None and abs(from_evaluator - from_outputs) < 1e-9, figures
    assert abs(from_outputs - river) <= 0.005, figures


async def test_labels_withheld_beyond_the_timeout_are_counted(
    tmp_path, data_dir, kafka_bootstrap, connections, unique
):
    """Labels come 1,000 records late, the join waits 100: the predictions are dropped and
    counted as missing their label (but for the last ones, whose labels come with the end of
    the file, when no later output ages them), none is left waiting, each is either scored or
    counted, and the labels that found no prediction any more are dropped too."""
    rows = 3000
    datafile = kdd_slice(data_dir, rows, tmp_path / "kdd.csv")
    folder = make_usecase(tmp_path, unique, datafile, delay="1000", timeout="100")
    env = service_env(unique)
    log = tmp_path / "services.log"
    expected = {f"kdd:{line}" for line in range(1, rows + 1)}

    def settled(counters: dict) -> bool:
        scored = counters.get("labels_joined", 0) + counters.get("labels_missing", 0)
        return scored >= rows and counters.get("labels", 0) >= rows

    with (
        service("launch", folder, env, log),
        service("train", folder, env, log),
        service("evaluate", folder, env, log, cwd=tmp_path),
    ):
        await services_started(connections, unique)
        await asyncio.to_thread(run_producer, folder, env, log, 120)
        await collect_outputs(kafka_bootstrap, f"{unique}.outputs", expected, 60)
        counters = await counters_of(connections, "evaluator", unique, settled, 60)
        trainer = await counters_of(
            connections, "trainer", unique, lambda c: c.get("labels_missing", 0) > 0, 30
        )
    assert counters.get("labels_joined", 0) + counters.get("labels_missing", 0) == rows, counters
    assert counters.get("labels_waiting") == 0, counters
    # how many exactly depends on which evaluation reads the last labels: the last 100
    # outputs at least wait for nothing more (no later output ages them), and most of the
    # others see 100 outputs go by long before their label (900 records before it)
    assert counters.get("labels_joined", 0) >= 100, counters
    assert counters.get("labels_missing", 0) >= rows // 2, counters
    # labels that came while outputs still flowed, after their prediction was dropped
    assert counters.get("labels_orphaned", 0) >= rows // 2, counters
    assert trainer.get("labels_missing", 0) > 0, trainer


async def test_a_producer_killed_mid_replay_sends_every_record_and_every_label_once(
    tmp_path, data_dir, kafka_bootstrap, unique
):
    """Labels travel in the transactions of the records they are due with: whenever the
    producer is killed, the topics hold the first L records and exactly the labels of the
    first L - D; the restart holds the missing labels again and sends each one once."""
    rows, delay = 3000, 250
    datafile = kdd_slice(data_dir, rows, tmp_path / "kdd.csv")
    folder = make_usecase(tmp_path, unique, datafile, delay=str(delay), timeout="1000")
    props = folder / "streaming.props"
    props.write_text(
        props.read_text().replace("producerTimeInterval=100", "producerTimeInterval=20")
    )
    labels_topic = f"{unique}.labels"
    await ensure_topics(kafka_bootstrap, [unique, labels_topic])
    seen: list[tuple[int, int]] = []
    for more_than in (400, 1200):
        process = await start_producer(folder, kafka_bootstrap)
        await wait_for_records(kafka_bootstrap, unique, more_than)
        process.send_signal(signal.SIGKILL)
        await process.wait()
        committed = await committed_count(kafka_bootstrap, unique)
        labelled = await committed_count(kafka_bootstrap, labels_topic)
        seen.append((committed, labelled))
        assert labelled == max(0, committed - delay), seen
    assert seen[-1][0] < rows, "the kills came after the end of the replay"
    assert seen[-1][1] > 0, f"no label was due before the kills: {seen}"

    summary = await produce_to_the_end(folder, kafka_bootstrap)
    assert summary["outcome"] == "end of file"
    records = await read_topic(kafka_bootstrap, unique, rows)
    labels = await read_topic(kafka_bootstrap, labels_topic, rows)
    expected = {f"kdd:{line}": 1 for line in range(1, rows + 1)}
    assert record_ids(records) == expected and record_ids(labels) == expected
    lines = datafile.read_text().splitlines()
    for record in records:  # each line as in the file, its label column emptied
        line = lines[int(dict(record.headers)["record-id"].rsplit(b":", 1)[1]) - 1]
        assert record.value.decode() == line[: line.rindex(",") + 1]
    for label in map(lambda message: Label.decode(message.value), labels):
        line = lines[int(label.record_id.rsplit(":", 1)[1]) - 1]
        assert label.targets == KDDClassificationRecord.parse(line).targets


async def test_a_delay_in_time_holds_each_label_that_long_and_no_longer_than_a_block(
    tmp_path, data_dir, kafka_bootstrap, unique
):
    """label.delay=300ms with a block a second: each label goes 300 ms after its record (the
    message timestamps say when each was sent), between two blocks rather than with the
    next one."""
    rows = 50
    datafile = kdd_slice(data_dir, rows, tmp_path / "kdd.csv")
    folder = make_usecase(tmp_path, unique, datafile, delay="300ms", timeout="1m")
    props = folder / "streaming.props"
    props.write_text(
        props.read_text()
        .replace("recordsPerBlock=100", "recordsPerBlock=10")
        .replace("producerTimeInterval=100", "producerTimeInterval=1000")
    )
    summary = await produce_to_the_end(folder, kafka_bootstrap)
    assert (summary["records_sent"], summary["outcome"]) == (rows, "end of file")
    sent_at = {
        dict(r.headers)["record-id"]: r.timestamp
        for r in await read_topic(kafka_bootstrap, unique, rows)
    }
    gaps = sorted(
        label.timestamp - sent_at[dict(label.headers)["record-id"]]
        for label in await read_topic(kafka_bootstrap, f"{unique}.labels", rows)
    )
    # never early: a record is stamped when its batch is built, a few ms after its label is held
    assert len(gaps) == rows and gaps[0] >= 300 - 10, gaps
    assert gaps[len(gaps) // 2] < 900, gaps  # not held until the next block, a second later


async def test_an_evaluator_killed_mid_stream_scores_each_late_label_once(
    tmp_path, data_dir, kafka_bootstrap, connections, unique
):
    """The outputs waiting for their label and the labelTopic offsets are part of the
    evaluator's checkpoint: after a SIGKILL mid-stream, the restarted evaluator scores every
    record once, and its accuracy is exactly the outputs' (read back, joined with the labels)."""
    rows = 8000
    datafile = kdd_slice(data_dir, rows, tmp_path / "kdd.csv")
    folder = make_usecase(tmp_path, unique, datafile, delay="500", timeout="100000")
    env = service_env(unique)
    log = tmp_path / "services.log"
    expected = {f"kdd:{line}" for line in range(1, rows + 1)}
    with service("launch", folder, env, log), service("train", folder, env, log):
        with service("evaluate", folder, env, log, cwd=tmp_path) as evaluator:
            await services_started(connections, unique)
            producing = asyncio.create_task(asyncio.to_thread(run_producer, folder, env, log, 300))
            before = await counters_of(
                connections, "evaluator", unique, lambda c: c.get("labels_joined", 0) >= 2000, 60
            )
            evaluator.send_signal(signal.SIGKILL)
            evaluator.wait()
        assert 0 < before.get("labels_joined", 0) < rows, before
        await producing
        with service("evaluate", folder, env, log, cwd=tmp_path):
            outputs = await collect_outputs(kafka_bootstrap, f"{unique}.outputs", expected, 120)
            labels = await collect_outputs(kafka_bootstrap, f"{unique}.labels", expected, 60)
            after = await counters_of(
                connections, "evaluator", unique, lambda c: c.get("labels_joined", 0) >= rows, 120
            )
    assert after.get("labels_joined") == rows and after.get("labels_waiting") == 0, after
    truth = {label["record_id"]: label["targets"][0] for label in labels}
    scored = [output for output in outputs if output["prediction"] is not None]
    right = sum(output["prediction"] == truth[output["record_id"]] for output in scored)
    evaluator_accuracy = await cumulative_accuracy(connections, unique, unique)
    assert evaluator_accuracy == pytest.approx(right / len(scored), abs=1e-12), log.read_text()[
        -2000:
    ]


async def test_a_trainer_killed_mid_stream_learns_each_labelled_record_once(
    tmp_path, data_dir, kafka_bootstrap, connections, unique
):
    """A checkpoint says where the records still waiting for their label start
    (`resume_positions`) and how far labelTopic was read: after a SIGKILL, the restarted
    trainer's model has learnt every record once, none twice (its lineage's count)."""
    rows = 8000
    datafile = kdd_slice(data_dir, rows, tmp_path / "kdd.csv")
    folder = make_usecase(tmp_path, unique, datafile, delay="500", timeout="100000")
    algs = folder / "algs.props"
    algs.write_text(algs.read_text() + "model.checkpoint.interval=500\n")
    env = service_env(unique)
    log = tmp_path / "services.log"
    redis = connect_redis(connections)
    store = ModelStore(redis, unique, MODEL_SECRET.encode())
    try:
        with service("launch", folder, env, log), service("evaluate", folder, env, log, tmp_path):
            with service("train", folder, env, log) as trainer:
                await services_started(connections, unique)
                producing = asyncio.create_task(
                    asyncio.to_thread(run_producer, folder, env, log, 300)
                )
                checkpointed = await wait_for_checkpoint(store, learned=1500, wait_s=60)
                trainer.send_signal(signal.SIGKILL)
                trainer.wait()
            await producing
            assert checkpointed["resume_positions"], checkpointed
            assert checkpointed["resume_positions"] != checkpointed["positions"], checkpointed
            with service("train", folder, env, log):
                versions = await wait_for_versions(store, learned=rows, wait_s=120)
    finally:
        await redis.aclose()
    assert versions[-1]["records_learned"] == rows, (versions[-1], log.read_text()[-2000:])
    assert checkpointed["records_learned"] < rows


async def wait_for_checkpoint(store: ModelStore, learned: int, wait_s: float) -> dict:
    """The newest checkpoint's metadata once it learnt `learned` records."""
    async with asyncio.timeout(wait_s):
        while True:
            found = [v for v in await store.versions() if v.get("checkpoint")]
            if found and found[-1]["records_learned"] >= learned:
                return found[-1]
            await asyncio.sleep(0.2)


async def test_labels_read_before_their_records_survive_a_trainer_restart(
    tmp_path, data_dir, kafka_bootstrap, connections, unique
):
    """Labels that come before their records wait in the trainer, past the label positions a
    checkpoint resumes from. The trainer is killed once a checkpoint was taken after it read
    them; its successor learns those records when they come, each once (the lineage's count
    equals the rows), instead of dropping them at label.timeout."""
    first, then, early = 2000, 100, 600
    datafile = kdd_slice(data_dir, first + then + early, tmp_path / "kdd.csv")
    lines = datafile.read_text().splitlines()
    datafile.write_text("\n".join(lines[:first]) + "\n")
    folder = make_usecase(tmp_path, unique, datafile, delay="10", timeout="100000")
    algs = folder / "algs.props"  # every version a checkpoint: the one after `then` is one
    algs.write_text(algs.read_text() + "model.checkpoint.interval=0\n")
    env = service_env(unique)
    log = tmp_path / "services.log"
    redis = connect_redis(connections)
    store = ModelStore(redis, unique, MODEL_SECRET.encode())
    late = range(first + then + 1, first + then + early + 1)  # line numbers, from 1
    # each late line without its label, and the label, as the producer splits them
    split = LabelSplitter(KDDClassificationRecord)
    late_lines = {n: split.split(lines[n - 1].encode()) for n in late}
    try:
        with service("launch", folder, env, log):
            with service("train", folder, env, log) as trainer:
                await counters_of(connections, "trainer", unique, bool, 60)
                await asyncio.to_thread(run_producer, folder, env, log)
                await wait_for_versions(store, learned=first, wait_s=90)
                # the labels of the last `early` lines, long before their records
                await send_labels(
                    kafka_bootstrap,
                    f"{unique}.labels",
                    {f"kdd:{n}": targets for n, (_, targets) in late_lines.items()},
                )
                # then `then` labelled lines: their labels come after those, so a checkpoint
                # that learnt them has read every early label
                with datafile.open("a") as handle:
                    handle.write("\n".join(lines[first : first + then]) + "\n")
                await asyncio.to_thread(run_producer, folder, env, log)
                checkpointed = await wait_for_checkpoint(store, learned=first + then, wait_s=60)
                trainer.send_signal(signal.SIGKILL)
                trainer.wait()
            assert checkpointed["label_positions"], checkpointed
            # the records of the early labels come now, without a label of their own
            with datafile.open("a") as handle:
                handle.write("".join(value.decode() + "\n" for value, _ in late_lines.values()))
            await asyncio.to_thread(run_producer, folder, env, log)
            with service("train", folder, env, log):
                versions = await wait_for_versions(store, learned=first + then + early, wait_s=90)
    finally:
        await redis.aclose()
    assert versions[-1]["records_learned"] == first + then + early, (
        versions[-1]["records_learned"],
        log.read_text()[-2000:],
    )


async def send_labels(bootstrap: str, topic: str, labels: dict[str, list[str]]) -> None:
    """Label messages as the producer writes them (key: the source; header: the record id)."""
    producer = make_producer(bootstrap)
    await start_client(producer, bootstrap)
    try:
        for record_id, targets in labels.items():
            await producer.send(
                topic,
                Label(record_id=record_id, targets=targets).encode(),
                key=record_id.split(":")[0].encode(),
                headers=[(RECORD_ID_HEADER, record_id.encode())],
            )
        await producer.flush()
    finally:
        await producer.stop()
