"""Algorithms known by their short name in algs.props (`algorithm=HoeffdingTreeClassifier`).

Each factory takes the parsed `algorithm.<name>` values, which go to the final River estimator,
and returns a RiverAlgorithm. Pipelines put in front what the estimator needs so that raw
records (numbers and category strings) work without a pre-processor:
- LogisticRegression: one-hot encoded categories + standardised numbers, one-vs-rest so it is
  multi-class (KDD has 23 labels);
- HalfSpaceTrees: numbers only, min-max scaled to [0, 1] (its trees split that unit cube);
- OneClassSVM, KMeans: numbers only, standardised (distances and margins are scale-dependent);
- FederatedLinearRegression: features hashed into a fixed layout (`n_features`, `seed`), then
  standardised: its parameters are the same arrays at every site (shared/algorithms/parametric.py);
- MLPRegressor: a small numpy network with the same layout (shared/algorithms/mlp.py).
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Mapping
from typing import Any

from river import anomaly, cluster, compose, forest, linear_model, multiclass, preprocessing, tree

from shared.algorithms.base import Algorithm
from shared.algorithms.mlp import MLPRegressor
from shared.algorithms.params import construct
from shared.algorithms.river_algorithm import RiverAlgorithm

Factory = Callable[[Mapping[str, Any], str], Algorithm]
#: The hasher's parameters in FederatedLinearRegression; the other values go to the estimator.
HASHER_PARAMS = ("n_features", "seed")


def _numbers() -> compose.SelectType:
    return compose.SelectType(numbers.Number)


def hoeffding_tree(values: Mapping[str, Any], what: str) -> RiverAlgorithm:
    model = construct(tree.HoeffdingTreeClassifier, values, what)
    return RiverAlgorithm(model, "HoeffdingTreeClassifier", dict(values))


def hoeffding_adaptive_tree(values: Mapping[str, Any], what: str) -> RiverAlgorithm:
    model = construct(tree.HoeffdingAdaptiveTreeClassifier, values, what)
    return RiverAlgorithm(model, "HoeffdingAdaptiveTreeClassifier", dict(values))


def adaptive_random_forest(values: Mapping[str, Any], what: str) -> RiverAlgorithm:
    model = construct(forest.ARFClassifier, values, what)
    return RiverAlgorithm(model, "ARFClassifier", dict(values))


def logistic_regression(values: Mapping[str, Any], what: str) -> RiverAlgorithm:
    binary = construct(linear_model.LogisticRegression, values, what)
    features = (compose.SelectType(str) | preprocessing.OneHotEncoder()) + (
        _numbers() | preprocessing.StandardScaler()
    )
    model = features | multiclass.OneVsRestClassifier(binary)
    return RiverAlgorithm(model, "LogisticRegression", dict(values))


def one_class_svm(values: Mapping[str, Any], what: str) -> RiverAlgorithm:
    detector = construct(anomaly.OneClassSVM, values, what)
    model = _numbers() | preprocessing.StandardScaler() | detector
    return RiverAlgorithm(model, "OneClassSVM", dict(values))


def half_space_trees(values: Mapping[str, Any], what: str) -> RiverAlgorithm:
    detector = construct(anomaly.HalfSpaceTrees, values, what)
    model = _numbers() | preprocessing.MinMaxScaler() | detector
    return RiverAlgorithm(model, "HalfSpaceTrees", dict(values))


def kmeans(values: Mapping[str, Any], what: str) -> RiverAlgorithm:
    clusterer = construct(cluster.KMeans, values, what)
    model = _numbers() | preprocessing.StandardScaler() | clusterer
    return RiverAlgorithm(model, "KMeans", dict(values))


def federated_linear_regression(values: Mapping[str, Any], what: str) -> RiverAlgorithm:
    hashing = {"n_features": 1024, "seed": 0}
    hashing.update({key: values[key] for key in HASHER_PARAMS if key in values})
    estimator = {key: value for key, value in values.items() if key not in HASHER_PARAMS}
    regression = construct(linear_model.LinearRegression, estimator, what)
    hasher = construct(preprocessing.FeatureHasher, hashing, what)
    model = hasher | preprocessing.StandardScaler() | regression
    return RiverAlgorithm(model, "FederatedLinearRegression", dict(values))


def mlp_regressor(values: Mapping[str, Any], what: str) -> MLPRegressor:
    return construct(MLPRegressor, values, what)


BUILTINS: dict[str, Factory] = {
    "HoeffdingTreeClassifier": hoeffding_tree,
    "HoeffdingAdaptiveTreeClassifier": hoeffding_adaptive_tree,
    "ARFClassifier": adaptive_random_forest,
    "LogisticRegression": logistic_regression,
    "OneClassSVM": one_class_svm,
    "HalfSpaceTrees": half_space_trees,
    "KMeans": kmeans,
    "FederatedLinearRegression": federated_linear_regression,
    "MLPRegressor": mlp_regressor,
}
