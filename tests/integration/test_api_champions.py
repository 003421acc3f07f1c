"""The API's champion endpoints in-process against the real Redis and InfluxDB: the leaderboard
from the evaluator's points and the newest version's roles; promote and rollback need the
token, refuse what the roles do not allow, write the trainer's request and an audit entry."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest

from shared.algorithms.registry import build_algorithm
from shared.clients.influx import AioinfluxStore
from shared.clients.redis import connect_redis
from shared.config import load_usecase
from shared.modelstore import ModelStore
from shared.wire.influx import LeaderboardMeasurement
from shared.wire.store import RetrainRequest
from tests.integration.test_api import AUTH, Api, cleanup, make_usecase, running_api

TREE = "river.tree.HoeffdingTreeClassifier"
PRIOR = "river.dummy.PriorClassifier"


@pytest.fixture
async def api(tmp_path, connections, unique) -> AsyncIterator[Api]:
    """A use case whose champion has two challengers and a promotion rule."""
    settings = connections.model_copy(
        update={"influx_db": unique, "usecases_dir": tmp_path / "usecases"}
    )
    folder = make_usecase(settings.usecases_dir, unique)
    with (folder / "algs.props").open("a") as algs:
        algs.write(f"challengers={TREE},{PRIOR}\npromotion.metric=accuracy\n")
    redis = connect_redis(settings)
    try:
        async with running_api(settings, unique) as (app, client):
            yield Api(app, client, redis, unique, settings)
    finally:
        await redis.aclose()
        await cleanup(settings, unique)


async def publish(api: Api, promote: str | None = None) -> int:
    """A version of the use case's models (promoting `promote` first), as the trainer does."""
    models = build_algorithm(load_usecase(api.settings.usecases_dir / api.name, api.settings))
    if promote:
        models.promote(promote)  # type: ignore[attr-defined]
    store = ModelStore(api.redis, api.name, b"model-secret")
    mode = "promotion" if promote else "stream"
    return (await store.publish(models, mode=mode, reason="test")).version


async def test_the_leaderboard_shows_each_models_values_with_the_newest_roles(api):
    empty = (await api.client.get(f"/usecases/{api.name}/leaderboard")).json()
    assert (empty["models"], empty["champion"]) == ([], None)  # nothing ran yet
    influx = AioinfluxStore(api.settings)
    await influx.ensure_database()
    board, now = LeaderboardMeasurement(api.name), int(time.time() * 1000)
    points = []
    for evaluation, (champion_acc, tree_acc) in enumerate([(0.5, 0.6), (0.7, 0.9)], 1):
        for model, value in (("HoeffdingTreeClassifier", champion_acc), (TREE, tree_acc)):
            for view in ("cumulative", "window"):
                role = "champion" if model == "HoeffdingTreeClassifier" else "challenger"
                points.append(
                    board.point(model, view, "accuracy", value, pairs=100 * evaluation,
                                role=role, evaluation=evaluation, time_ms=now + evaluation)
                )  # fmt: skip
    points.append(board.point(PRIOR, "window", "accuracy", None, pairs=0, role="challenger",
                              evaluation=2, time_ms=now + 2))  # fmt: skip
    await influx.write_lines(points)
    await influx.close()
    version = await publish(api)
    body = (await api.client.get(f"/usecases/{api.name}/leaderboard")).json()
    assert (body["champion"], body["challengers"]) == ("HoeffdingTreeClassifier", [TREE, PRIOR])
    assert body["model_version"] == version and body["previous_champion"] is None
    assert body["promotion"] == {"metric": "accuracy", "margin": 0.01, "min_records": 1000}
    rows = {row["model"]: row for row in body["models"]}
    assert [row["model"] for row in body["models"]] == ["HoeffdingTreeClassifier", TREE, PRIOR]
    assert rows[TREE]["values"] == {"cumulative": {"accuracy": 0.9}, "window": {"accuracy": 0.9}}
    assert rows[TREE]["pairs"] == {"cumulative": 200, "window": 200}
    assert rows[TREE]["time_ms"] == now + 2
    assert rows["HoeffdingTreeClassifier"]["role"] == "champion"
    assert rows[PRIOR]["values"] == {"window": {"accuracy": None}}  # undefined, not made up
    window = (await api.client.get(f"/usecases/{api.name}/leaderboard?view=window")).json()
    assert all(set(row["values"]) == {"window"} for row in window["models"])
    # after a promotion, the roles are the newest version's
    await publish(api, promote=TREE)
    promoted = (await api.client.get(f"/usecases/{api.name}/leaderboard")).json()
    assert (promoted["champion"], promoted["previous_champion"]) == (
        TREE,
        "HoeffdingTreeClassifier",
    )
    assert [row["role"] for row in promoted["models"]] == ["champion", "challenger", "challenger"]


