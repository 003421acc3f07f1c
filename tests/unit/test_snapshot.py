"""Inference snapshots predict exactly as the live River model they were taken from.

The reference is River itself: at several points while a model learns, a snapshot's
predict_one and predict_proba_one must equal the live model's (labels with ==, probability
dicts item by item, same order, exact floats) on held-out records, on the same records with
features removed (River's most-common-path fallback) and with categories River never saw.
Then the live model keeps learning and the old snapshots must still answer what the model
answered when they were taken.
"""

from __future__ import annotations

import gzip
import itertools
import pickle
import random
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from river import (
    anomaly,
    compose,
    datasets,
    forest,
    linear_model,
    preprocessing,
    tree,
)
from river.tree.nodes.branch import DTBranch, NominalBinaryBranch, NominalMultiwayBranch
from river.tree.nodes.hatc_nodes import AdaBranchClassifier
from river.tree.splitter import HistogramSplitter, QOSplitter

from shared.algorithms import Algorithm, RiverAlgorithm
from shared.algorithms.snapshot import inference_snapshot
from shared.records import KDDClassificationRecord

Row = tuple[dict[str, Any], Any]
UNSEEN = "never-seen-category"


def nominal_stream(n: int, seed: int = 3, regression: bool = False) -> list[Row]:
    """Strings and numbers, each feature missing one time in eight; the class (or target)
    follows colour, shape and size, with 10% noise."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        x: dict[str, Any] = {
            "colour": rng.choice(["red", "green", "blue", "black", "white"]),
            "shape": rng.choice(["circle", "square", "triangle"]),
            "size": rng.random(),
            "weight": rng.gauss(5.0, 2.0),
        }
        if x["colour"] in ("red", "green") and x["size"] > 0.4:
            label = "a"
        elif x["shape"] == "square":
            label = "b"
        elif x["weight"] > 6:
            label = "c"
        else:
            label = "d"
        if rng.random() < 0.1:
            label = rng.choice("abcd")
        x = {name: value for name, value in x.items() if rng.random() > 0.125}
        y: Any = "abcd".index(label) * 10.0 + x.get("size", 0.5) if regression else label
        rows.append((x, y))
    return rows


def synth(dataset: Iterable[Row], n: int) -> list[Row]:
    return [(dict(x), y) for x, y in itertools.islice(dataset, n)]


def drifting_agrawal(n_per_concept: int, seed: int) -> list[Row]:
    """Agrawal's concepts one after the other, labels as strings (to mix with nominal_stream)."""
    concepts = [0, 2, 5, 8, 1]
    return [
        (x, str(y))
        for index, function in enumerate(concepts)
        for x, y in synth(
            datasets.synth.Agrawal(function, seed=seed + index, perturbation=0.05), n_per_concept
        )
    ]


def with_gaps(rows: list[Row], seed: int = 0) -> list[Row]:
    """The same rows, each feature missing one time in eight."""
    rng = random.Random(seed)
    return [({k: v for k, v in x.items() if rng.random() > 0.125}, y) for x, y in rows]


def friedman(n: int, seed: int = 2) -> list[Row]:
    return synth(datasets.synth.Friedman(seed=seed), n)


def split_features(model: Any) -> list[Any]:
    root = getattr(model, "_root", None)
    if not isinstance(root, DTBranch):
        return []
    return sorted({branch.feature for branch in root.iter_branches()}, key=str)


