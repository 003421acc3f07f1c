"""The leaderboard: each model scored on its own predictions (compared with scikit-learn), roles
followed from the outputs, and the promotion rule (margin, min-records, direction, pending,
rollback)."""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import pytest
from aiokafka.structs import ConsumerRecord
from sklearn.metrics import accuracy_score, log_loss, mean_absolute_error, roc_auc_score

from services.evaluator.leaderboard import PENDING_MS, Leaderboard, PromotionRule
from services.evaluator.scoring import Scorer
from shared.config import ConnectionSettings, load_usecase
from shared.errors import StreamerError
from shared.metrics.evaluation import MetricSet
from shared.metrics.registry import build_metrics
from shared.wire.kafka import Output, Probabilities, Timings
from shared.wire.store import ModelMeta

ACCURACY = PromotionRule("accuracy", margin=0.1, min_records=20, bigger_is_better=True)


def output(
    offset: int, target, prediction, champion: str = "a", challengers: dict | None = None
) -> Output:
    return Output(
        id=f"in/0/{offset}",
        record_id=f"s:{offset}",
        usecase="uc",
        source="s",
        event_time=1,
        prediction=prediction,
        champion=champion,
        challengers=challengers if challengers is not None else {},
        targets=[target],
        model_version=1,
        timings=Timings(produced=1, consumed=None, predicted=None),
    )


def board(metrics: tuple[str, ...] = ("Accuracy",), window: int = 50) -> Leaderboard:
    return Leaderboard(MetricSet(build_metrics(list(metrics)), window=window))


def stream(n: int, accuracy: dict[str, float], seed: int = 5, start: int = 0) -> list[Output]:
    """Outputs of champion `a` and challenger `b`, each right with the given probability."""
    rng = random.Random(seed)
    outputs = []
    for offset in range(start, start + n):
        target = rng.choice("xyz")
        guess = {
            name: target if rng.random() < p else ("w" if target != "w" else "v")
            for name, p in accuracy.items()
        }
        outputs.append(output(offset, target, guess["a"], "a", {"b": guess["b"]}))
    return outputs


def test_each_model_is_scored_on_its_own_predictions_like_scikit_learn():
    outputs = stream(120, {"a": 0.6, "b": 0.9})
    leaderboard = board(window=50)
    standing = None
    for start in range(0, 120, 30):
        standing = leaderboard.score(outputs[start : start + 30])
    assert standing is not None
    targets = [o.targets[0] for o in outputs]
    champion = [o.prediction for o in outputs]
    challenger = [o.challengers["b"] for o in outputs]
    assert standing.values["a"]["cumulative"]["accuracy"] == pytest.approx(
        accuracy_score(targets, champion)
    )
    assert standing.values["b"]["cumulative"]["accuracy"] == pytest.approx(
        accuracy_score(targets, challenger)
    )
    assert standing.values["b"]["window"]["accuracy"] == pytest.approx(
        accuracy_score(targets[-50:], challenger[-50:])
    )
    assert standing.values["b"]["batch"]["accuracy"] == pytest.approx(
        accuracy_score(targets[-30:], challenger[-30:])
    )
    assert standing.pairs["b"] == {"batch": 30, "cumulative": 120, "window": 50}
    assert (standing.champion, standing.challengers) == ("a", ["b"])
    assert (standing.role("a"), standing.role("b")) == ("champion", "challenger")


def test_a_models_values_continue_across_a_change_of_champion():
    leaderboard = board()
    leaderboard.score([output(0, "x", "x", "a", {"b": "y"})])
    standing = leaderboard.score([output(1, "x", "x", "b", {"a": "y"})])  # b promoted
    assert standing.champion == "b"
    assert standing.values["a"]["cumulative"]["accuracy"] == 0.5  # right once, wrong once
    assert standing.values["b"]["cumulative"]["accuracy"] == 0.5
    assert leaderboard.since_change == {"a": 1, "b": 1}  # counted again from the change


def test_outputs_without_challengers_are_not_on_the_leaderboard():
    standing = board().score([output(0, "x", "x", champion=None)])  # type: ignore[arg-type]
    assert standing.champion is None and standing.values == {}


def test_a_clearly_better_challenger_is_promoted_once_both_scored_enough():
    leaderboard = board()
    outputs = stream(200, {"a": 0.3, "b": 0.95})
    first = leaderboard.score(outputs[:10])
    assert leaderboard.decide(ACCURACY, first, 1000) is None  # 10 < min-records
    standing = leaderboard.score(outputs[10:40])
    promotion = leaderboard.decide(ACCURACY, standing, 2000)
    assert promotion is not None and promotion.model == "b"
    window = standing.values
    assert promotion.reason == (
        f"window accuracy {window['b']['window']['accuracy']:.4f} against "
        f"{window['a']['window']['accuracy']:.4f} for a (margin 0.1, 40 records since the "
        "champion changed)"
    )
    # pending: no second decision until the outputs show b as champion, or PENDING_MS pass
    standing = leaderboard.score(outputs[40:60])
    assert leaderboard.decide(ACCURACY, standing, 3000) is None
    assert leaderboard.decide(ACCURACY, standing, 2000 + PENDING_MS).model == "b"  # type: ignore[union-attr]
    swapped = [output(100 + i, o.targets[0], o.challengers["b"], "b", {"a": o.prediction})
               for i, o in enumerate(outputs[60:100])]  # fmt: skip
    standing = leaderboard.score(swapped)
    assert leaderboard.pending is None  # carried out
    assert leaderboard.decide(ACCURACY, standing, 10**9) is None  # the champion is the best


