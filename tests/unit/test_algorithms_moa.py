"""MOA learners through capymoa (`algorithm=moa.<Name>`), in a real JVM; no service needed
(the moa extra and the compiled helper come with make install).

The outside reference is MOA itself: its own test-then-train loop (capymoa's
prequential_evaluation, Java's EfficientEvaluationLoops) on an ARFF file of the same KDD rows.
"""

from __future__ import annotations

import json
import math
import pickle
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from benchmarks.moa import kdd_rows, moa_own_loop, write_arff
from shared.algorithms.moa import MOAAlgorithm
from shared.algorithms.registry import build
from shared.errors import StreamerError

REPO = Path(__file__).resolve().parents[2]
PREQUENTIAL_ROWS = 50_000
KDD_CLASSES = 23


@pytest.fixture(scope="module")
def kdd(data_dir: Path) -> list[tuple[dict[str, Any], str]]:
    return kdd_rows(data_dir, PREQUENTIAL_ROWS)


def tree(**params: str) -> MOAAlgorithm:
    algorithm = build("moa.HoeffdingTree", params, None, classes_number=KDD_CLASSES)
    assert isinstance(algorithm, MOAAlgorithm)
    return algorithm


def in_batches(rows: list, size: int):
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        yield [x for x, _ in chunk], [y for _, y in chunk]


def test_prequential_accuracy_on_50k_kdd_rows_is_moa_own(kdd, tmp_path: Path) -> None:
    arff = write_arff(kdd, tmp_path / "kdd.arff")  # values listed in order of appearance
    reference = moa_own_loop(arff, len(kdd))["accuracy"]
    algorithm = tree()
    correct = 0
    for xs, ys in in_batches(kdd, 1000):
        predictions = algorithm.predict_learn_many(xs, ys)
        correct += sum(p == y for p, y in zip(predictions, ys, strict=True))
    accuracy = correct / len(kdd)
    assert abs(accuracy - reference) <= 0.005, (accuracy, reference)
    # the same indexes as MOA's header: only the first record differs (MOA "predicts" the
    # first class with an empty model, we say None)
    assert abs(accuracy - reference) <= 1 / len(kdd) + 1e-9, (accuracy, reference)
    assert algorithm.describe()["records_learned"] == len(kdd)


def test_batches_predict_exactly_what_the_per_record_loop_predicts(kdd) -> None:
    rows = kdd[:6000]
    one_by_one, per_record = tree(), []
    for x, y in rows:
        per_record.append(one_by_one.predict_one(x))
        one_by_one.learn_one(x, y)

    batched, tested = tree(), []
    for xs, ys in in_batches(rows, 700):
        tested += batched.predict_learn_many(xs, ys)
    assert tested == per_record
    assert per_record[0] is None and None not in per_record[1:]

    # the trainer's learn_many and the launcher's predict_many: the same model as learn_one
    split = tree()
    for xs, ys in in_batches(rows[:5000], 900):
        split.learn_many(xs, ys)
    later = [x for x, _ in rows[5000:]]
    reference = tree()
    for x, y in rows[:5000]:
        reference.learn_one(x, y)
    assert split.predict_many(later) == [reference.predict_one(x) for x in later]


