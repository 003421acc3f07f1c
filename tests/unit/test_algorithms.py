"""Built-in algorithms, the River wrapper, parameter parsing and the registry's resolution."""

from __future__ import annotations

import copy
import pickle
import random
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from shared.algorithms import Algorithm, RiverAlgorithm, build
from shared.algorithms.builtin import BUILTINS
from shared.algorithms.params import parse_value
from shared.errors import StreamerError

REPO = Path(__file__).resolve().parents[2]
CLASSIFIERS = [
    "HoeffdingTreeClassifier",
    "HoeffdingAdaptiveTreeClassifier",
    "ARFClassifier",
    "LogisticRegression",
]


def separable(n: int, seed: int = 7) -> list[tuple[dict[str, Any], str]]:
    """Two classes split by x1 (plus noise features and a category that follows the class)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        label = rng.choice(["pos", "neg"])
        x1 = rng.uniform(0.6, 1.0) if label == "pos" else rng.uniform(0.0, 0.4)
        colour = "red" if (label == "pos") != (rng.random() < 0.1) else "blue"
        rows.append(({"x1": x1, "x2": rng.random(), "colour": colour}, label))
    return rows


def kdd_like(n: int, seed: int = 3) -> list[tuple[dict[str, Any], str]]:
    """Three attack-like classes told apart mostly by their string categories."""
    rng = random.Random(seed)
    kinds = {
        "normal": ("tcp", ["http", "smtp", "ftp"], "SF"),
        "smurf": ("icmp", ["ecr_i"], "SF"),
        "neptune": ("tcp", ["private", "telnet"], "S0"),
    }
    rows = []
    for _ in range(n):
        label = rng.choice(list(kinds))
        protocol, services, flag = kinds[label]
        x = {
            "duration": 0.0,
            "protocol_type": protocol,
            "service": rng.choice(services),
            "flag": flag,
            "src_bytes": rng.uniform(200, 2000) if label != "smurf" else 1032.0,
            "count": rng.uniform(100, 500) if label != "normal" else rng.uniform(1, 10),
        }
        rows.append((x, label))
    return rows


def prequential_accuracy(algorithm: Algorithm, rows: list[tuple[dict[str, Any], Any]]) -> float:
    """Accuracy over the second half of a test-then-train run."""
    correct = 0
    half = len(rows) // 2
    for index, (x, y) in enumerate(rows):
        if index >= half:
            correct += algorithm.predict_one(x) == y
        algorithm.learn_one(x, y)
    return correct / (len(rows) - half)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_classifiers_learn_a_separable_problem(name: str) -> None:
    algorithm = build(name, {"seed": "1"} if name == "ARFClassifier" else {}, None)
    assert algorithm.incremental
    assert algorithm.predict_one({"x1": 0.5, "x2": 0.5, "colour": "red"}) is None
    assert prequential_accuracy(algorithm, separable(600)) > 0.85


def test_logistic_regression_learns_string_categories() -> None:
    algorithm = build("LogisticRegression", {}, None)
    assert prequential_accuracy(algorithm, kdd_like(600)) > 0.95


def test_half_space_trees_scores_an_outlier_higher() -> None:
    rng = random.Random(0)
    rows = [{"a": rng.gauss(0.5, 0.05), "b": rng.gauss(0.5, 0.05), "kind": "x"} for _ in range(800)]
    rows += [{"a": 0.0, "b": 0.0, "kind": "x"}, {"a": 1.0, "b": 1.0, "kind": "x"}]
    algorithm = build("HalfSpaceTrees", {"seed": "1", "window_size": "100"}, None)
    for x in rows:
        algorithm.learn_one(x, "ignored")
    usual = sorted(algorithm.predict_one(x) for x in rows[:100])
    assert algorithm.predict_one({"a": 0.05, "b": 0.95, "kind": "x"}) > usual[95]


def test_one_class_svm_scores_numbers_only() -> None:
    algorithm = build("OneClassSVM", {"nu": "0.2"}, None)
    before = algorithm.predict_one({"a": 3.0, "b": "text"})
    for x, _ in separable(200):
        algorithm.learn_one(x, None)
    after = algorithm.predict_one({"x1": 3.0, "x2": 0.5, "colour": "red"})
    assert isinstance(before, float) and isinstance(after, float)
    assert after != before


def test_kmeans_predicts_a_cluster_index() -> None:
    algorithm = build("KMeans", {"n_clusters": "2", "seed": "3"}, None)
    for x, _ in separable(300):
        algorithm.learn_one(x, None)
    low = algorithm.predict_one({"x1": 0.1, "x2": 0.5, "colour": "blue"})
    high = algorithm.predict_one({"x1": 0.9, "x2": 0.5, "colour": "red"})
    assert {low, high} <= {0, 1}


def every_algorithm() -> list[tuple[str, dict[str, str]]]:
    seeded = {"ARFClassifier", "HalfSpaceTrees", "KMeans"}
    cases = [(name, {"seed": "1"} if name in seeded else {}) for name in BUILTINS]
    return [
        *cases,
        ("river.tree.HoeffdingTreeRegressor", {"leaf_prediction": "mean"}),
        ("river.tree.ExtremelyFastDecisionTreeClassifier", {}),
    ]


@pytest.mark.parametrize(("name", "params"), every_algorithm())
def test_pickles_and_predicts_the_same_after(name: str, params: dict[str, str]) -> None:
    algorithm = build(name, params, None)
    rows = separable(300)

    def as_number(y: str) -> float:
        return 1.0 if y == "pos" else 0.0

    regressors = ("river.tree.HoeffdingTreeRegressor", "FederatedLinearRegression", "MLPRegressor")
    targets = dict.fromkeys(regressors, as_number)
    to_y = targets.get(name, lambda y: y)
    algorithm.learn_many([x for x, _ in rows], [to_y(y) for _, y in rows])
    restored = pickle.loads(pickle.dumps(algorithm))
    probes = [x for x, _ in separable(50, seed=11)]
    assert restored.predict_many(probes) == algorithm.predict_many(probes)
    # and both keep learning the same way
    for x, y in rows[:50]:
        algorithm.learn_one(x, to_y(y))
        restored.learn_one(x, to_y(y))
    assert restored.predict_many(probes) == algorithm.predict_many(probes)


@pytest.mark.parametrize(("name", "params"), every_algorithm())
def test_learn_one_and_predict_one_do_not_mutate_x(name: str, params: dict[str, str]) -> None:
    algorithm = build(name, params, None)
    for x, y in separable(30):
        frozen = copy.deepcopy(x)
        regressor = "Regressor" in name or name == "FederatedLinearRegression"
        label = (1.0 if y == "pos" else 0.0) if regressor else y
        algorithm.learn_one(x, label)
        algorithm.predict_one(x)
        assert x == frozen


def test_compact_pickle_drops_river_random_states() -> None:
    algorithm = build("HoeffdingTreeClassifier", {"grace_period": "50"}, None)
    rows = separable(400)
    for x, y in rows:
        algorithm.learn_one(x, y)
    assert isinstance(algorithm, RiverAlgorithm)
    plain = pickle.dumps(algorithm.model)
    compact = pickle.dumps(algorithm)
    assert len(compact) < len(plain) / 3
    restored = pickle.loads(compact)
    assert [restored.predict_one(x) for x, _ in rows] == [algorithm.predict_one(x) for x, _ in rows]


def test_regressor_target_strings_become_floats_and_describe() -> None:
    algorithm = build("river.linear_model.LinearRegression", {"l2": "0.01"}, None)
    assert algorithm.predict_one({"a": 1.0}) is None
    for value in range(50):
        algorithm.learn_one({"a": float(value)}, str(2.0 * value))
    assert isinstance(algorithm.predict_one({"a": 3.0}), float)
    described = algorithm.describe()
    assert described["algorithm"] == "river.linear_model.LinearRegression"
    assert described["kind"] == "regressor" and described["records_learned"] == 50


# -- parameters --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("200", 200),
        ("0.5", 0.5),
        ("1e-7", 1e-7),
        ("True", True),
        ("false", False),
        ("TRUE", True),
        ("None", None),
        ("['a', 'b']", ["a", "b"]),
        ("gini", "gini"),
        (" info_gain ", "info_gain"),
        ("a,b,c", "a,b,c"),
        ("python3 train.py", "python3 train.py"),
    ],
)
def test_parse_value(text: str, expected: Any) -> None:
    assert parse_value(text) == expected


def test_builtin_params_reach_the_estimator() -> None:
    algorithm = build("HoeffdingTreeClassifier", {"grace_period": "50", "delta": "1e-5"}, None)
    assert isinstance(algorithm, RiverAlgorithm)
    assert algorithm.model.grace_period == 50 and algorithm.model.delta == 1e-5


def test_dotted_river_path_with_params() -> None:
    algorithm = build(
        "river.tree.HoeffdingTreeClassifier",
        {"grace_period": "20", "split_criterion": "gini", "leaf_prediction": "mc"},
        None,
    )
    assert isinstance(algorithm, RiverAlgorithm)
    assert algorithm.model.grace_period == 20 and algorithm.model.split_criterion == "gini"
    assert prequential_accuracy(algorithm, separable(400)) > 0.85


def test_unknown_parameter_names_it_and_the_valid_ones() -> None:
    with pytest.raises(StreamerError) as error:
        build("HoeffdingTreeClassifier", {"grace_periode": "50"}, Path("/x/kdd"))
    message = str(error.value)
    assert "kdd: algorithm=HoeffdingTreeClassifier" in message
    assert "algorithm.grace_periode" in message
    assert "grace_period" in message and "max_depth" in message


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"grace_period": "abc"}, "expected int"),
        ({"grace_period": "2.5"}, "expected int"),
        ({"binary_split": "yes"}, "expected bool"),
        ({"delta": "small"}, "expected float"),
    ],
)
def test_bad_value_is_reported(params: dict[str, str], fragment: str) -> None:
    with pytest.raises(StreamerError, match=fragment) as error:
        build("HoeffdingTreeClassifier", params, None)
    assert f"algorithm.{next(iter(params))}" in str(error.value)


def test_constructor_rejection_becomes_a_streamer_error() -> None:
    with pytest.raises(StreamerError, match="bad parameters"):
        build("river.tree.HoeffdingTreeClassifier", {"splitter": "'not a splitter'"}, None)


def test_unknown_algorithm_names_use_case_name_and_places(tmp_path: Path) -> None:
    folder = tmp_path / "fraud"
    folder.mkdir()
    with pytest.raises(StreamerError) as error:
        build("HoefdingTreeClassifier", {}, folder)
    message = str(error.value)
    assert message.startswith("fraud: algorithm=HoefdingTreeClassifier")
    assert str(folder / "algs.py") in message and "no such file" in message
    assert "built-ins" in message and "ExternalAlgorithm" in message
    assert "Did you mean 'HoeffdingTreeClassifier'" in message


def test_unknown_dotted_path_says_why() -> None:
    with pytest.raises(StreamerError) as error:
        build("river.tree.NoSuchTree", {}, None, usecase_name="uc")
    assert "module river.tree has no NoSuchTree" in str(error.value)
    with pytest.raises(StreamerError, match="no module nosuchpackage"):
        build("nosuchpackage.Model", {}, None, usecase_name="uc")


def test_a_class_that_is_no_algorithm_is_refused() -> None:
    with pytest.raises(StreamerError, match="is not an algorithm"):
        build("collections.OrderedDict", {}, None)


# -- user code in the use-case folder ------------------------------------------------------

USER_ALGS = '''
from shared.algorithms.base import Algorithm


class MajorityClass(Algorithm):
    """Predicts the most frequent label seen so far."""

    def __init__(self, default="none", boost=1):
        self.default = default
        self.boost = boost
        self.counts = {}

    def learn_one(self, x, y):
        self.counts[y] = self.counts.get(y, 0) + self.boost

    def predict_one(self, x):
        if not self.counts:
            return self.default
        return max(self.counts, key=self.counts.get)


class Threshold:
    """Duck-typed: learn_one/predict_one, no base class."""

    def __init__(self, feature="x1"):
        self.feature = feature
        self.sums = {}

    def learn_one(self, x, y):
        total, count = self.sums.get(y, (0.0, 0))
        self.sums[y] = (total + x[self.feature], count + 1)

    def predict_one(self, x):
        if not self.sums:
            return None
        means = {y: total / count for y, (total, count) in self.sums.items()}
        return min(means, key=lambda y: abs(means[y] - x[self.feature]))


class HoeffdingTreeClassifier(MajorityClass):
    """Shadows the built-in: the use case's own class wins."""


