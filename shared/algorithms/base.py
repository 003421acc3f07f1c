"""The learn/run contract every algorithm follows (River's style: learning is a command,
predicting is a query; `x` is never mutated).

`x` is a record's `values` (feature name -> float or category string), `y` its first target
(a string label for classification, a float for regression) or None when unlabelled.
Algorithms must pickle: the model store keeps them in Redis.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

Features = dict[str, float | str]


class Algorithm(ABC):
    """An algorithm of a use case.

    `incremental` says whether the model learns one record at a time (the original's
    `updateModel`): then the trainer feeds it only records it has not seen yet (continuous
    mode), otherwise it refits on the most recent `training.maxdata` records (classical mode).
    """

    name: str = "algorithm"
    incremental: bool = True

    @abstractmethod
    def learn_one(self, x: Features, y: Any) -> None:
        """Update the model with one labelled record."""

    def learn_many(self, xs: Sequence[Features], ys: Sequence[Any]) -> None:
        """Learn a batch (classical mode: a refit on the window). Default: one at a time."""
        for x, y in zip(xs, ys, strict=True):
            self.learn_one(x, y)

    @abstractmethod
    def predict_one(self, x: Features) -> Any:
        """The prediction for one record (None when the model cannot predict yet)."""

    def predict_proba_one(self, x: Features) -> dict[Any, float] | None:
        """Class probabilities for one record (label -> probability), or None when the algorithm
        gives none: regressors, detectors, clusterers, classifiers without probabilities, and
        a model that cannot predict yet. This default says None, never raises."""
        return None

    def predict_proba_many(self, xs: Sequence[Features]) -> list[dict[Any, float] | None]:
        """Class probabilities of a batch, one `predict_proba_one` answer per record. Default: a
        loop; an algorithm that predicts a batch at once (MOA, in its JVM) overrides it."""
        return [self.predict_proba_one(x) for x in xs]

    def predict_many(self, xs: Sequence[Features], ys: Sequence[Any] | None = None) -> list[Any]:
        """Predictions of a batch. `ys` (the records' targets, if known) is for algorithms whose
        protocol wants them, like the original's external scripts; others ignore it."""
        return [self.predict_one(x) for x in xs]

    def predict_learn_many(self, xs: Sequence[Features], ys: Sequence[Any]) -> list[Any]:
        """Test-then-train a batch: each record predicted just before it is learned (River's
        progressive validation); a record whose y is None is only predicted. Default:
        predict_one then learn_one per record (MOA's runs the whole loop in its JVM)."""
        predictions = []
        for x, y in zip(xs, ys, strict=True):
            predictions.append(self.predict_one(x))
            if y is not None:
                self.learn_one(x, y)
        return predictions

    def describe(self) -> dict[str, Any]:
        """Metadata stored with each model version."""
        return {"algorithm": self.name, "incremental": self.incremental}
