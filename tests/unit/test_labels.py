"""Delayed labels as pure logic: delays, the producer's held labels, the join by record id."""

import asyncio
import gzip
import itertools
import json
import pickle
import threading

import pytest
from aiokafka.structs import ConsumerRecord
from river import stream, tree

from services.evaluator.labels import DelayedLabels
from services.evaluator.scoring import Scorer
from services.producer.labels import LabelSplitter, ProducerLabels
from services.producer.source import Line
from services.trainer.learner import Learner
from services.trainer.service import Trainer
from shared.algorithms.river_algorithm import RiverAlgorithm
from shared.config import ConnectionSettings, load_usecase
from shared.config.models import StreamingConfig
from shared.errors import StreamerError
from shared.labels import Delay, HeldLabels, LabelJoin, parse_delay
from shared.metrics.evaluation import MetricSet
from shared.metrics.registry import build_metrics
from shared.records.builtin import KDDClassificationRecord
from shared.wire.kafka import Label, Output, Timings

KDD_LINE = (
    "0,tcp,http,SF,181,5450,0,0,0,0,0,1,0,0,0,0,0,0,0,0,0,0,8,8,0.00,0.00,0.00,0.00,1.00,0.00,"
    "0.00,9,9,1.00,0.00,0.11,0.00,0.00,0.00,0.00,0.00,smurf."
)


@pytest.mark.parametrize(
    ("text", "delay"),
    [
        ("1000", Delay(records=1000)),
        (" 7 ", Delay(records=7)),
        (1000, Delay(records=1000)),
        ("5s", Delay(seconds=5.0)),
        ("250ms", Delay(seconds=0.25)),
        ("1.5 s", Delay(seconds=1.5)),
        ("2m", Delay(seconds=120.0)),
        ("1h", Delay(seconds=3600.0)),
    ],
)
def test_delays_in_records_or_time(text, delay):
    assert parse_delay(text) == delay
    assert parse_delay(str(delay)) == delay  # what the props files and the API show reads back


@pytest.mark.parametrize("text", ["", "5 sec", "-3", "1.5", "s", "1e3", True])
def test_what_is_no_delay_is_refused_naming_it(text):
    with pytest.raises(ValueError, match=r"delay|whole number"):
        parse_delay(text)


def _streaming(**keys):
    base = {"mainTopic": "in", "outputTopic": "out", "problem.type": "KDDClassification"}
    return StreamingConfig.model_validate({**base, **keys})


def test_label_keys_are_validated_together():
    assert _streaming(labelTopic="labels", **{"label.delay": "1000"}).problems() == []
    assert _streaming().label_timeout == Delay(records=100_000)  # bounded by default
    assert [key for key, _ in _streaming(**{"label.delay": "5s"}).problems()] == ["label.delay"]
    assert [key for key, _ in _streaming(labelTopic="in").problems()] == ["labelTopic"]
    learn = _streaming(labelTopic="labels", **{"launcher.learn": "true"})
    assert [key for key, _ in learn.problems()] == ["launcher.learn"]
    zero = _streaming(labelTopic="labels", **{"label.timeout": "0"})
    assert [key for key, _ in zero.problems()] == ["label.timeout"]


def test_held_labels_come_as_rivers_simulate_qa_reveals_them():
    """Record by record, the labels the producer sends with each record are the answers River
    reveals before that record's question (an outside reference)."""
    rows = [({"x": i}, i) for i in range(25)]
    revealed_before: dict[int, list[int]] = {}
    asked = -1
    for i, _, y in stream.simulate_qa(rows, moment=None, delay=7):
        if y is None:
            asked = i
        else:
            revealed_before.setdefault(asked + 1, []).append(i)
    held: HeldLabels[int] = HeldLabels(Delay(records=7))
    sent_with: dict[int, list[int]] = {}
    for i in range(25):
        held.hold(i, i, now_s=0.0)
        sent_with[i] = [line for line, _ in held.due(now_s=0.0)]
    ending = [line for line, _ in held.drain()]
    # River reveals the label of record i right before record i + 7 is asked; the producer
    # sends it in the same transaction as record i + 7; the rest at the end in both.
    assert {k: v for k, v in sent_with.items() if v} == {
        k: v for k, v in revealed_before.items() if k < 25
    }
    assert ending == revealed_before.get(25, [])


def test_held_labels_in_time():
    held: HeldLabels[str] = HeldLabels(Delay(seconds=5.0))
    held.hold(1, "a", now_s=10.0)
    held.hold(2, "b", now_s=12.0)
    assert held.due(now_s=14.9) == [] and held.seconds_to_next(14.9) == pytest.approx(0.1)
    assert held.due(now_s=15.0) == [(1, "a")]
    assert held.due(now_s=20.0) == [(2, "b")] and held.seconds_to_next(20.0) is None