def tuned(boost=3):
    """A factory function works too."""
    return MajorityClass(default="tuned", boost=boost)
'''


@pytest.fixture
def usecase_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "my-usecase"
    folder.mkdir()
    (folder / "algs.py").write_text(textwrap.dedent(USER_ALGS))
    return folder


def test_user_algorithm_is_found_with_params(usecase_folder: Path) -> None:
    algorithm = build("MajorityClass", {"default": "nothing", "boost": "2"}, usecase_folder)
    assert algorithm.predict_one({}) == "nothing"
    for label in ["a", "b", "b"]:
        algorithm.learn_one({}, label)
    assert algorithm.predict_one({}) == "b"
    assert algorithm.describe()["algorithm"] == "MajorityClass"
    with pytest.raises(StreamerError, match=r"unknown parameter algorithm\.bost"):
        build("MajorityClass", {"bost": "2"}, usecase_folder)


def test_user_class_wins_over_builtin(usecase_folder: Path) -> None:
    algorithm = build("HoeffdingTreeClassifier", {}, usecase_folder)
    assert algorithm.predict_one({}) == "none"


def test_user_factory_function(usecase_folder: Path) -> None:
    algorithm = build("tuned", {"boost": "5"}, usecase_folder)
    assert algorithm.predict_one({}) == "tuned"
    algorithm.learn_one({}, "a")
    assert pickle.loads(pickle.dumps(algorithm)).predict_one({}) == "a"


def test_duck_typed_user_class_is_wrapped(usecase_folder: Path) -> None:
    algorithm = build("Threshold", {"feature": "x1"}, usecase_folder)
    assert algorithm.incremental
    assert prequential_accuracy(algorithm, separable(200)) > 0.9


def test_user_algorithms_pickle(usecase_folder: Path) -> None:
    wrapped = build("Threshold", {}, usecase_folder)
    for x, y in separable(100):
        wrapped.learn_one(x, y)
    restored = pickle.loads(pickle.dumps(wrapped))
    assert restored.predict_one({"x1": 0.9}) == wrapped.predict_one({"x1": 0.9}) == "pos"


def test_user_algorithm_unpickles_in_a_fresh_process(usecase_folder: Path) -> None:
    """The launcher unpickles what the trainer built: algs.py is loaded again from its path."""
    algorithm = build("MajorityClass", {}, usecase_folder)
    for label in ["a", "b", "b"]:
        algorithm.learn_one({}, label)
    script = (
        "import pickle, sys; a = pickle.loads(sys.stdin.buffer.read()); "
        "print(a.predict_one({}), 'river' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        input=pickle.dumps(algorithm),
        capture_output=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.decode().split() == ["b", "False"]


def test_broken_algs_py_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "broken"
    folder.mkdir()
    (folder / "algs.py").write_text("def oops(:\n")
    with pytest.raises(StreamerError, match=r"algs\.py: import failed: SyntaxError"):
        build("Anything", {}, folder)
