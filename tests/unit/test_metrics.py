"""Metrics: hand-computed values, scikit-learn agreement, undefined cases, revert and views,
the registry (original names, River, user metrics.py) and the error texts."""

from __future__ import annotations

import logging
import math
import random
import re
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shared.errors import StreamerError
from shared.metrics import (
    BUILTINS,
    Metric,
    MetricSet,
    as_label,
    build_metric,
    build_metrics,
    usecase_metric_set,
)

BINARY_NAMES = {
    "AccuracyBinaryClassificationMetric": "accuracy",
    "PrecisionBinaryClassificationMetric": "precision",
    "SensitivityBinaryClassificationMetric": "recall",
    "F1scoreBinaryClassificationMetric": "f1",
}
MULTI_NAMES = {
    "AccuracyMultiClassClassificationMetric": "accuracy",
    "PrecisionMultiClassClassificationMetric": "macro_precision",
    "SensitivityMultiClassClassificationMetric": "macro_recall",
    "F1scoreMultiClassClassificationMetric": "macro_f1",
}
REGRESSION_NAMES = {
    "MeanAbsoluteErrorMetric": "mae",
    "MeanSquareErrorMetric": "mse",
    "RootMeanSquareErrorMetric": "rmse",
    "MeanAbsolutePercentageError": "mape",
    "RSquaredMetric": "r2",
    "AccuracyMetricRegression": "regression_accuracy",
    "CMAPSSScore": "cmapss_score",
}
INTERVAL_NAMES = {
    "AverageCoverageError": "ace",
    "PredictionIntervalNormAvWidth": "pinaw",
    "PredictionIntervalNormRootWidth": "pinrw",
    "PredictionIntervalCoverageProbability": "picp",
}
SHOW_NAMES = {"ShowOutputs": "estimated", "ShowTargets": "target"}
PROBABILITY_NAMES = {
    "ROCAUCMetric": "roc_auc",
    "LogLossMetric": "log_loss",
    "CalibrationMetric": "calibration_error",
    "BinaryCalibrationMetric": "binary_calibration_error",
}
FIELD = re.compile(r"^[a-z][a-z0-9_]*$")

# Binary: TP = 3 (0, 3, 6), FP = 2 (1, 7), FN = 1 (2), TN = 2 (4, 5).
BIN_T = ["1", "0", "1", "1", "0", "0", "1", "0"]
BIN_O = ["1", "1", "0", "1", "0", "0", "1", "1"]
# Multi-class: ant P=2/3 R=1 F1=.8; bird P=0 (never predicted) R=0 F1=0; cat P=R=F1=2/3.
MC_T = ["cat", "ant", "cat", "cat", "ant", "bird"]
MC_O = ["ant", "ant", "cat", "cat", "ant", "cat"]
REG_T = [3.0, -0.5, 2.0, 7.0]
REG_O = [2.5, 0.0, 2.0, 8.0]


def value(name: str, targets: list[Any], outputs: list[Any], **kwargs: Any) -> float | None:
    metric = build_metric(name, **kwargs)
    for target, output in zip(targets, outputs, strict=True):
        metric.update(target, output)
    return metric.get()


def same(left: float | None, right: float | None, tol: float = 1e-9) -> bool:
    if left is None or right is None:
        return left is None and right is None
    return math.isclose(left, right, rel_tol=tol, abs_tol=tol)


# --- hand-computed values ---------------------------------------------------------------------


def test_binary_by_hand():
    assert value("AccuracyBinaryClassificationMetric", BIN_T, BIN_O) == pytest.approx(5 / 8)
    assert value("PrecisionBinaryClassificationMetric", BIN_T, BIN_O) == pytest.approx(3 / 5)
    assert value("SensitivityBinaryClassificationMetric", BIN_T, BIN_O) == pytest.approx(3 / 4)
    assert value("F1scoreBinaryClassificationMetric", BIN_T, BIN_O) == pytest.approx(2 / 3)


