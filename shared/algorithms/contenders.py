"""A champion and its challengers: the models of one use case, learning the same records.

`challengers=` of algs.props lists algorithms scored beside `algorithm` (the champion) on every
record. They travel together as one Algorithm, so everything that handles a model (the
trainer's learning, refits and checkpoints, the model store's signed versions, inference
snapshots, the launchers' adoption, positions and staleness) handles all of them at once, and
each version is one consistent state of every model:
- learning (`learn_one`, `learn_many`) teaches every model the same records;
- predicting (`predict_one`, `predict_many`, `predict_proba_one`, `predict_proba_many`) is the
  champion's: what the outputs' `prediction` carries; `predict_all`, `predict_proba_all` and
  `predict_learn_all` give every model's (the challengers' are the outputs' shadow
  predictions);
- `promote(name)` makes a challenger the champion; the former champion becomes a challenger
  and keeps learning, so `rollback()` can restore it at once, as fresh as the others.

Models are known by their name in algs.props (`algorithm`'s value for the first champion, each
`challengers` entry); the roles live in the model (and so in its checkpoint), not in the
configuration: after a promotion the trainer resumes with the promoted champion. The trainer
adds retrain challengers of its own after an alert (`retrain.strategy=challenger`,
`with_retrain_challenger`): they are not in algs.props and survive restarts all the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from shared.algorithms.base import Algorithm, Features

#: ModelMeta modes of the versions that change roles.
PROMOTION_MODE = "promotion"
ROLLBACK_MODE = "rollback"
#: Names of the challengers `retrain.strategy=challenger` adds: `<algorithm>#retrain-<n>`.
RETRAIN_TAG = "#retrain-"


class RoleError(ValueError):
    """A promotion or rollback that the current roles do not allow (says why)."""


class Contenders(Algorithm):
    """Named models, one of them the champion (see the module docstring)."""

    def __init__(
        self, models: dict[str, Algorithm], champion: str, previous: str | None = None
    ) -> None:
        if champion not in models:
            raise ValueError(f"the champion {champion!r} is not among the models {list(models)}")
        self.models = dict(models)
        self.champion = champion
        self.previous = previous  # the champion before the last promotion or rollback

    # ---- roles -----------------------------------------------------------------------------

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.models[self.champion].name

    @property
    def incremental(self) -> bool:  # type: ignore[override]
        return all(model.incremental for model in self.models.values())

    @property
    def challengers(self) -> list[str]:
        return [name for name in self.models if name != self.champion]

    @property
    def leader(self) -> Algorithm:
        """The champion's model."""
        return self.models[self.champion]

    def promote(self, name: str) -> str:
        """Make challenger `name` the champion; returns the former champion (a challenger now,
        still learning). RoleError when `name` is no challenger."""
        if name == self.champion:
            raise RoleError(f"{name} is the champion already")
        if name not in self.models:
            raise RoleError(f"no model {name!r}; challengers: {', '.join(self.challengers)}")
        former, self.champion, self.previous = self.champion, name, self.champion
        return former

    def rollback(self) -> str:
        """Restore the champion before the last promotion (or rollback); returns the demoted
        one. RoleError when there is none to restore."""
        if self.previous is None or self.previous not in self.models:
            raise RoleError("no previous champion to restore")
        return self.promote(self.previous)

    def with_roles_of(self, other: Algorithm | None) -> Contenders:
        """These models with `other`'s roles where it names models of this set (a refit starts
        fresh models but keeps the promoted champion)."""
        if isinstance(other, Contenders) and other.champion in self.models:
            self.champion = other.champion
            self.previous = other.previous if other.previous in self.models else None
        return self

    def map_models(self, change: Callable[[Algorithm], Algorithm | None]) -> Contenders | None:
        """The same roles over `change(model)` for each model (the model itself where it gives
        None); None when it changed none (e.g. no model has an inference snapshot)."""
        changed = {name: change(model) for name, model in self.models.items()}
        if all(model is None for model in changed.values()):
            return None
        models = {
            name: model if model is not None else self.models[name]
            for name, model in changed.items()
        }
        return Contenders(models, self.champion, self.previous)

    # ---- learning: every model ---------------------------------------------------------------

    def learn_one(self, x: Features, y: Any) -> None:
        for model in self.models.values():
            model.learn_one(x, y)

    def learn_many(self, xs: Sequence[Features], ys: Sequence[Any]) -> None:
        for model in self.models.values():
            model.learn_many(xs, ys)

    def predict_learn_all(
        self, xs: Sequence[Features], ys: Sequence[Any], predict: bool = True
    ) -> dict[str, list[Any]]:
        """Test-then-train for every model: each one's predictions, each made just before its
        record is learned (only learning when `predict` is False: empty lists)."""
        if not predict:
            labelled = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
            self.learn_many([x for x, _ in labelled], [y for _, y in labelled])
            return {name: [] for name in self.models}
        return {name: model.predict_learn_many(xs, ys) for name, model in self.models.items()}

    def predict_learn_many(self, xs: Sequence[Features], ys: Sequence[Any]) -> list[Any]:
        return self.predict_learn_all(xs, ys)[self.champion]

    # ---- predicting: the champion's, or everyone's -------------------------------------------

    def predict_one(self, x: Features) -> Any:
        return self.leader.predict_one(x)

    def predict_proba_one(self, x: Features) -> dict[Any, float] | None:
        return self.leader.predict_proba_one(x)

    def predict_proba_many(self, xs: Sequence[Features]) -> list[dict[Any, float] | None]:
        return self.leader.predict_proba_many(xs)

    def predict_many(self, xs: Sequence[Features], ys: Sequence[Any] | None = None) -> list[Any]:
        return self.leader.predict_many(xs, ys)

    def predict_all(
        self, xs: Sequence[Features], ys: Sequence[Any] | None = None
    ) -> dict[str, list[Any]]:
        """Every model's predictions of the batch, by name (the champion's included)."""
        return {name: model.predict_many(xs, ys) for name, model in self.models.items()}

    def predict_proba_all(self, xs: Sequence[Features]) -> dict[str, list[dict[Any, float] | None]]:
        """Every model's class probabilities of the batch, by name (one batch call per model)."""
        return {name: model.predict_proba_many(xs) for name, model in self.models.items()}

    def describe(self) -> dict[str, Any]:
        """The champion's own description, the roles, and each model's."""
        return {
            **self.leader.describe(),
            "incremental": self.incremental,
            "champion": self.champion,
            "challengers": self.challengers,
            "previous_champion": self.previous,
            "models": {name: model.describe() for name, model in self.models.items()},
        }


