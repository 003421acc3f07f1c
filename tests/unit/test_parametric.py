"""The parameter view of federated models: arrays round-trip, and FedAvg of the arrays is a
plain weighted mean (Flower's aggregate compared with numpy's, by hand)."""

from __future__ import annotations

import numpy as np
import pytest
from flwr.server.strategy.aggregate import aggregate

from shared.algorithms.parametric import parameters_of, score
from shared.algorithms.registry import build
from shared.errors import StreamerError

ROWS = [
    ({"a": float(i), "b": float(i % 3), "c": "x" if i % 2 else "y"}, 2.0 * i) for i in range(50)
]


@pytest.mark.parametrize("name", ["FederatedLinearRegression", "MLPRegressor"])
def test_set_of_get_keeps_every_prediction(name: str) -> None:
    trained, blank = (
        build(name, {"n_features": "64"}, None),
        build(name, {"n_features": "64"}, None),
    )
    for x, y in ROWS:
        trained.learn_one(x, y)
    parameters_of(blank).set_parameters(parameters_of(trained).get_parameters())
    for x, _ in ROWS:
        assert blank.predict_one(x) == pytest.approx(trained.predict_one(x))


def test_fedavg_of_two_sites_is_their_weighted_mean() -> None:
    sites = [build("FederatedLinearRegression", {"n_features": "64"}, None) for _ in range(2)]
    for site, rows in zip(sites, (ROWS[:10], ROWS[10:]), strict=True):
        for x, y in rows:
            site.learn_one(x, y)
    arrays = [parameters_of(site).get_parameters() for site in sites]
    averaged = aggregate([(arrays[0], 10), (arrays[1], 40)])
    for got, first, second in zip(averaged, *arrays, strict=True):
        np.testing.assert_allclose(got, (10 * first + 40 * second) / 50)


def test_arrays_of_another_layout_are_refused_with_the_reason() -> None:
    small = build("FederatedLinearRegression", {"n_features": "8"}, None)
    large = build("FederatedLinearRegression", {"n_features": "64"}, None)
    with pytest.raises(StreamerError, match="another n_features"):
        parameters_of(small).set_parameters(parameters_of(large).get_parameters())


def test_a_model_without_a_fixed_layout_says_why() -> None:
    with pytest.raises(StreamerError, match="FeatureHasher"):
        parameters_of(build("river.linear_model.LinearRegression", {}, None))


def test_score_is_the_mean_squared_error_of_a_regressor() -> None:
    model = build("FederatedLinearRegression", {"n_features": "64"}, None)
    for x, y in ROWS * 3:
        model.learn_one(x, y)
    xs, ys = [x for x, _ in ROWS], [y for _, y in ROWS]
    by_hand = np.mean([(model.predict_one(x) - y) ** 2 for x, y in zip(xs, ys, strict=True)])
    assert score(model, xs, ys) == pytest.approx(by_hand)