def test_the_margin_and_the_metrics_direction_decide():
    close = board()
    outputs = [  # a wrong 3 times in 20, b twice: 0.88 and 0.92 over the window's last 50
        output(i, "x", "y" if i % 20 < 3 else "x", "a", {"b": "y" if i % 20 < 2 else "x"})
        for i in range(60)
    ]
    standing = close.score(outputs)
    assert standing.values["b"]["window"]["accuracy"] == pytest.approx(0.92)
    assert close.decide(ACCURACY, standing, 1) is None  # better, but not by 0.1
    assert close.decide(PromotionRule("accuracy", 0.0, 20, True), standing, 1) is not None
    # an error measure: lower wins
    errors = board(("MAE",))
    rng = random.Random(2)
    outputs = []
    for offset in range(60):
        target = rng.uniform(0, 10)
        outputs.append(output(offset, target, target + 3.0, "a", {"b": target + 0.5}))
    standing = errors.score(outputs)
    rule = PromotionRule("mae", margin=1.0, min_records=20, bigger_is_better=False)
    assert standing.values["b"]["cumulative"]["mae"] == pytest.approx(
        mean_absolute_error([o.targets[0] for o in outputs], [o.challengers["b"] for o in outputs])
    )
    promotion = errors.decide(rule, standing, 1)
    assert promotion is not None and promotion.model == "b"


def test_a_model_demoted_by_a_rollback_is_not_promoted_again_by_the_rule():
    leaderboard = board()
    leaderboard.note_version(ModelMeta(version=9, mode="rollback", champion="a",
                                       previous_champion="b"))  # fmt: skip
    standing = leaderboard.score(stream(60, {"a": 0.3, "b": 0.95}))
    assert leaderboard.decide(ACCURACY, standing, 1) is None
    leaderboard.note_version(ModelMeta(version=10, mode="promotion", champion="b"))
    assert leaderboard.decide(ACCURACY, standing, 1) is not None


def test_the_leaderboard_travels_in_the_evaluators_checkpoint():
    subject = Scorer(MetricSet(build_metrics(["Accuracy"]), window=10), None, {}, "batch", False)
    subject.promotion = ACCURACY
    messages = []
    for o in stream(30, {"a": 0.3, "b": 0.95}):
        value = o.encode()
        offset = int(o.id.rsplit("/", 1)[1])
        messages.append(ConsumerRecord("out", 0, offset, 1, 0, b"k", value, None, 1, 1, []))
    result = subject.evaluate(messages, 1000)
    assert result.standing is not None and result.promotion is not None
    restored = pickle.loads(pickle.dumps(subject.views))
    assert restored.leaderboard.pending == ("b", 1000)
    assert (
        restored.leaderboard.metrics["b"].results() == subject.leaderboard().metrics["b"].results()
    )


def test_the_rule_names_a_metric_of_the_use_case(tmp_path: Path):
    folder = tmp_path / "uc"
    folder.mkdir()
    (folder / "streaming.props").write_text("mainTopic=i\noutputTopic=o\nproblem.type=Generic\n")
    (folder / "algs.props").write_text(
        "algorithm=HoeffdingTreeClassifier\nchallengers=KMeans\npromotion.metric=Accuracy\n"
        "evaluation.metrics=Accuracy,MacroF1\npromotion.margin=0.02\n"
    )
    usecase = load_usecase(folder, ConnectionSettings(usecases_dir=tmp_path))
    metric_set = MetricSet(build_metrics(usecase.algs.evaluation_metrics))
    assert PromotionRule.of(usecase, metric_set) == PromotionRule("accuracy", 0.02, 1000, True)
    (folder / "algs.props").write_text(
        "algorithm=HoeffdingTreeClassifier\nchallengers=KMeans\npromotion.metric=recall\n"
        "evaluation.metrics=Accuracy,MacroF1\n"
    )
    usecase = load_usecase(folder, ConnectionSettings(usecases_dir=tmp_path))
    with pytest.raises(StreamerError, match=r"promotion\.metric=recall is not a metric of evaluat"):
        PromotionRule.of(usecase, metric_set)


def test_each_model_is_scored_on_its_own_probabilities():
    """The champion's `probabilities` and each challenger's `challenger_probabilities` feed
    that model's log-loss and ROC AUC: scikit-learn's over the same values (probabilities on
    a 0.01 grid: no two different scores share a ROC AUC bin, so it is exact)."""
    rng = random.Random(11)
    outputs, truth = [], []
    scores: dict[str, list[float]] = {"a": [], "b": []}
    for offset in range(300):
        target = rng.choice("01")
        truth.append(int(target))
        published = {}
        for name in scores:
            q = rng.randint(1, 99) / 100  # the model's probability of "1"
            scores[name].append(q)
            published[name] = Probabilities(top={"1": q, "0": 1 - q})
        made = output(offset, target, "1", "a", {"b": "1"})
        update = {
            "probabilities": published["a"],
            "challenger_probabilities": {"b": published["b"]},
        }
        outputs.append(made.model_copy(update=update))
    standing = board(("LogLossMetric", "ROCAUCMetric"), window=1000).score(outputs)
    for name, score in scores.items():
        values = standing.values[name]["cumulative"]
        assert values["log_loss"] == pytest.approx(log_loss(truth, score), rel=1e-9), name
        assert values["roc_auc"] == pytest.approx(roc_auc_score(truth, score), abs=1e-12), name