def is_retrain_challenger(name: str) -> bool:
    return RETRAIN_TAG in name


def base_name(name: str) -> str:
    """The configured algorithm a model was built from (a retrain challenger's own)."""
    return name.split(RETRAIN_TAG, 1)[0]


def with_retrain_challenger(current: Algorithm, fresh: Algorithm) -> tuple[Contenders, str]:
    """`current`'s models with `fresh` as a new retrain challenger, and its name. Earlier
    retrain challengers are dropped unless champion or previous champion (the one a rollback
    restores): repeated alerts keep the model count bounded."""
    if isinstance(current, Contenders):
        models, champion, previous = dict(current.models), current.champion, current.previous
    else:
        models, champion, previous = {current.name: current}, current.name, None
    numbers = [
        int(name.rsplit(RETRAIN_TAG, 1)[1]) for name in models if is_retrain_challenger(name)
    ]
    name = f"{base_name(champion)}{RETRAIN_TAG}{max(numbers, default=0) + 1}"
    kept = {
        model_name: model
        for model_name, model in models.items()
        if not is_retrain_challenger(model_name) or model_name in (champion, previous)
    }
    return Contenders({**kept, name: fresh}, champion, previous), name


def reconcile(saved: Algorithm, configured: Algorithm) -> tuple[Algorithm, list[str]]:
    """The model to resume with: `saved` (a checkpoint, which keeps the roles and what each
    model learnt) fitted to the models `configured` now (algs.props may have changed since):
    a challenger added since joins fresh (it learns from here on), one removed is dropped
    (retrain challengers, which algs.props never lists, are kept), the champion stays unless it
    is no longer configured. Also says what changed."""
    retrained = isinstance(saved, Contenders) and any(map(is_retrain_challenger, saved.models))
    if retrained and not isinstance(configured, Contenders):
        configured = Contenders({configured.name: configured}, configured.name)
    if not isinstance(configured, Contenders):
        if isinstance(saved, Contenders):
            model = saved.models.get(configured.name, saved.leader)
            return model, [f"no challengers configured any more: going on with {model.name}"]
        return saved, []
    names = list(configured.models)
    if not isinstance(saved, Contenders):
        saved = Contenders({configured.champion: saved}, configured.champion)
    changes = [
        f"challenger {name} added: it learns from here on"
        for name in names
        if name not in saved.models
    ]
    changes += [
        f"model {name} no longer configured: dropped"
        for name in saved.models
        if name not in configured.models and not is_retrain_challenger(name)
    ]
    models = {name: saved.models.get(name, configured.models[name]) for name in names}
    models.update(
        {name: model for name, model in saved.models.items() if is_retrain_challenger(name)}
    )
    champion = saved.champion if saved.champion in models else configured.champion
    if champion != saved.champion:
        changes.append(f"the champion {saved.champion} is no longer configured: {champion} is")
    previous = saved.previous if saved.previous in models else None
    return Contenders(models, champion, previous), changes