def test_the_label_is_taken_out_of_the_line_as_the_record_class_reads_it():
    splitter = LabelSplitter(KDDClassificationRecord)
    value, targets = splitter.split(KDD_LINE.encode())
    assert targets == ["smurf"]
    assert value == KDD_LINE.removesuffix("smurf.").encode()
    unlabelled = KDDClassificationRecord.parse(value.decode())  # parses: no label yet
    assert unlabelled.targets == [] and unlabelled.values["service"] == "http"
    assert splitter.split(b"not,a,kdd,line") == (b"not,a,kdd,line", None)  # the launcher says why


def test_producer_labels_travel_as_label_messages():
    labels = ProducerLabels("labels", Delay(records=1), LabelSplitter(KDDClassificationRecord), "f")
    sent, due = labels.send([Line(3, KDD_LINE.encode())], now_s=0.0)
    assert due == [] and not sent[0].value.endswith(b"smurf.")
    sent, due = labels.send([Line(4, KDD_LINE.encode())], now_s=0.0)
    assert [line.number for line in due] == [3]
    assert Label.decode(due[0].value) == Label(record_id="f:3", targets=["smurf"])


def test_the_join_pairs_whichever_comes_first():
    join: LabelJoin[str, str] = LabelJoin(Delay(records=100))
    assert join.add_item("a", "prediction a", now_s=0) is None
    assert join.add_label("a", "label a", now_s=0) == ("prediction a", "label a")
    assert join.add_label("b", "label b", now_s=0) is None  # before its record
    assert join.add_item("b", "prediction b", now_s=0) == ("prediction b", "label b")
    assert len(join) == 0 and join.joined == 2


def test_labels_waiting_at_a_checkpoint_wait_again_after_a_restart():
    """A label read before its record is past the label positions a checkpoint resumes from:
    the checkpoint keeps it (early_labels, JSON in the model metadata) and a restarted join
    holds it again, its timeout starting over."""
    join: LabelJoin[str, list[str]] = LabelJoin(Delay(records=2))
    join.add_item("a", "record a", now_s=0)
    join.add_label("b", ["smurf"], now_s=0)  # before its record
    join.add_label("c", ["normal"], now_s=0)
    assert join.early_labels() == {"b": ["smurf"], "c": ["normal"]}  # oldest first
    restarted: LabelJoin[str, list[str]] = LabelJoin(Delay(records=2))
    restarted.restore_labels(json.loads(json.dumps(join.early_labels())), now_s=50)
    assert restarted.add_item("c", "record c", now_s=51) == ("record c", ["normal"])
    restarted.add_item("x", "record x", now_s=51)
    assert restarted.expire(now_s=51).labels == 1  # b: two records came since the restart
    assert restarted.early_labels() == {}


def test_what_waits_beyond_the_timeout_in_records_is_dropped_and_counted():
    join: LabelJoin[int, str] = LabelJoin(Delay(records=3))
    for i in range(5):
        join.add_item(str(i), i, now_s=0)
    join.add_label("orphan", "x", now_s=0)
    dropped = join.expire(now_s=0)
    assert (dropped.items, dropped.labels) == (2, 0)  # items 0 and 1 saw 3 records go by
    assert list(join.items) == ["2", "3", "4"] and join.oldest_item() == 2
    for i in range(5, 8):
        join.add_item(str(i), i, now_s=0)
    dropped = join.expire(now_s=0)
    assert (dropped.items, dropped.labels) == (3, 1)
    assert (join.expired.items, join.expired.labels) == (5, 1)
    assert join.add_label("0", "too late", now_s=0) is None  # its record was dropped


def test_what_waits_beyond_the_timeout_in_time_is_dropped_and_the_join_pickles():
    join: LabelJoin[int, str] = LabelJoin(Delay(seconds=10))
    join.add_item("a", 1, now_s=100.0)
    join.add_item("b", 2, now_s=105.0)
    assert join.expire(now_s=109.9).items == 0
    assert join.expire(now_s=110.0).items == 1
    restored = pickle.loads(pickle.dumps(join))  # the evaluator's checkpoint holds it
    assert restored.add_label("b", "y", now_s=111.0) == (2, "y")
    assert restored.expired.items == 1


def _unlabelled_output(offset: int, prediction: str) -> ConsumerRecord:
    value = Output(
        id=f"in/0/{offset}",
        record_id=f"s:{offset}",
        usecase="uc",
        source="s",
        event_time=None,
        targets=[],
        prediction=prediction,
        model_version=1,
        timings=Timings(produced=None, consumed=None, predicted=None),
    ).encode()
    return ConsumerRecord("out", 0, offset, 0, 0, b"s", value, None, 1, len(value), [])