def test_multiclass_by_hand():
    assert value("AccuracyMultiClassClassificationMetric", MC_T, MC_O) == pytest.approx(4 / 6)
    assert value("PrecisionMultiClassClassificationMetric", MC_T, MC_O) == pytest.approx(4 / 9)
    assert value("SensitivityMultiClassClassificationMetric", MC_T, MC_O) == pytest.approx(5 / 9)
    macro_f1 = (0.8 + 0 + 2 / 3) / 3
    assert value("F1scoreMultiClassClassificationMetric", MC_T, MC_O) == pytest.approx(macro_f1)


def test_multiclass_string_labels_with_classes_number():
    """KDD labels are not "0".."n-1": the labels seen are the classes; n does not matter."""
    targets = ["smurf.", "normal.", "neptune.", "smurf."]
    outputs = ["smurf.", "normal.", "smurf.", "smurf."]
    for n in (None, 2, 23):
        # smurf P=2/3 R=1, normal P=R=1, neptune never predicted: P=0 R=0
        got = value("PrecisionMultiClassClassificationMetric", targets, outputs, classes_number=n)
        assert got == pytest.approx((2 / 3 + 1 + 0) / 3)
        got = value("AccuracyMultiClassClassificationMetric", targets, outputs, classes_number=n)
        assert got == pytest.approx(3 / 4)


def test_more_labels_than_classes_number_warns_once(caplog: pytest.LogCaptureFixture):
    metric = build_metric("AccuracyMultiClassClassificationMetric", classes_number=2)
    with caplog.at_level(logging.WARNING):
        for label in ["0", "1", "2", "3", "2"]:
            metric.update(label, label)
        metric.clone().update("9", "8")
    assert len([r for r in caplog.records if "classes.number=2" in r.getMessage()]) == 1
    assert metric.get() == 1.0


def test_regression_by_hand():
    mape = (0.5 / 3 + 0.5 / 0.5 + 0 + 1 / 7) / 4
    expected = {
        "MeanAbsoluteErrorMetric": 0.5,
        "MeanSquareErrorMetric": 0.375,
        "RootMeanSquareErrorMetric": math.sqrt(0.375),
        "MeanAbsolutePercentageError": mape,
        "AccuracyMetricRegression": 100 * (1 - mape),
        "RSquaredMetric": 1 - 1.5 / 29.1875,  # Σ(t-o)² = 1.5; Σ(t-mean)² with mean 2.875
    }
    for name, wanted in expected.items():
        assert value(name, REG_T, REG_O) == pytest.approx(wanted), name


def test_numbers_as_text_and_lists():
    """Targets arrive as texts, outputs as numbers or one-element lists."""
    got = value("MeanAbsoluteErrorMetric", ["3", " -0.5", "2", "7.0"], [[2.5], 0, "2", 8])
    assert got == pytest.approx(0.5)


def test_mape_skips_zero_targets():
    metric = build_metric("MeanAbsolutePercentageError")
    for target, output in [(0, 1), ("2", 1), (0.0, 5)]:
        metric.update(target, output)
    assert metric.get() == pytest.approx(0.5)
    assert (metric.count, metric.skipped) == (1, 2)


def test_cmapss_score_is_a_mean():
    targets, outputs = [100, 100, 100], [87, 110, 100]  # d = -13, +10, 0
    wanted = (math.e - 1 + math.e - 1 + 0) / 3
    assert value("CMAPSSScore", targets, outputs) == pytest.approx(wanted)
    assert value("CMAPSSScore", targets * 5, outputs * 5) == pytest.approx(wanted)
    assert value("CMAPSSScore", [0], [1e6]) is None  # e^(100000) overflows: skipped


# --- scikit-learn agreement -------------------------------------------------------------------


def random_labels(rng: random.Random, n: int, labels: list[str]) -> tuple[list[str], list[str]]:
    return [rng.choice(labels) for _ in range(n)], [rng.choice(labels) for _ in range(n)]


