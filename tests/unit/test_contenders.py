"""A champion and its challengers as one algorithm: every model learns every record, the
champion predicts, roles change by promotion and rollback; each model against River's own."""

from __future__ import annotations

import asyncio
import pickle
from pathlib import Path

import pytest
from river import dummy, tree

from services.launcher.batch import ServingModel
from services.launcher.service import Launcher
from shared.algorithms.contenders import (
    Contenders,
    RoleError,
    reconcile,
    with_retrain_challenger,
)
from shared.algorithms.registry import build_algorithm
from shared.algorithms.snapshot import InferenceSnapshot, inference_snapshot
from shared.config import ConnectionSettings, load_usecase
from shared.errors import StreamerError
from tests.unit.test_algorithms import kdd_like

TREE = "river.tree.HoeffdingTreeClassifier"


def usecase(tmp_path: Path, algs: str):
    folder = tmp_path / "uc"
    folder.mkdir(exist_ok=True)
    (folder / "streaming.props").write_text("mainTopic=in\noutputTopic=out\nproblem.type=Generic\n")
    (folder / "algs.props").write_text(algs)
    return load_usecase(folder, ConnectionSettings(usecases_dir=tmp_path))


def contenders(tmp_path: Path) -> Contenders:
    """River's tree (built-in) as champion; a tree of another grace period and the prior
    (majority class) as challengers."""
    algs = (
        "algorithm=HoeffdingTreeClassifier\nalgorithm.grace_period=200\n"
        f"challengers={TREE}, river.dummy.PriorClassifier\n{TREE}.grace_period=20\n"
    )
    built = build_algorithm(usecase(tmp_path, algs))
    assert isinstance(built, Contenders)
    return built


def test_every_model_learns_every_record_and_the_champion_predicts(tmp_path):
    models = contenders(tmp_path)
    rows = kdd_like(600)
    references = {
        "HoeffdingTreeClassifier": tree.HoeffdingTreeClassifier(grace_period=200),
        TREE: tree.HoeffdingTreeClassifier(grace_period=20),
        "river.dummy.PriorClassifier": dummy.PriorClassifier(),
    }
    for start in range(0, 400, 100):
        batch = rows[start : start + 100]
        models.learn_many([x for x, _ in batch], [y for _, y in batch])
        for x, y in batch:
            for reference in references.values():
                reference.learn_one(x, y)
    xs = [x for x, _ in rows[400:]]
    predicted = models.predict_all(xs)
    assert list(predicted) == ["HoeffdingTreeClassifier", TREE, "river.dummy.PriorClassifier"]
    for name, reference in references.items():
        assert predicted[name] == [reference.predict_one(x) for x in xs], name
    assert models.predict_many(xs) == predicted["HoeffdingTreeClassifier"]
    assert predicted[TREE] != predicted["river.dummy.PriorClassifier"]  # they do differ
    described = models.describe()
    assert described["champion"] == "HoeffdingTreeClassifier"
    assert described["challengers"] == [TREE, "river.dummy.PriorClassifier"]
    assert described["algorithm"] == "HoeffdingTreeClassifier"
    assert set(described["models"]) == set(references)


def test_test_then_train_gives_each_model_its_own_progressive_predictions(tmp_path):
    models = contenders(tmp_path)
    rows = kdd_like(300)
    reference = tree.HoeffdingTreeClassifier(grace_period=20)
    expected = []
    for x, y in rows:
        expected.append(reference.predict_one(x))
        reference.learn_one(x, y)
    predicted = models.predict_learn_all([x for x, _ in rows], [y for _, y in rows])
    assert predicted[TREE] == expected
    assert models.predict_learn_many([x for x, _ in rows[:5]], [None] * 5) == [
        models.predict_one(x) for x, _ in rows[:5]
    ]


def test_promotion_swaps_roles_and_rollback_restores_the_former_champion(tmp_path):
    models = contenders(tmp_path)
    assert models.promote(TREE) == "HoeffdingTreeClassifier"
    assert (models.champion, models.previous) == (TREE, "HoeffdingTreeClassifier")
    assert models.challengers == ["HoeffdingTreeClassifier", "river.dummy.PriorClassifier"]
    assert models.rollback() == TREE
    assert (models.champion, models.previous) == ("HoeffdingTreeClassifier", TREE)
    with pytest.raises(RoleError, match="HoeffdingTreeClassifier is the champion already"):
        models.promote("HoeffdingTreeClassifier")
    with pytest.raises(RoleError, match=r"no model .KNN.; challengers: river\.tree"):
        models.promote("KNN")
    with pytest.raises(RoleError, match="no previous champion"):
        contenders(tmp_path).rollback()
    # a refit's fresh models keep the promoted champion
    fresh = contenders(tmp_path).with_roles_of(models)
    assert (fresh.champion, fresh.previous) == ("HoeffdingTreeClassifier", TREE)