def variants(xs: list[dict[str, Any]], features: list[Any], seed: int = 0) -> list[dict]:
    """Each record as is, without one split feature, without half its features, and with
    every category replaced by one River never saw; plus the empty record."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = [{}]
    for x in xs:
        out.append(x)
        if features:
            drop = rng.choice(features)
            out.append({k: v for k, v in x.items() if k != drop})
        out.append({k: v for k, v in x.items() if rng.random() < 0.5})
        if any(isinstance(v, str) for v in x.values()):
            out.append({k: UNSEEN if isinstance(v, str) else v for k, v in x.items()})
    return out


def river_answers(model: Any, xs: list[dict], proba: bool) -> list[Any]:
    if proba:
        return [(model.predict_one(x), list(model.predict_proba_one(x).items())) for x in xs]
    return [model.predict_one(x) for x in xs]


def snapshot_answers(snapshot: Algorithm, xs: list[dict], proba: bool) -> list[Any]:
    if proba:
        return [(snapshot.predict_one(x), list(snapshot.predict_proba_one(x).items())) for x in xs]
    return [snapshot.predict_one(x) for x in xs]


def check_exact_while_learning(
    model: Any,
    rows: list[Row],
    checkpoints: list[int],
    probes: list[dict],
    proba: bool = True,
    inspect: Callable[[Any, list[dict]], None] | None = None,
) -> list[Any]:
    """Learn `rows`; at each checkpoint take a snapshot and compare it with the live model on
    the probes and their variants. Afterwards (the model having learned everything), each
    snapshot, also through a pickle round trip, must still give its checkpoint's answers."""
    algorithm = RiverAlgorithm(model)
    taken = []
    learned = 0
    for checkpoint in checkpoints:
        for x, y in rows[learned:checkpoint]:
            algorithm.learn_one(x, y)
        learned = checkpoint
        snapshot = inference_snapshot(algorithm)
        assert snapshot is not None, f"no snapshot of {type(model).__name__} at {checkpoint}"
        xs = variants(probes, split_features(model), seed=checkpoint)
        expected = river_answers(model, xs, proba)
        assert snapshot_answers(snapshot, xs, proba) == expected, f"at record {checkpoint}"
        if inspect is not None:
            inspect(model, xs)
        taken.append((snapshot, xs, expected))
    for x, y in rows[learned:]:
        algorithm.learn_one(x, y)
    changed = 0
    for snapshot, xs, expected in taken:
        assert snapshot_answers(snapshot, xs, proba) == expected
        reloaded = pickle.loads(pickle.dumps(snapshot, protocol=5))
        assert snapshot_answers(reloaded, xs, proba) == expected
        changed += river_answers(model, xs, proba) != expected
    assert changed, "the live model never changed: the independence check proves nothing"
    return [snapshot for snapshot, _, _ in taken]


def branch_types(model: Any) -> set[type]:
    return {type(branch) for branch in model._root.iter_branches()}


LEAF_MODES = ["mc", "nb", "nba"]


@pytest.mark.parametrize("leaf_prediction", LEAF_MODES)
@pytest.mark.parametrize(
    "stream",
    [
        pytest.param(lambda: synth(datasets.synth.Agrawal(seed=4), 6000), id="agrawal"),
        pytest.param(lambda: synth(datasets.synth.SEA(seed=4, noise=0.1), 6000), id="sea"),
        pytest.param(
            lambda: synth(datasets.synth.Hyperplane(seed=4, n_features=6), 6000), id="hyperplane"
        ),
        pytest.param(lambda: nominal_stream(6000), id="nominal"),
    ],
)
def test_hoeffding_tree_classifier_is_replayed_exactly(leaf_prediction: str, stream) -> None:
    rows = stream()
    model = tree.HoeffdingTreeClassifier(grace_period=50, leaf_prediction=leaf_prediction)
    snapshots = check_exact_while_learning(
        model, rows[:5000], [300, 1500, 3000, 5000], [x for x, _ in rows[5000:5300]]
    )
    assert model.n_branches > 0
    counts = snapshots[-1].describe()["snapshot"]
    assert counts["nodes"] == model.n_nodes and counts["leaves"] == model.n_leaves
    if leaf_prediction != "mc":
        assert counts["naive_bayes_leaves"] > 0


@pytest.mark.parametrize("binary_split", [False, True])
def test_nominal_branches_missing_features_and_unseen_categories(binary_split: bool) -> None:
    rows = nominal_stream(8000, seed=11)
    model = tree.HoeffdingTreeClassifier(grace_period=40, delta=1e-3, binary_split=binary_split)
    check_exact_while_learning(
        model, rows[:7000], [500, 2000, 7000], [x for x, _ in rows[7000:7400]]
    )
    wanted = NominalBinaryBranch if binary_split else NominalMultiwayBranch
    assert wanted in branch_types(model)