@pytest.mark.parametrize("seed", range(5))
def test_binary_matches_sklearn(seed: int):
    skm = pytest.importorskip("sklearn.metrics")
    rng = random.Random(seed)
    targets, outputs = random_labels(rng, 40, ["0", "1"])
    for data in [(BIN_T, BIN_O), (targets, outputs)]:
        t, o = data
        assert value("AccuracyBinaryClassificationMetric", t, o) == pytest.approx(
            skm.accuracy_score(t, o)
        )
        for name, function in [
            ("PrecisionBinaryClassificationMetric", skm.precision_score),
            ("SensitivityBinaryClassificationMetric", skm.recall_score),
            ("F1scoreBinaryClassificationMetric", skm.f1_score),
        ]:
            assert value(name, t, o) == pytest.approx(function(t, o, pos_label="1")), name


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_matches_sklearn(seed: int):
    skm = pytest.importorskip("sklearn.metrics")
    rng = random.Random(seed)
    # some classes only as targets, some only as outputs
    targets = [rng.choice(["a", "b", "c", "d"]) for _ in range(30)]
    outputs = [rng.choice(["a", "b", "c", "e"]) for _ in range(30)]
    for t, o in [(MC_T, MC_O), (targets, outputs)]:
        assert value("AccuracyMultiClassClassificationMetric", t, o) == pytest.approx(
            skm.accuracy_score(t, o)
        )
        for name, function in [
            ("PrecisionMultiClassClassificationMetric", skm.precision_score),
            ("SensitivityMultiClassClassificationMetric", skm.recall_score),
            ("F1scoreMultiClassClassificationMetric", skm.f1_score),
        ]:
            wanted = function(t, o, average="macro", zero_division=0)
            assert value(name, t, o) == pytest.approx(wanted), name


@pytest.mark.parametrize("seed", range(5))
def test_regression_matches_sklearn(seed: int):
    skm = pytest.importorskip("sklearn.metrics")
    rng = random.Random(seed)
    targets = [rng.uniform(1, 50) * rng.choice([-1, 1]) for _ in range(25)]
    outputs = [t + rng.gauss(0, 5) for t in targets]
    for t, o in [(REG_T, REG_O), (targets, outputs)]:
        for name, function in [
            ("MeanAbsoluteErrorMetric", skm.mean_absolute_error),
            ("MeanSquareErrorMetric", skm.mean_squared_error),
            ("RootMeanSquareErrorMetric", skm.root_mean_squared_error),
            ("MeanAbsolutePercentageError", skm.mean_absolute_percentage_error),
            ("RSquaredMetric", skm.r2_score),
        ]:
            assert value(name, t, o) == pytest.approx(function(t, o), rel=1e-9), name


# --- undefined values are None, never 0 -------------------------------------------------------


def test_undefined_values_are_none():
    assert value("PrecisionBinaryClassificationMetric", ["1", "0"], ["0", "0"]) is None
    assert value("SensitivityBinaryClassificationMetric", ["0", "0"], ["1", "0"]) is None
    assert value("F1scoreBinaryClassificationMetric", ["0", "0"], ["0", "0"]) is None
    # with positives but none found, F1 is a real 0, as in scikit-learn
    assert value("F1scoreBinaryClassificationMetric", ["1", "0"], ["0", "0"]) == 0.0
    assert value("RSquaredMetric", [4.2, 4.2, 4.2], [1, 2, 3]) is None
    assert value("RSquaredMetric", [0.1, 0.1, 0.1, 0.1], [0, 0, 0, 0]) is None
    assert value("RSquaredMetric", [1.0], [1.0]) is None
    assert value("PredictionIntervalNormAvWidth", [2, 2], [[2, 1, 3], [2, 0, 4]]) is None


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_empty_is_none(name: str):
    metric = build_metric(name)
    assert metric.get() is None
    metric.update(None, None)
    assert metric.get() is None
    assert metric.clone().get() is None


@pytest.mark.parametrize("name", sorted(BUILTINS))
def test_missing_values_are_skipped(name: str):
    """None, NaN, "nan", "" and empty lists as target or output: skipped, never a crash."""
    metric = build_metric(name)
    missing: list[Any] = [None, float("nan"), "nan", "NaN", "", "  ", []]
    good_target, good_output = ("1", "1") if "Classification" in name else ("3", "3")
    if name in INTERVAL_NAMES:
        good_output = [3, 2, 4]  # type: ignore[assignment]
    if name in PROBABILITY_NAMES:
        good_target, good_output = "1", {"1": 0.7, "0": 0.3}  # type: ignore[assignment]
    for bad in missing:
        metric.update(bad, good_output)
        metric.update(good_target, bad)
    assert metric.get() is None
    assert (metric.count, metric.skipped) == (0, 2 * len(missing))
    metric.update(good_target, good_output)
    assert metric.count == 1