def test_the_inference_snapshot_has_each_trees_snapshot_and_predicts_the_same(tmp_path):
    models = contenders(tmp_path)
    rows = kdd_like(500)
    models.learn_many([x for x, _ in rows], [y for _, y in rows])
    models.promote(TREE)
    snapshot = inference_snapshot(models)
    assert isinstance(snapshot, Contenders)
    assert isinstance(snapshot.models[TREE], InferenceSnapshot)
    assert isinstance(snapshot.models["HoeffdingTreeClassifier"], InferenceSnapshot)
    prior = snapshot.models["river.dummy.PriorClassifier"]  # no snapshot: the model itself
    assert prior is models.models["river.dummy.PriorClassifier"]
    assert (snapshot.champion, snapshot.previous) == (TREE, "HoeffdingTreeClassifier")
    xs = [x for x, _ in kdd_like(200, seed=11)]
    shipped = pickle.loads(pickle.dumps(snapshot))
    assert shipped.predict_all(xs) == models.predict_all(xs)
    assert shipped.predict_many(xs) == models.predict_all(xs)[TREE]
    assert not shipped.incremental  # snapshots do not learn


def test_a_challenger_is_checked_like_the_champion_and_its_messages_name_its_keys(tmp_path):
    with pytest.raises(StreamerError) as error:
        build_algorithm(
            usecase(
                tmp_path,
                f"algorithm=HoeffdingTreeClassifier\nchallengers={TREE}\n{TREE}.grace_periode=20\n",
            )
        )
    assert f"uc: challenger {TREE}: unknown parameter {TREE}.grace_periode; valid" in str(
        error.value
    )
    with pytest.raises(StreamerError, match=f"{TREE}.grace_period='soon': expected int"):
        build_algorithm(
            usecase(
                tmp_path,
                f"algorithm=HoeffdingTreeClassifier\nchallengers={TREE}\n"
                f"{TREE}.grace_period=soon\n",
            )
        )
    with pytest.raises(StreamerError, match="uc: challenger HoefdingTree: no such algorithm"):
        build_algorithm(usecase(tmp_path, "algorithm=KMeans\nchallengers=HoefdingTree\n"))
    # the champion's own messages still say algorithm.<param>
    with pytest.raises(StreamerError, match=r"unknown parameter algorithm\.depth;"):
        build_algorithm(
            usecase(
                tmp_path,
                f"algorithm=HoeffdingTreeClassifier\nalgorithm.depth=3\nchallengers={TREE}\n",
            )
        )


def test_models_learn_the_same_way(tmp_path):
    algs = "algorithm=HoeffdingTreeClassifier\nchallengers=ExternalAlgorithm\n"
    algs += "ExternalAlgorithm.train=true\nExternalAlgorithm.test=true\n"
    with pytest.raises(StreamerError, match="challenger ExternalAlgorithm learns in batches but"):
        build_algorithm(usecase(tmp_path, algs))


def test_a_resumed_checkpoint_keeps_its_roles_and_follows_the_configured_models(tmp_path):
    saved = contenders(tmp_path)
    saved.learn_many([x for x, _ in kdd_like(300)], [y for _, y in kdd_like(300)])
    saved.promote(TREE)
    algs = f"algorithm=HoeffdingTreeClassifier\nchallengers={TREE}, KMeans\n"
    configured = build_algorithm(usecase(tmp_path, algs))
    resumed, changes = reconcile(saved, configured)
    assert isinstance(resumed, Contenders)
    assert (resumed.champion, resumed.previous) == (TREE, "HoeffdingTreeClassifier")
    assert resumed.models[TREE] is saved.models[TREE]  # what it learnt is kept
    assert resumed.models["KMeans"] is configured.models["KMeans"]
    assert changes == [
        "challenger KMeans added: it learns from here on",
        "model river.dummy.PriorClassifier no longer configured: dropped",
    ]
    plain = build_algorithm(usecase(tmp_path, "algorithm=HoeffdingTreeClassifier\n"))
    assert reconcile(plain, plain) == (plain, [])
    wrapped, _ = reconcile(plain, configured)
    assert wrapped.models["HoeffdingTreeClassifier"] is plain