@pytest.fixture(scope="module")
def kdd(data_dir: Path) -> dict[str, list[Row]]:
    """The file's first 21,000 rows (almost all `normal` or `smurf`), and a sample across the
    whole file: every 25th row to learn, rows in between to probe."""
    parts: dict[str, list[Row]] = {"first": [], "sample": [], "sample_probes": []}
    with gzip.open(data_dir / "kdd-cup-99" / "kddcup.data_10_percent.gz", "rt") as lines:
        for index, line in enumerate(lines):
            if index < 21000:
                part = "first"
            elif index % 25 == 0:
                part = "sample"
            elif index % 500 == 12:
                part = "sample_probes"
            else:
                continue
            record = KDDClassificationRecord.parse(line)
            parts[part].append((record.values, record.targets[0]))
    return parts


@pytest.mark.parametrize("leaf_prediction", LEAF_MODES)
@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"grace_period": 200, "max_depth": 20}, id="shipped"),
        pytest.param({"grace_period": 50, "max_depth": 20, "delta": 1e-3}, id="eager"),
    ],
)
def test_kdd_first_rows_are_replayed_exactly(
    kdd: dict[str, list[Row]], leaf_prediction: str, params: dict[str, Any]
) -> None:
    """The use case's tree on the file's first 20,000 rows (with the shipped parameters it
    stays one naive Bayes leaf over 41 features and 9 classes; an eager one splits)."""
    rows = kdd["first"]
    model = tree.HoeffdingTreeClassifier(leaf_prediction=leaf_prediction, **params)
    probes = [x for x, _ in rows[20000:]][::4] + [x for x, _ in rows[:20000:100]]
    check_exact_while_learning(model, rows[:20000], [2000, 8000, 14000, 20000], probes)
    if "delta" in params:
        assert NominalMultiwayBranch in branch_types(model)


@pytest.mark.parametrize("leaf_prediction", LEAF_MODES)
def test_kdd_sample_of_the_whole_file_is_replayed_exactly(
    kdd: dict[str, list[Row]], leaf_prediction: str
) -> None:
    """The shipped parameters on every 25th row of the whole file: a tree with nominal
    multiway branches (service, protocol_type) and leaves of many classes."""
    rows = kdd["sample"]
    model = tree.HoeffdingTreeClassifier(
        grace_period=200, max_depth=20, leaf_prediction=leaf_prediction
    )
    probes = [x for x, _ in kdd["sample_probes"]]
    check_exact_while_learning(model, rows[:16000], [3000, 8000, 16000], probes)
    assert NominalMultiwayBranch in branch_types(model)


def test_extremely_fast_decision_tree_is_replayed_exactly() -> None:
    rows = drifting_agrawal(1200, seed=5) + nominal_stream(1500, seed=6)
    model = tree.ExtremelyFastDecisionTreeClassifier(grace_period=50, min_samples_reevaluate=50)
    check_exact_while_learning(
        model, rows[:7000], [1000, 3000, 5000, 7000], [x for x, _ in rows[7000:]]
    )
    assert model.n_branches > 0


@pytest.mark.parametrize("leaf_prediction", LEAF_MODES)
def test_hoeffding_adaptive_tree_classifier_is_replayed_exactly(leaf_prediction: str) -> None:
    """Drifting concepts grow alternate trees, whose leaves River adds to the vote; one seen
    twice on a most-common-path fallback counts twice (River's walk yields it twice)."""
    rows = drifting_agrawal(3000, seed=1) + nominal_stream(3000, seed=2)
    model = tree.HoeffdingAdaptiveTreeClassifier(
        grace_period=30, leaf_prediction=leaf_prediction, seed=1
    )
    reached_alternates = []

    def count_alternates(live: Any, xs: list[dict]) -> None:
        if isinstance(live._root, AdaBranchClassifier):
            reached_alternates.extend(len(live._root.traverse(x)) - 1 for x in xs)

    checkpoints = list(range(500, 17001, 500))
    probes = [x for x, _ in rows[17000:]][::10]
    check_exact_while_learning(model, rows[:17000], checkpoints, probes, inspect=count_alternates)
    assert max(reached_alternates) > 0, "no alternate tree was ever reached"


