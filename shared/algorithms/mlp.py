"""A small neural network for regression in numpy, learning one record at a time.

Why numpy and not PyTorch (deep-river): PyTorch's Linux wheel on PyPI pulls its CUDA libraries,
2.8 GB of downloads (torch 2.5.1: 0.9 GB, cuDNN 0.66 GB, cuBLAS 0.36 GB...) for a network of a
few thousand weights on machines without a GPU, and deep-river 0.3 wants river < 0.26 while
we run 0.26. One hidden layer trained by SGD is a few lines of numpy, and its parameters are
the arrays federated learning exchanges (shared/algorithms/parametric.py), as torch's would be.

Inputs go through the same seeded feature hasher as the federated linear models (a fixed
layout at every site), then a running standardisation whose mean and second moment are
parameters too; the target is standardised the same way, so one learning rate suits any scale.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from river import preprocessing

from shared.algorithms.base import Algorithm, Features
from shared.algorithms.parametric import Arrays
from shared.errors import StreamerError

#: A squared-error gradient larger than this (in standard deviations) is clipped: one outlier
#: must not throw the weights away.
CLIP = 5.0


class MLPRegressor(Algorithm):
    """x -> tanh(W1 z + b1) -> w2 . h + b2, z the standardised hashed features."""

    name = "MLPRegressor"
    incremental = True

    def __init__(
        self,
        n_features: int = 1024,
        hidden: int = 16,
        learning_rate: float = 0.01,
        seed: int = 0,
    ):
        if n_features < 1 or hidden < 1 or learning_rate <= 0:
            raise StreamerError(
                "MLPRegressor: n_features and hidden must be >= 1 and learning_rate > 0"
            )
        self.hasher = preprocessing.FeatureHasher(n_features=n_features, seed=seed)
        self.n_features, self.hidden, self.learning_rate = n_features, hidden, learning_rate
        rng = np.random.default_rng(seed)
        self.x_mean, self.x_second = np.zeros(n_features), np.zeros(n_features)
        self.w1 = rng.normal(0.0, 0.5, (hidden, n_features))
        self.b1 = np.zeros(hidden)
        self.w2 = rng.normal(0.0, 1.0 / np.sqrt(hidden), hidden)
        self.b2 = np.zeros(1)
        self.y_stats = np.zeros(2)  # mean and second moment of the target
        self.n_learned = 0

    # ---- the Parametric interface ----

    def get_parameters(self) -> Arrays:
        return [
            self.x_mean.copy(),
            self.x_second.copy(),
            self.w1.copy(),
            self.b1.copy(),
            self.w2.copy(),
            self.b2.copy(),
            self.y_stats.copy(),
        ]

    def set_parameters(self, arrays: Sequence[np.ndarray]) -> None:
        mine = self.get_parameters()
        if len(arrays) != len(mine) or any(
            a.shape != b.shape for a, b in zip(arrays, mine, strict=False)
        ):
            raise StreamerError(
                f"parameters do not fit this MLPRegressor: got {[a.shape for a in arrays]}, "
                f"expected {[a.shape for a in mine]} (another n_features or hidden?)"
            )
        copies = [np.array(a, dtype=float) for a in arrays]
        self.x_mean, self.x_second, self.w1, self.b1, self.w2, self.b2, self.y_stats = copies

    # ---- learning and predicting ----

    def _inputs(self, x: Features) -> np.ndarray:
        dense = np.zeros(self.n_features)
        # River leaves FeatureHasher.transform_one unannotated
        for slot, value in self.hasher.transform_one(x).items():  # type: ignore[no-untyped-call]
            dense[slot] += value
        return dense

    def _standardised(self, dense: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The slots that ever varied (hashing leaves most of them empty) and their z-scores:
        the network only computes with those."""
        var = self.x_second - self.x_mean**2
        active = np.flatnonzero(var > 1e-12)
        return active, (dense[active] - self.x_mean[active]) / np.sqrt(var[active])

    def _target_spread(self) -> float:
        mean, second = self.y_stats
        return float(np.sqrt(max(second - mean * mean, 1e-12)))

    def learn_one(self, x: Features, y: Any) -> None:
        if y is None:
            return
        target = float(y)
        dense = self._inputs(x)
        self.n_learned += 1
        rate = 1.0 / min(self.n_learned, 10_000)  # running moments; later ones weigh 1/10,000
        self.x_mean += rate * (dense - self.x_mean)
        self.x_second += rate * (dense * dense - self.x_second)
        self.y_stats += rate * (np.array([target, target * target]) - self.y_stats)
        active, z = self._standardised(dense)
        hidden = np.tanh(self.w1[:, active] @ z + self.b1)
        output = float(self.w2 @ hidden + self.b2[0])
        error = np.clip(output - (target - self.y_stats[0]) / self._target_spread(), -CLIP, CLIP)
        grad_hidden = error * self.w2 * (1.0 - hidden * hidden)
        step = self.learning_rate
        self.w2 -= step * error * hidden
        self.b2 -= step * error
        self.w1[:, active] -= step * np.outer(grad_hidden, z)
        self.b1 -= step * grad_hidden

    def predict_one(self, x: Features) -> float | None:
        if self.n_learned == 0 and not self.y_stats.any():
            return None
        active, z = self._standardised(self._inputs(x))
        hidden = np.tanh(self.w1[:, active] @ z + self.b1)
        output = float(self.w2 @ hidden + self.b2[0])
        return float(self.y_stats[0] + output * self._target_spread())

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "kind": "regressor",
            "params": {
                "n_features": self.n_features,
                "hidden": self.hidden,
                "learning_rate": self.learning_rate,
            },
            "library": f"numpy {np.__version__}",
            "records_learned": self.n_learned,
        }