def test_non_numeric_values_skipped_by_regression():
    metric = build_metric("MeanAbsoluteErrorMetric")
    for target, output in [("abc", 1), (1, "abc"), (1, float("inf")), (1, {"a": 1}), ("2", 1)]:
        metric.update(target, output)
    assert metric.get() == 1.0
    assert metric.skipped == 4


def test_labels_compare_as_numbers():
    assert [as_label(v) for v in [1, 1.0, True, "1", " 1.0 ", [1], {"1": 0.8, "0": 0.2}]] == [
        "1"
    ] * 7
    assert as_label(0.5) == "0.5" and as_label("smurf.") == "smurf."
    assert value("AccuracyBinaryClassificationMetric", ["1", "0", "1"], [1, 0.0, True]) == 1.0


# --- prediction intervals ---------------------------------------------------------------------

IV_T = [1, 2, 3, 5]  # range 4
IV_O = [[1, 0.5, 1.5], [2, 2.5, 3], [3, 2, 4], [5, 4, 5]]  # covered: yes no yes yes


def test_prediction_interval_metrics_by_hand():
    assert value("PredictionIntervalCoverageProbability", IV_T, IV_O) == pytest.approx(0.75)
    assert value("AverageCoverageError", IV_T, IV_O) == pytest.approx(0.75 - 0.9)
    assert value("PredictionIntervalNormAvWidth", IV_T, IV_O) == pytest.approx(1.125 / 4)
    assert value("PredictionIntervalNormRootWidth", IV_T, IV_O) == pytest.approx(1.25 / 4)


def test_prediction_interval_parameters():
    from shared.metrics.intervals import AverageCoverageError, NormalizedAverageWidth

    ace = AverageCoverageError(nominal=0.5)
    pinaw = NormalizedAverageWidth(target_range=10.0)
    for target, output in zip(IV_T, IV_O, strict=True):
        ace.update(target, output)
        pinaw.update(target, output)
    assert ace.get() == pytest.approx(0.25)
    assert pinaw.get() == pytest.approx(0.1125)
    with pytest.raises(ValueError):
        AverageCoverageError(nominal=1.5)


def test_malformed_intervals_skipped():
    metric = build_metric("PredictionIntervalCoverageProbability")
    for output in [[1, 2], [1, 3, 2], "1,2,3", 5, [1, "a", 2], [1, 0, 2, 3]]:
        metric.update(1, output)
    assert (metric.get(), metric.skipped) == (None, 6)


def test_interval_range_is_shared_across_views():
    """The normalising range covers every target seen since the metric was built."""
    metrics = MetricSet(build_metrics(["PredictionIntervalNormAvWidth"]), window=1)
    metrics.update_batch([(0, [0, -1, 1]), (10, [10, 9, 11])])
    got = metrics.update_batch([(5, [5, 4, 6])])
    assert got["batch"]["pinaw"] == pytest.approx(2 / 10)
    assert got["window"]["pinaw"] == pytest.approx(2 / 10)


# --- Show pseudo-metrics ----------------------------------------------------------------------


def test_show_metrics():
    metrics = MetricSet(build_metrics(["ShowOutputs", "ShowTargets"]), window=2)
    got = metrics.update_batch([("10", 9.5), ("11", [10.5, 9, 12]), ("12", "nan"), ("x", 3)])
    assert got["batch"] == {"estimated": 3.0, "target": 11.0}  # "x" is a target, not a number
    assert got["window"] == {"estimated": 3.0, "target": None}
    assert metrics.metric("batch", "estimated").values() == [9.5, 10.5, 3.0]  # type: ignore[attr-defined]
    assert metrics.metric("batch", "target").values() == [10.0, 11.0]  # type: ignore[attr-defined]
    assert metrics.metric("window", "estimated").values() == [3.0]  # type: ignore[attr-defined]
    got = metrics.update_batch([])
    assert got["batch"] == {"estimated": None, "target": None}
    assert got["cumulative"] == {"estimated": 3.0, "target": 11.0}