def test_arf_classifier_is_replayed_exactly() -> None:
    rows = drifting_agrawal(1000, seed=7) + nominal_stream(1500, seed=8)
    model = forest.ARFClassifier(n_models=4, seed=3, grace_period=30)
    check_exact_while_learning(
        model, rows[:6000], [100, 1500, 3500, 6000], [x for x, _ in rows[6000:]][::2]
    )


@pytest.mark.parametrize(
    ("leaf_prediction", "stream"),
    [
        pytest.param("mean", lambda: nominal_stream(6000, regression=True), id="mean-nominal"),
        pytest.param("mean", lambda: with_gaps(friedman(6000)), id="mean-numeric"),
        # River's linear leaf models take numbers only
        pytest.param("model", lambda: with_gaps(friedman(6000)), id="model-numeric"),
        pytest.param("adaptive", lambda: with_gaps(friedman(6000)), id="adaptive-numeric"),
    ],
)
def test_hoeffding_tree_regressor_is_replayed_exactly(leaf_prediction: str, stream) -> None:
    rows = stream()
    model = tree.HoeffdingTreeRegressor(grace_period=50, leaf_prediction=leaf_prediction)
    check_exact_while_learning(
        model, rows[:5500], [500, 3000, 5500], [x for x, _ in rows[5500:]], proba=False
    )
    assert model.n_branches > 0


def test_numeric_multiway_branches_are_replayed_exactly() -> None:
    rows = synth(datasets.synth.Friedman(seed=5), 5000)
    model = tree.HoeffdingTreeRegressor(
        grace_period=50, splitter=QOSplitter(radius=0.1, allow_multiway_splits=True)
    )
    probes = [x for x, _ in rows[4500:]] + [{**x, 0: x[0] * 3 - 1} for x, _ in rows[4500:]]
    check_exact_while_learning(model, rows[:4500], [1000, 4500], probes, proba=False)
    assert tree.nodes.branch.NumericMultiwayBranch in branch_types(model)


@pytest.mark.parametrize("leaf_prediction", ["mean", "adaptive"])
def test_hoeffding_adaptive_tree_regressor_is_replayed_exactly(leaf_prediction: str) -> None:
    rows = synth(
        datasets.synth.FriedmanDrift(drift_type="gra", seed=3, position=(2000, 4000)), 6000
    )
    model = tree.HoeffdingAdaptiveTreeRegressor(
        grace_period=50, leaf_prediction=leaf_prediction, seed=1
    )
    check_exact_while_learning(
        model,
        rows[:5500],
        list(range(500, 5501, 500)),
        [x for x, _ in rows[5500:]][::2],
        proba=False,
    )


def test_pipeline_keeps_its_first_steps_and_snapshots_the_last() -> None:
    rows = synth(datasets.synth.Agrawal(seed=9), 4000)
    model = preprocessing.StandardScaler() | tree.HoeffdingTreeClassifier(grace_period=50)
    snapshots = check_exact_while_learning(
        model, rows[:3500], [500, 3500], [x for x, _ in rows[3500:]]
    )
    assert snapshots[0].describe()["snapshot"]["pipeline_steps_kept"] == 1


@pytest.mark.parametrize(
    "model",
    [
        pytest.param(linear_model.LogisticRegression(), id="logistic-regression"),
        pytest.param(anomaly.HalfSpaceTrees(), id="anomaly-detector"),
        pytest.param(tree.SGTClassifier(), id="stochastic-gradient-tree"),
        pytest.param(compose.Pipeline(preprocessing.StandardScaler()), id="transformer-pipeline"),
        pytest.param(
            tree.HoeffdingTreeClassifier(leaf_prediction="nb", splitter=HistogramSplitter()),
            id="naive-bayes-through-histograms",
        ),
    ],
)
def test_models_without_a_compact_form_give_none(model: Any) -> None:
    algorithm = RiverAlgorithm(model)
    for x, y in synth(datasets.synth.Agrawal(seed=1), 300):
        algorithm.learn_one(x, y)
    assert inference_snapshot(algorithm) is None