def test_retrain_challengers_join_stay_bounded_and_survive_a_restart(tmp_path):
    plain = build_algorithm(usecase(tmp_path, "algorithm=HoeffdingTreeClassifier\n"))
    first = build_algorithm(usecase(tmp_path, "algorithm=HoeffdingTreeClassifier\n"))
    models, name = with_retrain_challenger(plain, first)
    assert name == "HoeffdingTreeClassifier#retrain-1"
    assert (models.champion, models.challengers) == ("HoeffdingTreeClassifier", [name])
    models.promote(name)  # the rule promoted it; the next alert brings another one
    second = build_algorithm(usecase(tmp_path, "algorithm=HoeffdingTreeClassifier\n"))
    models, name = with_retrain_challenger(models, second)
    assert name == "HoeffdingTreeClassifier#retrain-2"  # named after the algorithm, numbered
    assert list(models.models) == [
        "HoeffdingTreeClassifier",  # the previous champion, which a rollback restores
        "HoeffdingTreeClassifier#retrain-1",  # the champion
        "HoeffdingTreeClassifier#retrain-2",
    ]
    third = build_algorithm(usecase(tmp_path, "algorithm=HoeffdingTreeClassifier\n"))
    models, name = with_retrain_challenger(models, third)  # retrain-2 neither champion nor previous
    assert list(models.models) == [
        "HoeffdingTreeClassifier",
        "HoeffdingTreeClassifier#retrain-1",
        "HoeffdingTreeClassifier#retrain-3",
    ]
    # a restarted trainer resumes with them although algs.props does not list them
    resumed, changes = reconcile(models, plain)
    assert isinstance(resumed, Contenders) and changes == []
    assert resumed.models == models.models and resumed.champion == models.champion


def test_batch_models_are_refitted_together_and_predict_as_scikit_learn(tmp_path):
    """Classical mode: a refit fits every model on the window (the trainer's learn_many on a
    fresh Contenders); each predicts as its estimator fitted on the same matrix."""
    pytest.importorskip("sklearn")
    from sklearn.feature_extraction import DictVectorizer
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.tree import DecisionTreeClassifier

    algs = (
        "algorithm=sklearn.tree.DecisionTreeClassifier\nalgorithm.random_state=0\n"
        "challengers=sklearn.neighbors.KNeighborsClassifier\n"
    )
    models = build_algorithm(usecase(tmp_path, algs))
    assert isinstance(models, Contenders) and not models.incremental
    numeric = [
        ({k: v for k, v in x.items() if not isinstance(v, str)}, y) for x, y in kdd_like(300)
    ]
    models.learn_many([x for x, _ in numeric], [y for _, y in numeric])
    vectorizer = DictVectorizer(sparse=False)
    matrix = vectorizer.fit_transform([x for x, _ in numeric])
    labels = [y for _, y in numeric]
    tests = [x for x, _ in numeric[:50]]
    expected = {
        "sklearn.tree.DecisionTreeClassifier": DecisionTreeClassifier(random_state=0),
        "sklearn.neighbors.KNeighborsClassifier": KNeighborsClassifier(),
    }
    predicted = models.predict_all(tests)
    for name, estimator in expected.items():
        estimator.fit(matrix, labels)
        assert predicted[name] == estimator.predict(vectorizer.transform(tests)).tolist(), name


def test_a_learning_launcher_takes_a_promotions_roles_between_two_batches(tmp_path):
    """launcher.learn=true keeps its own, fresher models: a promotion's version only changes
    which one is the champion."""
    algs = f"algorithm=HoeffdingTreeClassifier\nchallengers={TREE}\n"
    launcher = Launcher(usecase(tmp_path, algs), asyncio.Event())
    models = build_algorithm(launcher.usecase)
    launcher.model = ServingModel(models, None, learn=True)
    launcher._roles = {"mode": "promotion", "champion": TREE,
                       "previous_champion": "HoeffdingTreeClassifier"}  # fmt: skip
    launcher._swap_if_loaded()
    assert launcher.model.algorithm is models  # the same, learning models
    assert (models.champion, models.previous) == (TREE, "HoeffdingTreeClassifier")
    launcher._roles = {"mode": "rollback", "champion": "KNN", "previous_champion": TREE}
    launcher._swap_if_loaded()  # a model it does not have: nothing changes
    assert models.champion == TREE