# --- revert: the window equals a fresh metric over the last N pairs ---------------------------


def random_pairs(name: str, rng: random.Random, n: int) -> list[tuple[Any, Any]]:
    pairs: list[tuple[Any, Any]] = []
    for _ in range(n):
        if name in INTERVAL_NAMES:
            t = rng.uniform(-5, 5)
            centre, half = t + rng.gauss(0, 1), rng.uniform(0, 2)
            pair: tuple[Any, Any] = (str(t), [centre, centre - half, centre + half])
        elif name in REGRESSION_NAMES or name in SHOW_NAMES or name in {"MAE", "R2", "RMSE"}:
            t = rng.choice([0.0, rng.uniform(-1e3, 1e3) + 1e4])
            pair = (str(t), t + rng.gauss(0, 50))
        elif name in PROBABILITY_NAMES:
            labels = ["0", "1", "2", "3"]
            weights = [rng.choice([0.0, rng.random()]) for _ in labels]
            total = sum(weights) or 1.0
            ranked = sorted(zip(labels, weights, strict=True), key=lambda item: -item[1])
            top = dict((label, weight / total) for label, weight in ranked[:2])
            pair = (rng.choice(labels), next(iter(top)), {"top": top, "omitted": 2})
        else:
            labels = ["0", "1"] if "Binary" in name else ["a", "b", "c", "d"]
            pair = (rng.choice(labels), rng.choice(labels))
        if rng.random() < 0.1:
            pair = (pair[0], *[rng.choice([None, "nan", float("nan")])] * (len(pair) - 1))
        pairs.append(pair)
    return pairs


REVERTIBLE = [*sorted(BUILTINS), "Accuracy", "MacroF1", "CohenKappa", "MAE", "R2", "RMSE"]


@pytest.mark.parametrize("name", REVERTIBLE)
def test_window_equals_fresh_metric_over_last_pairs(name: str):
    rng = random.Random(zlib.crc32(name.encode()))
    for window in (1, 3, 17):
        metrics = MetricSet(build_metrics([name]), window=window)
        metric_name = metrics.names[0]
        history: list[tuple[Any, Any]] = []
        for _ in range(12):
            batch = random_pairs(name, rng, rng.randint(0, 9))
            history.extend(batch)
            got = metrics.update_batch(batch)["window"][metric_name]
            fresh = build_metric(name)
            if name in INTERVAL_NAMES:  # the normalising range spans the whole history
                fresh.seen = metrics.templates[0].seen  # type: ignore[attr-defined]
            for pair in history[-window:]:
                fresh.update(pair[0], pair[-1])  # the probabilities, when the pair has them
            if name in BUILTINS:  # exact sums and counts: equal to the last bit
                assert got == fresh.get(), (window, got, fresh.get())
            else:  # River keeps float running statistics
                assert same(got, fresh.get(), tol=1e-7), (window, got, fresh.get())
            if name in SHOW_NAMES:
                window_metric: Any = metrics.metric("window", metric_name)
                assert window_metric.values() == fresh.values()  # type: ignore[attr-defined]


@pytest.mark.parametrize("seed", range(3))
def test_r2_window_stays_accurate_over_long_streams(seed: int):
    skm = pytest.importorskip("sklearn.metrics")
    rng = random.Random(seed)
    metrics = MetricSet(build_metrics(["RSquaredMetric"]), window=50)
    targets = [1e6 + 100 * math.sin(i / 30) + rng.gauss(0, 1) for i in range(3000)]
    outputs = [t + rng.gauss(0, 5) for t in targets]
    for start in range(0, 3000, 100):
        batch = zip(targets[start : start + 100], outputs[start : start + 100], strict=True)
        got = metrics.update_batch(batch)
    wanted = skm.r2_score(targets[-50:], outputs[-50:])
    assert got["window"]["r2"] == pytest.approx(wanted, rel=1e-9)


