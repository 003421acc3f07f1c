"""scikit-learn estimators through their dotted path: incremental (partial_fit) and batch."""

from __future__ import annotations

import copy
import logging
import pickle
import sys

import pytest

from shared.algorithms import SklearnAlgorithm, build
from shared.errors import StreamerError
from tests.unit.test_algorithms import kdd_like, separable

pytest.importorskip("sklearn")


def test_partial_fit_estimator_is_incremental_with_classes_from_the_first_batch() -> None:
    algorithm = build("sklearn.linear_model.SGDClassifier", {"random_state": "0"}, None)
    assert isinstance(algorithm, SklearnAlgorithm) and algorithm.incremental
    rows = separable(600)
    assert algorithm.predict_one(rows[0][0]) is None
    algorithm.learn_many([x for x, _ in rows[:300]], [y for _, y in rows[:300]])
    assert algorithm.classes == ["neg", "pos"]
    predictions = algorithm.predict_many([x for x, _ in rows[300:]])
    accuracy = sum(p == y for p, (_, y) in zip(predictions, rows[300:], strict=True)) / 300
    assert accuracy > 0.9
    assert isinstance(predictions[0], str)


def test_declared_classes_and_unseen_labels_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    algorithm = build("sklearn.naive_bayes.GaussianNB", {"classes": "normal,smurf,neptune"}, None)
    rows = kdd_like(300)
    first = [(x, y) for x, y in rows if y != "smurf"][:30]  # smurf is declared, not yet seen
    algorithm.learn_many([x for x, _ in first], [y for _, y in first])
    assert algorithm.fitted and algorithm.classes == ["normal", "smurf", "neptune"]
    with caplog.at_level(logging.WARNING):
        algorithm.learn_many([x for x, _ in rows], [y for _, y in rows])
        algorithm.learn_many([rows[0][0]], ["teardrop"])
    assert "teardrop" in caplog.text and "algorithm.classes" in caplog.text
    assert algorithm.skipped_labels == {"teardrop"}
    for x, y in rows[:200]:
        algorithm.learn_one(x, y)
    correct = sum(algorithm.predict_one(x) == y for x, y in rows if y != "smurf")
    assert correct / sum(y != "smurf" for _, y in rows) > 0.8


def test_batch_estimator_refits_on_the_window() -> None:
    algorithm = build("sklearn.tree.DecisionTreeClassifier", {"max_depth": "3"}, None)
    assert not algorithm.incremental
    rows = kdd_like(300)
    algorithm.learn_many([x for x, _ in rows], [y for _, y in rows])
    assert algorithm.predict_many([x for x, _ in rows[:50]]) == [y for _, y in rows[:50]]
    # a refit forgets the previous window
    only_smurf = [(x, y) for x, y in rows if y == "smurf"]
    algorithm.learn_many([x for x, _ in only_smurf], [y for _, y in only_smurf])
    assert set(algorithm.predict_many([x for x, _ in rows])) == {"smurf"}


def test_learn_one_waits_for_two_classes_before_the_first_partial_fit() -> None:
    algorithm = build("sklearn.naive_bayes.GaussianNB", {}, None)
    assert algorithm.incremental
    rows = sorted(separable(100), key=lambda row: row[1])  # all "neg" first
    for x, y in rows:
        frozen = copy.deepcopy(x)
        algorithm.learn_one(x, y)
        assert x == frozen
        assert algorithm.fitted == (y == "pos")
    assert algorithm.classes == ["neg", "pos"] and not algorithm.skipped_labels
    assert algorithm.predict_one({"x1": 0.95, "x2": 0.5, "colour": "red"}) == "pos"


def test_batch_learn_one_buffers_then_fits_before_predicting() -> None:
    algorithm = build("sklearn.neighbors.KNeighborsClassifier", {"n_neighbors": "3"}, None)
    rows = separable(100)
    for x, y in rows:
        frozen = copy.deepcopy(x)
        algorithm.learn_one(x, y)
        assert x == frozen
    assert algorithm.stale
    assert algorithm.predict_one({"x1": 0.95, "x2": 0.5, "colour": "red"}) == "pos"
    assert not algorithm.stale and len(algorithm.buffer) == 100


def test_regressor_targets_become_floats_and_pickle_round_trip() -> None:
    algorithm = build("sklearn.linear_model.SGDRegressor", {"random_state": "0"}, None)
    xs = [{"a": float(i % 10), "kind": "x" if i % 2 else "y"} for i in range(200)]
    algorithm.learn_many(xs, [str(2 * x["a"]) for x in xs])
    restored = pickle.loads(pickle.dumps(algorithm))
    assert restored.predict_many(xs[:20]) == algorithm.predict_many(xs[:20])
    assert isinstance(restored.predict_one(xs[0]), float)
    assert restored.describe()["library"].startswith("scikit-learn")


def test_unknown_and_bad_sklearn_params() -> None:
    with pytest.raises(StreamerError, match=r"unknown parameter algorithm\.alpah.*alpha"):
        build("sklearn.linear_model.SGDClassifier", {"alpah": "0.1"}, None)
    with pytest.raises(StreamerError, match="loss"):
        build("sklearn.linear_model.SGDClassifier", {"loss": "no-such-loss"}, None)


def test_missing_sklearn_tells_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in sys.modules if name == "sklearn" or name.startswith("sklearn.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(StreamerError, match="pip install scikit-learn"):
        build("sklearn.linear_model.SGDClassifier", {}, None)