def _label(offset: int, record: int, target: str) -> ConsumerRecord:
    value = Label(record_id=f"s:{record}", targets=[target]).encode()
    return ConsumerRecord("labels", 0, offset, 0, 0, b"s", value, None, 1, len(value), [])


def test_the_evaluator_scores_an_output_when_its_label_arrives():
    scorer = Scorer(MetricSet(build_metrics(["Accuracy"]), window=10), None, {}, "batch", False)
    scorer.progress.labels = DelayedLabels.waiting_at_most(Delay(records=2))
    first = scorer.evaluate([_unlabelled_output(0, "a"), _unlabelled_output(1, "b")], 1000)
    assert first.pairs["cumulative"] == 0  # nothing to score yet: the labels are late
    # the label of record 0 comes (right), record 1's (wrong) comes before record 2's output
    second = scorer.evaluate(
        [_unlabelled_output(2, "c")], 2000, [_label(0, 0, "a"), _label(1, 1, "x")]
    )
    assert second.pairs["batch"] == 2 and second.views["cumulative"]["accuracy"] == 0.5
    assert (second.expired.items, second.expired.labels) == (0, 0)
    # two more outputs: record 2 waited 2 records for its label, and is dropped
    third = scorer.evaluate([_unlabelled_output(3, "d"), _unlabelled_output(4, "e")], 3000)
    assert third.expired.items == 1 and scorer.progress.labels.offsets == {0: 2}
    late = scorer.evaluate([], 4000, [_label(2, 2, "c"), _label(3, 3, "d")])
    assert late.pairs["cumulative"] == 3 and late.views["cumulative"]["accuracy"] == 2 / 3
    assert scorer.progress.labels.join.expired.items == 1
    assert len(scorer.progress.labels.join.labels) == 1  # record 2's label, too late: waits


def test_the_trainer_learns_a_record_when_its_label_arrives(data_dir):
    """The learner's model after records and their late labels is River's tree after learning
    the same records in the labels' order (an outside reference)."""
    with gzip.open(data_dir / "kdd-cup-99" / "kddcup.data_10_percent.gz", "rt") as source:
        # every 250th of the first 150,000 rows: 10 classes
        lines = [line.rstrip("\n") for line in itertools.islice(source, 249, 150_000, 250)]
    splitter = LabelSplitter(KDDClassificationRecord)
    learner = Learner("uc", b"secret", KDDClassificationRecord, None, threading.Event())
    learner.model = RiverAlgorithm(tree.HoeffdingTreeClassifier(grace_period=50))
    learner.waiting = LabelJoin(Delay(records=1000))
    try:
        messages = []
        for number, line in enumerate(lines, 1):
            value, _ = splitter.split(line.encode())
            headers = [("record-id", f"s:{number}".encode())]
            messages.append(ConsumerRecord("in", 0, number, 0, 0, b"s", value, None, 1, 1, headers))
        assert learner._learn_messages(messages).records == 0  # nothing to learn yet
        labels = [  # the labels of the even lines, in reverse, and one of no record
            _label(offset, number, KDDClassificationRecord.parse(lines[number - 1]).targets[0])
            for offset, number in enumerate(range(600, 0, -2))
        ] + [_label(300, 9999, "normal")]
        assert learner._learn_labels(labels).records == 300
        assert len(learner.waiting.items) == 300 and len(learner.waiting.labels) == 1
        assert learner.model.n_learned == 300
        # a restart reads the input again from the oldest record still waiting (line 1)
        read = {"in/0": 601, "other/0": 7}
        assert learner._resume_positions(dict(read)) == {"in/0": 1, "other/0": 7}
    finally:
        learner.close()
    reference = tree.HoeffdingTreeClassifier(grace_period=50)
    for number in range(600, 0, -2):
        record = KDDClassificationRecord.parse(lines[number - 1])
        reference.learn_one(record.values, record.targets[0])
    records = [KDDClassificationRecord.parse(line) for line in lines]
    assert [learner.model.model.predict_one(r.values) for r in records] == [
        reference.predict_one(r.values) for r in records
    ]


def test_a_batch_algorithm_with_delayed_labels_is_refused_naming_the_keys(tmp_path):
    """Refits read the stored records, which come without their labels."""
    folder = tmp_path / "uc"
    folder.mkdir()
    (folder / "streaming.props").write_text(
        "mainTopic=in\noutputTopic=out\nlabelTopic=labels\nproblem.type=KDDClassification\n"
    )
    (folder / "algs.props").write_text("algorithm=sklearn.tree.DecisionTreeClassifier\n")
    trainer = Trainer(load_usecase(folder, ConnectionSettings()), asyncio.Event())
    with pytest.raises(StreamerError, match="labelTopic=labels needs an algorithm"):
        asyncio.run(trainer.run())