# --- batch / cumulative / window views --------------------------------------------------------


def test_views_on_a_known_sequence():
    metrics = MetricSet(build_metrics(["AccuracyBinaryClassificationMetric", "MAE"]), window=3)
    got = metrics.update_batch([("1", "1"), ("0", "1")])
    assert got["batch"]["accuracy"] == 0.5
    assert got["cumulative"]["accuracy"] == 0.5
    assert got["window"]["accuracy"] == 0.5
    got = metrics.update_batch([("1", "1"), ("0", "0")])  # window: (0,1) (1,1) (0,0)
    assert got["batch"]["accuracy"] == 1.0
    assert got["cumulative"]["accuracy"] == 0.75
    assert got["window"]["accuracy"] == pytest.approx(2 / 3)
    got = metrics.update_batch([("1", None)])  # skipped, but takes a window place
    assert got["batch"]["accuracy"] is None
    assert got["cumulative"]["accuracy"] == 0.75
    assert got["window"]["accuracy"] == 1.0
    assert set(got) == {"batch", "cumulative", "window"}
    assert got["batch"]["mae"] is None
    assert got["cumulative"]["mae"] == pytest.approx(0.25)
    assert got["window"]["mae"] == 0.0
    metrics.reset()
    assert metrics.results()["cumulative"]["accuracy"] is None


def test_window_disabled_and_validation():
    metrics = MetricSet(build_metrics(["MeanAbsoluteErrorMetric"]), window=None)
    assert metrics.update_batch([(1, 2)]) == {
        "batch": {"mae": 1.0},
        "cumulative": {"mae": 1.0},
        "window": {},
    }
    with pytest.raises(ValueError):
        MetricSet(build_metrics(["MeanAbsoluteErrorMetric"]), window=0)
    twice = [build_metric("MAE"), build_metric("MeanAbsoluteErrorMetric")]
    with pytest.raises(ValueError, match="mae"):
        MetricSet(twice)


# --- registry: original names, River, user metrics, errors ------------------------------------


def test_every_original_name_builds_with_a_field_name():
    originals = {**BINARY_NAMES, **MULTI_NAMES, **REGRESSION_NAMES, **SHOW_NAMES}
    originals |= {
        k: v for k, v in INTERVAL_NAMES.items() if k != "PredictionIntervalCoverageProbability"
    }
    for original, name in originals.items():
        metric = build_metric(original, classes_number=23)
        assert metric.name == name
        assert FIELD.match(metric.name)
        assert metric.spec == original
        assert build_metric(f"cea.util.metrics.{original}").name == name


def test_duplicates_built_once_and_collisions_suffixed(caplog: pytest.LogCaptureFixture):
    names = [
        "AccuracyMultiClassClassificationMetric",
        "Accuracy",
        " AccuracyMultiClassClassificationMetric",
        "AccuracyBinaryClassificationMetric",
        "",
    ]
    with caplog.at_level(logging.WARNING):
        metrics = build_metrics(names, classes_number=23)
    assert [m.name for m in metrics] == ["accuracy", "accuracy_2", "accuracy_3"]
    assert "both produce 'accuracy'" in caplog.text


@pytest.mark.parametrize(
    ("river_name", "field"),
    [
        ("Accuracy", "accuracy"),
        ("MacroF1", "macro_f1"),
        ("MicroF1", "micro_f1"),
        ("CohenKappa", "cohen_kappa"),
        ("BalancedAccuracy", "balanced_accuracy"),
        ("ROCAUC", "rocauc"),
        ("MAE", "mae"),
        ("RMSE", "rmse"),
        ("R2", "r2"),
        ("river.metrics.MCC", "mcc"),
    ],
)
def test_river_metrics_by_name(river_name: str, field: str):
    metric = build_metric(river_name)
    assert metric.name == field
    assert metric.get() is None  # River says 0.0: no data is undefined