async def test_promote_and_rollback_need_the_token(api):
    await publish(api)
    for path, body in (("promote", {"model": TREE}), ("rollback", None)):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = await api.client.post(
                f"/usecases/{api.name}/{path}", json=body, headers=headers
            )
            assert response.status_code == 401, (path, headers)
    assert await api.redis.xrange(f"streamer:{api.name}:train:requests") == []
    assert (await api.client.get(f"/usecases/{api.name}/leaderboard")).status_code == 200  # open


async def test_a_promotion_is_a_request_to_the_trainer_and_an_audit_entry(api):
    path = f"/usecases/{api.name}/promote"
    refused = await api.client.post(path, json={"model": TREE}, headers=AUTH)
    assert refused.status_code == 409  # no version yet
    await publish(api)
    for model, detail in (
        ("KNN", f"KNN is not a challenger of version 1 ({TREE}, {PRIOR})"),
        ("HoeffdingTreeClassifier", "HoeffdingTreeClassifier is the champion already"),
    ):
        response = await api.client.post(path, json={"model": model}, headers=AUTH)
        assert (response.status_code, response.json()["detail"]) == (409, detail)
    rollback = await api.client.post(f"/usecases/{api.name}/rollback", headers=AUTH)
    assert rollback.status_code == 409
    assert rollback.json()["detail"] == f"{api.name} has no previous champion to restore"
    assert (await api.client.post(path, json={}, headers=AUTH)).status_code == 422

    response = await api.client.post(
        path, json={"model": TREE, "reason": "better on drift"}, headers={**AUTH, "X-Actor": "eve"}
    )
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert (accepted["action"], accepted["champion"], accepted["replaces"]) == (
        "promote",
        TREE,
        "HoeffdingTreeClassifier",
    )
    entries = await api.redis.xrange(f"streamer:{api.name}:train:requests")
    assert [entry_id.decode() for entry_id, _ in entries] == [accepted["request_id"]]
    request = RetrainRequest.decode(entries[0][1])
    assert (request.action, request.model, request.reason, request.by) == (
        "promote",
        TREE,
        "better on drift",
        "api",
    )
    await publish(api, promote=TREE)  # the trainer carried it out
    response = await api.client.post(f"/usecases/{api.name}/rollback", headers=AUTH)
    assert response.status_code == 202
    assert (response.json()["champion"], response.json()["replaces"]) == (
        "HoeffdingTreeClassifier",
        TREE,
    )
    audit = (await api.client.get(f"/usecases/{api.name}/config/audit", headers=AUTH)).json()
    assert [(e["who"], e["key"], e["old"], e["new"]) for e in audit["entries"]] == [
        ("api", "champion", TREE, "HoeffdingTreeClassifier (rollback: api request)"),
        ("eve", "champion", "HoeffdingTreeClassifier", f"{TREE} (promote: better on drift)"),
    ]
    assert all(abs(entry["at"] - time.time()) < 60 for entry in audit["entries"])
