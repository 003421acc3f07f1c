"""ROC AUC, log-loss and calibration of published class probabilities, against scikit-learn on
the same (completed) predictions, in the three views."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import log_loss, roc_auc_score

from shared.metrics import MetricSet, build_metrics
from shared.metrics.probabilistic import (
    EPSILON,
    ROCAUC,
    Calibration,
    Distribution,
    LogLoss,
    as_distribution,
)

CLASSES = ["a", "b", "c", "d", "e"]


def published(full: dict[str, float], k: int) -> dict:
    """What a launcher publishes of a full distribution: the top k (and, here, nothing else:
    the predicted class is the most probable)."""
    ranked = sorted(full.items(), key=lambda item: (-item[1], item[0]))
    return {"top": dict(ranked[:k]), "omitted": len(ranked) - k}


def completed(output: dict, classes: list[str]) -> list[float]:
    """The completion docs/metrics.md defines, written out independently: a class left out
    gets (1 - sum of the listed) / omitted."""
    top, omitted = output["top"], output["omitted"]
    rest = max(0.0, 1.0 - sum(top.values())) / omitted if omitted else 0.0
    return [top.get(label, rest) for label in classes]


def dirichlet_stream(n: int, classes: list[str], seed: int, grid: int | None = None):
    """(target, full distribution) pairs; targets follow the distribution (a calibrated
    model) with some noise. `grid`: probabilities are multiples of 1/grid."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(n):
        weights = rng.dirichlet([0.6] * len(classes))
        if grid is not None:
            counts = np.floor(weights * grid).astype(int)
            counts[int(np.argmax(weights))] += grid - counts.sum()
            weights = counts / grid
        target = classes[rng.choice(len(classes), p=weights / weights.sum())]
        if rng.random() < 0.15:
            target = classes[rng.integers(len(classes))]
        pairs.append((target, dict(zip(classes, weights.tolist(), strict=True))))
    return pairs


def score(metric, pairs) -> float | None:
    for target, output in pairs:
        metric.update(target, output)
    return metric.get()


# --- completion ---------------------------------------------------------------------------------


def test_completion_spreads_the_rest_over_the_omitted_classes():
    distribution = as_distribution({"top": {"a": 0.6, "b": 0.2}, "omitted": 4})
    assert distribution == Distribution({"a": 0.6, "b": 0.2}, 4)
    assert distribution.probability("a") == 0.6
    assert distribution.probability("z") == pytest.approx(0.05)
    assert distribution.top() == ("a", 0.6)
    assert as_distribution({"top": {"a": 1.0}, "omitted": 0}).probability("b") == 0.0
    assert as_distribution({"1": 0.3, 0: 0.7}).listed == {"1": 0.3, "0": 0.7}  # labels normalised
    for bad in (None, {}, {"top": {}}, {"a": float("nan")}, {"a": 1.5}, {"a": "x"}, [0.2, 0.8]):
        assert as_distribution(bad) is None, bad


# --- log-loss -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("classes", "k"), [(["0", "1"], 1), (CLASSES, 2), (CLASSES, 5)])
def test_log_loss_equals_scikit_learns(classes: list[str], k: int):
    pairs = dirichlet_stream(3000, classes, seed=len(classes) + k)
    outputs = [published(full, k) for _, full in pairs]
    targets = [target for target, _ in pairs]
    ours = score(LogLoss(), zip(targets, outputs, strict=True))
    matrix = [completed(output, classes) for output in outputs]
    assert ours == pytest.approx(log_loss(targets, y_proba=matrix, labels=classes), rel=1e-12)


def test_log_loss_clips_an_impossible_target_at_the_machine_epsilon():
    outputs = [{"top": {"a": 1.0}, "omitted": 0}, {"top": {"a": 0.5, "b": 0.5}, "omitted": 0}]
    ours = score(LogLoss(), zip(["b", "a"], outputs, strict=True))
    matrix = [[1.0, 0.0], [0.5, 0.5]]
    assert ours == pytest.approx(log_loss(["b", "a"], y_proba=matrix, labels=["a", "b"]))
    assert ours == pytest.approx((-math.log(EPSILON) - math.log(0.5)) / 2)