def test_river_values():
    assert value("Accuracy", MC_T, MC_O) == pytest.approx(4 / 6)
    assert value("MacroF1", MC_T, MC_O) == pytest.approx((0.8 + 0 + 2 / 3) / 3)
    assert value("MAE", ["3", "-0.5", "2", "7"], REG_O) == pytest.approx(0.5)
    assert value("R2", REG_T, REG_O) == pytest.approx(1 - 1.5 / 29.1875)
    assert value("R2", [1.0], [2.0]) is None
    # binary River metrics: positive class "1" (River's own pos_val only works for booleans)
    assert value("Precision", BIN_T, BIN_O) == pytest.approx(3 / 5)
    assert value("Recall", BIN_T, BIN_O) == pytest.approx(3 / 4)
    assert value("F1", BIN_T, BIN_O) == pytest.approx(2 / 3)
    assert value("Precision", ["1", "0"], ["0", "0"]) is None
    assert value("ROCAUC", ["1", "0", "1", "0"], [0.9, 0.1, 0.8, 0.3]) == pytest.approx(1.0)
    assert value("LogLoss", ["1"], [{"1": 0.5, "0": 0.5}]) == pytest.approx(math.log(2))


def test_river_metric_needing_parameters_and_non_scalar():
    with pytest.raises(StreamerError, match="cannot be built without parameters"):
        build_metric("FBeta")
    with pytest.raises(StreamerError, match="unknown metric 'ConfusionMatrix'"):
        build_metric("ConfusionMatrix")


USER_METRICS = '''
from river.metrics import FBeta
from shared.metrics.intervals import AverageCoverageError


class CountOnes:
    """Counts outputs equal to 1; revertible."""

    name = "Ones Count"

    def __init__(self):
        self.n = 0

    def update(self, target, output):
        self.n += float(output) == 1

    def revert(self, target, output):
        self.n -= float(output) == 1

    def get(self):
        return self.n


class LastTarget:
    def __init__(self):
        self.last = None

    def update(self, target, output):
        self.last = float(target)

    def get(self):
        return self.last


class Fragile:
    def __init__(self):
        self.n = 0

    def update(self, target, output):
        self.n += 1 / float(output)

    def revert(self, target, output):
        self.n -= 1 / float(output)

    def get(self):
        return self.n


class NeedsArgs:
    def __init__(self, k):
        pass

    def update(self, target, output):
        pass

    def get(self):
        return 0


F2 = FBeta(beta=2)
Coverage95 = AverageCoverageError(nominal=0.95)
NOT_A_METRIC = 3
'''


@pytest.fixture
def usecase_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "my-usecase"
    folder.mkdir()
    (folder / "metrics.py").write_text(textwrap.dedent(USER_METRICS))
    return folder


def test_user_metrics(usecase_folder: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING):
        metrics = build_metrics(
            ["CountOnes", "LastTarget", "F2", "Coverage95"], folder=usecase_folder
        )
        metric_set = MetricSet(metrics, window=2)
    assert [m.name for m in metrics] == ["ones_count", "last_target", "f2", "coverage95"]
    assert "last_target has no revert()" in caplog.text
    metric_set.update_batch([("1", 1), ("1", 0)])
    got = metric_set.update_batch([("0", "1"), ("5", 1), ("7", "nan")])
    assert got["batch"]["ones_count"] == 2
    assert got["cumulative"]["ones_count"] == 3
    assert got["window"]["ones_count"] == 1  # ("5", 1), ("7", "nan" -> skipped)
    assert got["batch"]["last_target"] == 5.0
    assert "last_target" not in got["window"]
    assert metrics[3].nominal == 0.95  # type: ignore[attr-defined]


def test_user_metric_errors_are_logged_and_skipped(
    usecase_folder: Path, caplog: pytest.LogCaptureFixture
):
    metric = build_metric("Fragile", folder=usecase_folder)
    with caplog.at_level(logging.WARNING):
        for output in [2, 0, 4, 0]:
            metric.update("1", output)
    assert metric.get() == pytest.approx(0.75)
    assert (metric.count, metric.skipped) == (2, 2)
    assert "ZeroDivisionError" in caplog.text