def test_pickle_round_trip_predicts_the_same_in_a_fresh_process(kdd, tmp_path: Path) -> None:
    algorithm = tree(grace_period="100")
    for xs, ys in in_batches(kdd[:8000], 1000):
        algorithm.learn_many(xs, ys)
    xs = [x for x, _ in kdd[8000:12000]]
    expected = algorithm.predict_many(xs)
    payload = pickle.dumps(algorithm)
    assert pickle.loads(payload).predict_many(xs) == expected

    (tmp_path / "model.pkl").write_bytes(payload)
    (tmp_path / "xs.json").write_text(json.dumps(xs))
    script = textwrap.dedent(
        """
        import json, pickle, sys
        algorithm = pickle.loads(open(sys.argv[1], "rb").read())
        print(json.dumps({"predictions": algorithm.predict_many(json.load(open(sys.argv[2]))),
                          "describe": algorithm.describe()}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "model.pkl"), str(tmp_path / "xs.json")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.splitlines()[-1])
    assert loaded["predictions"] == expected
    assert loaded["describe"]["records_learned"] == 8000
    assert loaded["describe"]["moa_class"] == "moa.classifiers.trees.HoeffdingTree"


def test_an_untrained_model_predicts_none_and_pickles() -> None:
    algorithm = pickle.loads(pickle.dumps(tree()))
    assert algorithm.predict_many([{"a": 1.0}, {"a": 2.0}]) == [None, None]
    assert algorithm.predict_proba_one({"a": 1.0}) is None


def test_predict_proba_one_is_normalised_and_agrees_with_predict_one(kdd) -> None:
    algorithm = tree()
    for xs, ys in in_batches(kdd[:3000], 1000):
        algorithm.learn_many(xs, ys)
    for x, _ in kdd[3000:3050]:
        proba = algorithm.predict_proba_one(x)
        assert proba is not None
        assert math.isclose(sum(proba.values()), 1.0)
        assert max(proba, key=proba.get) == algorithm.predict_one(x)


def test_predict_proba_many_gives_each_records_votes_in_one_batch() -> None:
    algorithm = build("moa.NaiveBayes", {}, None, classes_number=3)
    randomness = random.Random(7)
    xs = [{"colour": randomness.choice("rgb"), "size": randomness.random()} for _ in range(300)]
    algorithm.learn_many(xs, ["big" if x["size"] > 0.5 else "small" for x in xs])
    batch = algorithm.predict_proba_many(xs[:50])
    assert batch == [algorithm.predict_proba_one(x) for x in xs[:50]]
    assert len({tuple(sorted(proba.items())) for proba in batch if proba}) > 10  # rows not mixed
    assert [max(proba, key=proba.get) for proba in batch if proba] == algorithm.predict_many(
        xs[:50]
    )


def test_missing_features_and_unseen_categories_are_predicted() -> None:
    algorithm = build("moa.NaiveBayes", {}, None, classes_number=3)
    randomness = random.Random(5)
    xs = [{"colour": randomness.choice("rgb"), "size": randomness.random()} for _ in range(300)]
    ys = ["big" if x["size"] > 0.5 else "small" for x in xs]
    algorithm.learn_many(xs, ys)
    predictions = algorithm.predict_many(
        [{"colour": "never-seen", "size": 0.9}, {"size": 0.1}, {"colour": "r", "size": None}, {}]
    )
    assert predictions[:2] == ["big", "small"]
    assert all(prediction in ("big", "small") for prediction in predictions)
    # a feature first seen after the schema was fixed is ignored, not an error
    algorithm.learn_one({"colour": "g", "size": 0.7, "weight": 3.0}, "big")
    assert algorithm.describe()["features"] == 2


def test_labels_beyond_classes_number_are_skipped_and_counted() -> None:
    algorithm = build("moa.HoeffdingTree", {}, None, classes_number=2)
    algorithm.learn_many(
        [{"v": 1.0}, {"v": 2.0}, {"v": 3.0}, {"v": 4.0}, {"v": 5.0}], ["a", "b", "c", "a", None]
    )
    described = algorithm.describe()
    assert described["records_learned"] == 3
    assert described["records_skipped"] == 1  # "c"; the unlabelled record is just not learned
    assert described["labels"] == ["a", "b"]


def test_a_numeric_feature_given_text_is_an_error_naming_it() -> None:
    algorithm = tree()
    algorithm.learn_one({"duration": 1.0, "flag": "SF"}, "normal")
    with pytest.raises(StreamerError, match=r"feature 'duration' is numeric .* 'abc'"):
        algorithm.learn_one({"duration": "abc", "flag": "SF"}, "normal")


def test_a_regressor_learns_a_line() -> None:
    algorithm = build("moa.FIMTDD", {}, None)
    randomness = random.Random(2)
    xs = [{"x": randomness.uniform(0, 10), "noise": randomness.random()} for _ in range(3000)]
    ys = [3.0 * x["x"] + 1.0 for x in xs]
    algorithm.learn_many(xs[:2500], ys[:2500])
    predictions = algorithm.predict_many(xs[2500:])
    error = sum(abs(p - y) for p, y in zip(predictions, ys[2500:], strict=True)) / 500
    spread = sum(abs(y - 16.0) for y in ys[2500:]) / 500  # the mean's error, about 7.5
    assert error < spread / 5, (error, spread)
    assert algorithm.predict_proba_one(xs[0]) is None


@pytest.mark.parametrize(
    ("name", "estimator"),
    [
        ("moa.AdaptiveRandomForest", "AdaptiveRandomForestClassifier"),
        ("moa.HoeffdingAdaptiveTree", "HoeffdingAdaptiveTree"),
        ("moa.StochasticGradientTree", "classifier._sgt.StochasticGradientTree"),
        ("moa.regressor.StochasticGradientTree", "regressor._sgt.StochasticGradientTree"),
    ],
)
def test_names_resolve_to_capymoa_learners(name: str, estimator: str) -> None:
    algorithm = build(name, {}, None, classes_number=KDD_CLASSES)
    assert algorithm.describe()["estimator"].endswith(estimator)


def test_an_unknown_parameter_is_named_with_the_valid_ones() -> None:
    with pytest.raises(StreamerError) as caught:
        build("moa.HoeffdingTree", {"grace_periode": "50"}, Path("/x/kdd"), classes_number=23)
    message = str(caught.value)
    assert "kdd: algorithm=moa.HoeffdingTree: unknown parameter algorithm.grace_periode" in message
    assert "grace_period" in message and "split_criterion" in message
    assert "schema" not in message.split("valid parameters:")[1]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"grace_period": "many"}, r"algorithm.grace_period='many': expected int"),
        ({"split_criterion": "NoSuchCriterion"}, r"bad parameters \(split_criterion="),
    ],
)
def test_a_bad_parameter_value_is_an_error(params: dict[str, str], expected: str) -> None:
    with pytest.raises(StreamerError, match=expected):
        build("moa.HoeffdingTree", params, None, classes_number=KDD_CLASSES)


def test_an_unknown_learner_lists_the_moa_learners() -> None:
    with pytest.raises(StreamerError) as caught:
        build("moa.HoefdingTree", {}, None, classes_number=KDD_CLASSES)
    message = str(caught.value)
    assert "no such MOA learner" in message
    assert "moa.HoeffdingTree" in message and "moa.FIMTDD" in message
    assert "moa.SGDClassifier" not in message  # capymoa's scikit-learn wrapper: not MOA


def test_a_classifier_needs_classes_number() -> None:
    with pytest.raises(StreamerError, match=r"set classes\.number in algs\.props"):
        build("moa.HoeffdingTree", {}, None)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


BUILD = """
    import sys
    from shared.algorithms.registry import build
    from shared.errors import StreamerError
    try:
        build("moa.HoeffdingTree", {}, None, classes_number=23)
    except StreamerError as error:
        print(error)
        sys.exit(3)
"""


def test_importing_the_project_starts_no_jvm() -> None:
    result = run_python(
        """
        import jpype
        import shared.algorithms.moa, shared.algorithms.registry, services.cli
        assert not jpype.isJVMStarted()
        """
    )
    assert result.returncode == 0, result.stderr


def test_without_java_building_says_what_is_missing() -> None:
    result = run_python(BUILD, JAVA_HOME="/nonexistent-java", PATH="/usr/sbin:/sbin")
    assert result.returncode == 3, result.stderr
    assert "MOA learners need a Java runtime, 11 or newer" in result.stdout
    assert "/nonexistent-java" in result.stdout


def test_without_capymoa_building_says_how_to_install_it() -> None:
    result = run_python("import sys; sys.modules['capymoa'] = None\n" + textwrap.dedent(BUILD))
    assert result.returncode == 3, result.stderr
    assert "pip install -e '.[moa]'" in result.stdout


def test_without_the_compiled_helper_building_says_how_to_compile_it(tmp_path: Path) -> None:
    elsewhere = f"""
        from pathlib import Path
        import shared.algorithms.moa
        shared.algorithms.moa.helper_classes_dir = lambda: Path({str(tmp_path)!r})
    """
    result = run_python(textwrap.dedent(elsewhere) + textwrap.dedent(BUILD))
    assert result.returncode == 3, result.stderr
    assert "the MOA batch helper is not compiled" in result.stdout
    assert "-m shared.algorithms.moa compile" in result.stdout


def test_a_service_that_starts_the_jvm_in_a_worker_thread_stops_on_sigterm_and_exits() -> None:
    """The JVM must not take SIGTERM from Python's handler (the services' graceful stop), nor
    keep the process alive at exit because a worker thread created it."""
    code = """
        import asyncio, signal
        from shared.algorithms.registry import build

        async def main():
            stop = asyncio.Event()
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
            await asyncio.to_thread(build, "moa.HoeffdingTree", {}, None, classes_number=23)
            print("ready", flush=True)
            await stop.wait()
            print("stopped gracefully", flush=True)

        asyncio.run(main())
    """
    process = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready", process.stderr.read()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err[-2000:]
    assert out.strip() == "stopped gracefully"


def test_the_fast_encoding_equals_the_value_by_value_one_on_every_kind_of_value(kdd) -> None:
    """encode (numpy, the hot path) against encode_checked (one value at a time, the reference
    for its rules): same matrix and same nominal values and labels learnt, on KDD rows mixed
    with missing, None, NaN, numeric text, ints, unseen categories, extra features, unlabelled
    records and labels beyond classes.number."""
    from copy import deepcopy

    from shared.algorithms.moa import CLASSIFIER, RecordSchema

    randomness = random.Random(11)
    xs, ys = [dict(x) for x, _ in kdd[:3000]], [y for _, y in kdd[:3000]]
    for index in randomness.sample(range(len(xs)), 400):
        x = xs[index]
        match index % 8:
            case 0:
                del x["duration"]
            case 1:
                x["src_bytes"] = None
            case 2:
                x["dst_bytes"] = math.nan
            case 3:
                x["count"] = str(x["count"])  # numeric text
            case 4:
                x["srv_count"] = int(x["srv_count"])
            case 5:
                x["service"] = f"unseen-{index}"
            case 6:
                x["extra"] = 1.0
            case 7:
                x["protocol_type"] = None
        if index % 5 == 0:
            ys[index] = None  # unlabelled
    # fixed by unaltered rows; KDD has more than 10 classes: some labels are not learnt
    schema = RecordSchema.fixed_by([x for x, _ in kdd[:100]], CLASSIFIER, 10)
    reference = deepcopy(schema)
    for start in range(0, len(xs), 250):
        batch, labels = xs[start : start + 250], ys[start : start + 250]
        predicting = start % 500 == 0  # every other batch only predicts (no labels)
        fast = schema.encode(batch, None if predicting else labels)
        checked = reference.encode_checked(batch, None if predicting else labels)
        assert fast.shape == checked.shape == (len(batch), schema.width)
        assert np.array_equal(fast, checked, equal_nan=True)
    assert schema.features == reference.features
    assert schema.labels == reference.labels and schema.label_index == reference.label_index
    assert schema.ignored == reference.ignored == {"extra"}
    assert schema.encode([]).shape == (0, schema.width)