# --- ROC AUC ------------------------------------------------------------------------------------


def test_binary_auc_equals_scikit_learns_on_the_probability_of_the_second_class():
    pairs = dirichlet_stream(2000, ["0", "1"], seed=3, grid=200)
    outputs = [published(full, 1) for _, full in pairs]  # one class listed: exact completion
    targets = [target for target, _ in pairs]
    ours = score(ROCAUC(), zip(targets, outputs, strict=True))
    scores = [completed(output, ["0", "1"])[1] for output in outputs]
    assert ours == pytest.approx(roc_auc_score(targets, scores), abs=1e-12)


def test_multiclass_auc_equals_scikit_learns_one_vs_rest_on_grid_scores():
    """Scores on a grid coarser than the bins: every distinct score has its own bin."""
    pairs = dirichlet_stream(2000, CLASSES, seed=4, grid=100)
    outputs = [published(full, 5) for _, full in pairs]
    targets = [target for target, _ in pairs]
    ours = score(ROCAUC(), zip(targets, outputs, strict=True))
    matrix = np.array([completed(output, CLASSES) for output in outputs])
    wanted = roc_auc_score(targets, matrix, multi_class="ovr", labels=CLASSES)
    assert ours == pytest.approx(wanted, abs=1e-12)


def test_auc_of_top_k_outputs_equals_scikit_learns_on_the_completed_scores():
    """Arbitrary scores, two of five classes listed: the rest shares are scores too. Scores
    closer than a bin (0.1 % of the odds) count as ties: the difference stays far below the
    4th decimal."""
    pairs = dirichlet_stream(3000, CLASSES, seed=5)
    outputs = [published(full, 2) for _, full in pairs]
    targets = [target for target, _ in pairs]
    metric = ROCAUC()
    ours = score(metric, zip(targets, outputs, strict=True))
    matrix = np.array([completed(output, CLASSES) for output in outputs])
    wanted = roc_auc_score(targets, matrix, multi_class="ovr", labels=CLASSES)
    assert ours == pytest.approx(wanted, abs=2e-5)
    for column, label in enumerate(CLASSES):
        truth = [target == label for target in targets]
        assert metric.class_auc(label) == pytest.approx(
            roc_auc_score(truth, matrix[:, column]), abs=2e-5
        )


def test_auc_averages_only_the_classes_that_occur_as_targets():
    """A class the model lists but that is never a target has no positives: scikit-learn's
    per-class AUCs of the others, averaged."""
    pairs = dirichlet_stream(1000, CLASSES, seed=6, grid=100)
    pairs = [(target, full) for target, full in pairs if target != "e"]
    outputs = [published(full, 5) for _, full in pairs]
    targets = [target for target, _ in pairs]
    ours = score(ROCAUC(), zip(targets, outputs, strict=True))
    matrix = np.array([completed(output, CLASSES) for output in outputs])
    per_class = [
        roc_auc_score([target == label for target in targets], matrix[:, column])
        for column, label in enumerate(CLASSES[:4])
    ]
    assert ours == pytest.approx(sum(per_class) / 4, abs=1e-12)


def test_auc_is_undefined_with_a_single_target_class():
    assert score(ROCAUC(), [("a", {"a": 0.9, "b": 0.1})] * 3) is None


# --- calibration --------------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 3])
def test_reliability_table_equals_scikit_learns_calibration_curve(k: int):
    pairs = dirichlet_stream(3000, CLASSES, seed=7 + k)
    outputs = [published(full, k) for _, full in pairs]
    targets = [target for target, _ in pairs]
    metric = Calibration()
    ece = score(metric, zip(targets, outputs, strict=True))
    confidence = [max(output["top"].values()) for output in outputs]
    correct = [
        target == max(output["top"], key=output["top"].get)
        for target, output in zip(targets, outputs, strict=True)
    ]
    prob_true, prob_pred = calibration_curve(correct, confidence, n_bins=10)
    table = metric.table()
    assert [row["frequency"] for row in table] == pytest.approx(prob_true, abs=1e-12)
    assert [row["confidence"] for row in table] == pytest.approx(prob_pred, abs=1e-12)
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], confidence), minlength=10)
    assert [row["count"] for row in table] == [count for count in counts if count]
    assert [(row["lower"], row["upper"]) for row in table] == [
        (np.linspace(0, 1, 11)[i], np.linspace(0, 1, 11)[i + 1]) for i in np.flatnonzero(counts)
    ]
    weights = counts[counts > 0] / len(targets)
    assert ece == pytest.approx(float(np.sum(weights * np.abs(prob_true - prob_pred))), abs=1e-12)