def test_user_metric_problems(usecase_folder: Path):
    with pytest.raises(StreamerError, match=r"NeedsArgs\(\) failed"):
        build_metric("NeedsArgs", folder=usecase_folder)
    with pytest.raises(StreamerError, match="not a metric"):
        build_metric("NOT_A_METRIC", folder=usecase_folder)


def test_user_metric_import_error(tmp_path: Path):
    (tmp_path / "metrics.py").write_text("import does_not_exist\n")
    with pytest.raises(StreamerError, match="import failed: ModuleNotFoundError"):
        build_metric("Anything", folder=tmp_path)


def test_unknown_name_error(tmp_path: Path, usecase_folder: Path):
    with pytest.raises(StreamerError) as error:
        build_metric("AccuracyBinaryClassifcationMetric", folder=tmp_path)
    text = str(error.value)
    assert "unknown metric 'AccuracyBinaryClassifcationMetric'" in text
    assert f"{tmp_path / 'metrics.py'} (no such file)" in text
    assert "the built-in metrics (original STREAMER names)" in text
    assert "river.metrics" in text
    assert "Did you mean 'AccuracyBinaryClassificationMetric'" in text
    with pytest.raises(StreamerError, match=r"no use-case folder.*Did you mean 'MacroF1'"):
        build_metric("MacroF2")
    with pytest.raises(StreamerError, match=r"no CountOnez in it.*Did you mean 'CountOnes'"):
        build_metric("CountOnez", folder=usecase_folder)


def test_original_metrics_without_pair_contract_are_explained():
    with pytest.raises(StreamerError, match=r"ShowCMAPSSUnit.*record feature"):
        build_metric("ShowCMAPSSUnit")


def test_clone_is_fresh_and_keeps_name():
    metric = build_metric("RSquaredMetric")
    metric.name = "r2_2"
    metric.update(1, 2)
    copy = metric.clone()
    assert (copy.name, copy.count, copy.get()) == ("r2_2", 0, None)
    assert isinstance(copy, Metric) and metric.count == 1


def test_shipped_usecases_metrics_build():
    repo = Path(__file__).resolve().parents[2]
    for props in sorted(repo.glob("usecases/*/algs.props")):
        lines = [x for x in props.read_text().splitlines() if x.startswith("evaluation.metrics=")]
        if not lines:
            continue
        names = lines[0].split("=", 1)[1].split(",")
        folder = props.parent
        metrics = build_metrics(names, classes_number=23, folder=folder)
        assert all(FIELD.match(m.name) for m in metrics)
        assert len({m.name for m in metrics}) == len(metrics)


def test_usecase_metric_set(usecase_folder: Path):
    algs = SimpleNamespace(
        evaluation_metrics=["AccuracyMultiClassClassificationMetric", "CountOnes"],
        classes_number=3,
        evaluation_window=2,
    )
    metric_set = usecase_metric_set(SimpleNamespace(algs=algs, folder=usecase_folder))  # type: ignore[arg-type]
    assert metric_set.names == ["accuracy", "ones_count"]
    assert metric_set.window_size == 2


def test_builtins_do_not_import_river():
    """River takes seconds to import: only a River metric name may pull it in."""
    code = (
        "import sys\n"
        "from shared.metrics import BUILTINS, MetricSet, build_metrics\n"
        "MetricSet(build_metrics(list(BUILTINS), 3)).update_batch([('1', '1')])\n"
        "assert 'river' not in sys.modules, 'river imported'\n"
    )
    repo = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], cwd=repo, check=True, timeout=60)


@pytest.mark.parametrize(
    ("spec", "bigger"),
    [
        ("Accuracy", True),  # River's, which says so itself
        ("MAE", False),
        ("RootMeanSquareErrorMetric", False),
        ("AccuracyMultiClassClassificationMetric", True),
        ("MeanAbsolutePercentageError", False),
        ("AccuracyMetricRegression", True),
        ("RSquaredMetric", True),
    ],
)
def test_each_metric_says_which_way_is_better(spec: str, bigger: bool):
    """The promotion rule compares a challenger with the champion in the metric's direction."""
    assert build_metric(spec, 3).bigger_is_better is bigger