def test_an_algorithm_that_is_not_river_gives_none() -> None:
    class Constant(Algorithm):
        def learn_one(self, x: dict, y: Any) -> None:
            pass

        def predict_one(self, x: dict) -> Any:
            return "a"

    assert inference_snapshot(Constant()) is None
    assert Constant().predict_proba_one({}) is None


def trained(n: int = 500) -> RiverAlgorithm:
    algorithm = RiverAlgorithm(tree.HoeffdingTreeClassifier(grace_period=50))
    for x, y in synth(datasets.synth.Agrawal(seed=2), n):
        algorithm.learn_one(x, y)
    return algorithm


def test_a_snapshot_refuses_to_learn() -> None:
    snapshot = inference_snapshot(trained())
    with pytest.raises(TypeError, match="an inference snapshot does not learn"):
        snapshot.learn_one({"age": 30}, 1)
    with pytest.raises(TypeError, match="an inference snapshot does not learn"):
        snapshot.learn_many([{"age": 30}], [1])
    assert snapshot.incremental is False


def test_a_snapshot_describes_what_it_is() -> None:
    algorithm = trained(2000)
    description = inference_snapshot(algorithm).describe()
    assert description["algorithm"] == "HoeffdingTreeClassifier"
    assert description["incremental"] is False
    assert description["snapshot"]["of"].endswith("HoeffdingTreeClassifier")
    assert description["snapshot"]["records_learned"] == 2000
    assert description["snapshot"]["nodes"] == algorithm.model.n_nodes
    assert description["snapshot"]["leaves"] == algorithm.model.n_leaves


def test_before_any_learning_a_snapshot_predicts_none_like_the_model() -> None:
    algorithm = RiverAlgorithm(tree.HoeffdingTreeClassifier())
    snapshot = inference_snapshot(algorithm)
    x = {"age": 30.0}
    assert snapshot.predict_one(x) is None is algorithm.predict_one(x)
    assert snapshot.predict_proba_one(x) is None is algorithm.predict_proba_one(x)


def test_river_algorithm_predict_proba_one_is_rivers() -> None:
    algorithm = trained()
    x = {"salary": 50000.0, "age": 40, "loan": 100000.0}
    assert algorithm.predict_proba_one(x) == algorithm.model.predict_proba_one(x)
    regressor = RiverAlgorithm(tree.HoeffdingTreeRegressor())
    regressor.learn_one({"a": 1.0}, 2.0)
    assert regressor.predict_proba_one({"a": 1.0}) is None


def test_river_algorithm_says_none_when_the_model_has_no_probabilities() -> None:
    class NoProbabilities:
        """River's way: base.Classifier.predict_proba_one raises NotImplementedError."""

        def learn_one(self, x: dict, y: Any) -> None:
            pass

        def predict_one(self, x: dict) -> Any:
            return "a"

        def predict_proba_one(self, x: dict) -> dict:
            raise NotImplementedError

    algorithm = RiverAlgorithm(NoProbabilities())
    algorithm.learn_one({"a": 1.0}, "a")
    assert algorithm.predict_proba_one({"a": 1.0}) is None


def test_predict_proba_many_of_a_snapshot_is_rivers_record_by_record() -> None:
    algorithm = trained(3000)
    snapshot = inference_snapshot(algorithm)
    xs = [x for x, _ in drifting_agrawal(200, seed=11)]
    expected = [algorithm.model.predict_proba_one(x) for x in xs]
    assert snapshot.predict_proba_many(xs) == expected
    assert algorithm.predict_proba_many(xs) == expected
    assert len({tuple(sorted(proba.items())) for proba in expected}) > 10  # not all one leaf