def test_binary_reliability_is_of_the_positive_class():
    pairs = dirichlet_stream(2000, ["0", "1"], seed=9)
    outputs = [published(full, 1) for _, full in pairs]
    targets = [target for target, _ in pairs]
    metric = build_metrics(["BinaryCalibrationMetric"])[0]
    score(metric, zip(targets, outputs, strict=True))
    positive = [completed(output, ["0", "1"])[1] for output in outputs]
    prob_true, prob_pred = calibration_curve([t == "1" for t in targets], positive, n_bins=10)
    assert [row["frequency"] for row in metric.table()] == pytest.approx(prob_true, abs=1e-12)
    assert [row["confidence"] for row in metric.table()] == pytest.approx(prob_pred, abs=1e-12)


def test_a_bin_edge_goes_to_the_lower_bin_as_in_scikit_learn():
    metric = Calibration(n_bins=10)
    for probability in (0.1, 0.30000000000000004, 0.3, 1.0, 0.0):
        metric.update(
            "a",
            {"a": probability, "b": 1 - probability}
            if probability >= 0.5
            else {"b": 1 - probability, "a": probability},
        )
    confidence = [0.9, 0.7, 0.7, 1.0, 1.0]
    counts = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], confidence), minlength=10)
    assert [row["count"] for row in metric.table()] == [count for count in counts if count]


# --- in the views -------------------------------------------------------------------------------


def test_views_give_probability_metrics_the_probabilities_and_the_others_the_label():
    rng = random.Random(11)
    metric_set = MetricSet(
        build_metrics(["AccuracyMultiClassClassificationMetric", "ROCAUCMetric", "LogLossMetric"]),
        window=500,
    )
    history = []
    for batch_number in range(8):
        batch = []
        for target, full in dirichlet_stream(250, CLASSES, seed=100 + batch_number):
            output = published(full, 2)
            predicted = rng.choice(CLASSES)  # a label that is not the probabilities' top
            batch.append((target, predicted, output))
        history += batch
        got = metric_set.update_batch(batch)
    window = history[-500:]
    targets = [target for target, _, _ in window]
    matrix = np.array([completed(output, CLASSES) for _, _, output in window])
    assert got["window"]["accuracy"] == pytest.approx(
        np.mean([target == predicted for target, predicted, _ in window])
    )
    assert got["window"]["log_loss"] == pytest.approx(
        log_loss(targets, y_proba=matrix, labels=CLASSES), rel=1e-12
    )
    assert got["window"]["roc_auc"] == pytest.approx(
        roc_auc_score(targets, matrix, multi_class="ovr", labels=CLASSES), abs=2e-5
    )
    assert got["cumulative"]["roc_auc"] == pytest.approx(
        roc_auc_score(
            [target for target, _, _ in history],
            np.array([completed(output, CLASSES) for _, _, output in history]),
            multi_class="ovr",
            labels=CLASSES,
        ),
        abs=2e-5,
    )
    assert set(metric_set.tables()["window"]) == set()  # no table among these metrics


def test_pairs_without_probabilities_are_skipped_by_probability_metrics_only():
    metric_set = MetricSet(build_metrics(["Accuracy", "LogLossMetric", "CalibrationMetric"]))
    got = metric_set.update_batch([("a", "a"), ("b", "a", None)])
    assert got["batch"]["accuracy"] == 0.5
    assert got["batch"]["log_loss"] is None and got["batch"]["calibration_error"] is None
    assert metric_set.tables()["cumulative"] == {"calibration_error": []}
