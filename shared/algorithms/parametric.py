"""Models whose whole state is a fixed list of numpy arrays: what federated learning exchanges.

A federated client sends its model's parameters, never its records; the server aggregates the
arrays of its clients (FedAvg averages them weighted by the records each client learnt; FedProx,
FedAdam... are other Flower strategies over the same arrays). For that every client's arrays
must have the same shapes and mean the same thing, so the feature layout is fixed up front by a
seeded feature hasher (river.preprocessing.FeatureHasher): a feature lands in the same slot at
every site without any site telling the others its feature names or category values. Hashing
can make two features share a slot: keep `n_features` well above the number of features.

Two kinds, one interface (`parameters_of`):
- River linear models (LinearRegression, LogisticRegression) in a RiverAlgorithm pipeline
  `FeatureHasher | StandardScaler ... | model`: the arrays are each scaler's per-slot mean,
  second moment and count, then the weights and the intercept. Scalers travel with the weights
  so that every site's weights apply to identically scaled inputs (averaging means and E[x²]
  weighted by record counts gives the pooled mean and variance); the count makes a site's own
  records move the pooled statistics only as much as their share (without it, the first local
  record of a round replaced the pooled mean, and FedAvg went from 0.37 to 1.4 RMSE in ten
  rounds on the shipped example).
- Algorithms that are Parametric themselves (shared/algorithms/mlp.py's small network).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from river import compose, linear_model, preprocessing

from shared.algorithms.base import Algorithm
from shared.algorithms.river_algorithm import RiverAlgorithm
from shared.errors import StreamerError

Arrays = list[np.ndarray]


@runtime_checkable
class Parametric(Protocol):
    """get_parameters and set_parameters round-trip: set(get()) leaves predictions unchanged."""

    def get_parameters(self) -> Arrays: ...

    def set_parameters(self, arrays: Sequence[np.ndarray]) -> None: ...


def parameters_of(algorithm: Algorithm) -> Parametric:
    """The parameter view of `algorithm` (it reads and writes the algorithm's own model), or a
    StreamerError saying why it has none."""
    if isinstance(algorithm, Parametric):
        return algorithm
    if isinstance(algorithm, RiverAlgorithm):
        return RiverLinearParameters(algorithm.model, algorithm.name, owner=algorithm)
    raise StreamerError(
        f"algorithm {algorithm.name} has no parameters to federate: use FederatedLinearRegression, "
        "MLPRegressor, or a River pipeline FeatureHasher | StandardScaler | LinearRegression"
    )


_LINEAR = (linear_model.LinearRegression, linear_model.LogisticRegression)


class RiverLinearParameters:
    """The arrays of `FeatureHasher | StandardScaler* | LinearRegression|LogisticRegression`."""

    def __init__(self, model: Any, name: str = "model", owner: RiverAlgorithm | None = None):
        self.owner = owner
        steps = list(model.steps.values()) if isinstance(model, compose.Pipeline) else [model]
        hasher, *scalers, final = steps if len(steps) >= 2 else (None, model)
        if not isinstance(hasher, preprocessing.FeatureHasher):
            raise StreamerError(
                f"{name}: a federated River model starts with preprocessing.FeatureHasher "
                "(n_features, seed): every site's features must land in the same slots"
            )
        for scaler in scalers:
            if not isinstance(scaler, preprocessing.StandardScaler) or scaler.window_size:
                raise StreamerError(
                    f"{name}: {type(scaler).__name__} between the hasher and the model: only "
                    "StandardScaler steps (without window_size) can be federated"
                )
        if not isinstance(final, _LINEAR):
            raise StreamerError(
                f"{name}: {type(final).__name__} is not a River LinearRegression or "
                "LogisticRegression: it has no weights to federate"
            )
        self.size = int(hasher.n_features)
        self.scalers: list[preprocessing.StandardScaler] = scalers
        self.linear = final

    def get_parameters(self) -> Arrays:
        arrays: Arrays = []
        for scaler in self.scalers:
            mean, second, count = np.zeros(self.size), np.zeros(self.size), np.zeros(self.size)
            for slot, value in scaler.means.items():
                mean[slot] = value
                second[slot] = scaler.vars[slot] + value * value
                count[slot] = scaler.counts[slot]
            arrays += [mean, second, count]
        weights = np.zeros(self.size)
        for slot, value in self.linear._weights.items():
            weights[slot] = value
        return [*arrays, weights, np.array([self.linear.intercept], dtype=float)]

    def set_parameters(self, arrays: Sequence[np.ndarray]) -> None:
        expected = 3 * len(self.scalers) + 2
        if len(arrays) != expected or any(a.shape != (self.size,) for a in arrays[:-1]):
            shapes = [a.shape for a in arrays]
            raise StreamerError(
                f"parameters do not fit this model: got {shapes}, expected {expected - 1} arrays "
                f"of ({self.size},) and the intercept (another n_features or pipeline?)"
            )
        for index, scaler in enumerate(self.scalers):
            mean, second, count = arrays[3 * index : 3 * index + 3]
            scaler.means.clear()
            scaler.vars.clear()
            scaler.counts.clear()
            for slot in np.flatnonzero(count > 0):
                scaler.means[int(slot)] = float(mean[slot])
                scaler.vars[int(slot)] = max(float(second[slot] - mean[slot] ** 2), 0.0)
                scaler.counts[int(slot)] = max(round(float(count[slot])), 1)
        weights = arrays[-2]
        self.linear._weights.clear()
        self.linear._weights.update({int(s): float(weights[s]) for s in np.flatnonzero(weights)})
        self.linear.intercept = float(arrays[-1][0])
        if self.owner is not None and self.owner.n_learned == 0:
            # RiverAlgorithm predicts nothing before it learnt; a model given parameters can
            self.owner.n_learned = 1


def score(algorithm: Algorithm, xs: Sequence[Any], ys: Sequence[Any]) -> float:
    """The loss federated learning reports: mean squared error for a regressor, the error rate
    otherwise (a missing prediction counts as an error). NaN without records."""
    if not xs:
        return float("nan")
    predictions = [algorithm.predict_one(x) for x in xs]
    if getattr(algorithm, "kind", None) == "regressor" or isinstance(algorithm, Parametric):
        errors = [
            (float(p) - float(y)) ** 2 if p is not None else float(y) ** 2
            for p, y in zip(predictions, ys, strict=True)
        ]
        return float(np.mean(errors))
    wrong = [p is None or str(p) != str(y) for p, y in zip(predictions, ys, strict=True)]
    return float(np.mean(wrong))
