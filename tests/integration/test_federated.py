"""Federated learning on the real services: three sites (launcher, trainer as a Flower client,
their own InfluxDB records and model store) and a Flower server, as processes.

The sites see different regimes of one process (services/federated/example.py: each site's
sensors vary in their own subset), so a model trained at one site alone cannot learn what
never varied there. The reference is River's own loop: the same pipeline trained by River on
each site's share alone, scored on a held-out stream drawn from all three regimes; the
federated model must beat every one of them. Then the faults: a client killed in the middle of
its training does not block the round and rejoins a later one; a server killed and restarted
resumes after the last completed round.
"""

from __future__ import annotations

import csv
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import mean_squared_error

from services.federated.example import VARYING, generate
from services.federated.state import ServerState, sync_redis
from shared.algorithms.parametric import score
from shared.algorithms.registry import build
from shared.clients.influx import AioinfluxStore, InfluxDBError
from shared.clients.redis import connect_redis
from shared.config import ConnectionSettings
from shared.modelstore import ModelStore
from shared.wire.federated import RoundPhase, rounds_table
from shared.wire.influx import RecordsMeasurement
from tests.integration.pipeline_helpers import (
    MODEL_SECRET,
    REPO,
    cli_process,
    service_env,
    wait_for,
)

SITE_RECORDS = 3000
ALGORITHM = "FederatedLinearRegression"
PARAMS = {"n_features": "256", "seed": "0"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_federation(
    root: Path, data: Path, name: str, port: int, server_props: str, site_props: str = ""
) -> tuple[Path, list[Path]]:
    """A server use case and three site use cases on the generated shares."""
    params = "".join(f"algorithm.{key}={value}\n" for key, value in PARAMS.items())
    server = root / f"{name}-server"
    server.mkdir()
    (server / "federated.props").write_text(f"server.port={port}\n{server_props}")
    (server / "streaming.props").write_text(
        f"datafile={data / 'holdout.csv'}\ncontainsHeader=true\nproblem.type=Generic\n"
    )
    (server / "algs.props").write_text(f"algorithm={ALGORITHM}\n{params}")
    sites = []
    for site in VARYING:
        folder = root / f"{name}-{site}"
        folder.mkdir()
        (folder / "federated.props").write_text(f"server.address=127.0.0.1:{port}\n{site_props}")
        (folder / "streaming.props").write_text(
            f"datafile={data / f'site-{site}.csv'}\ncontainsHeader=true\nproblem.type=Generic\n"
            f"mainTopic={folder.name}\noutputTopic={folder.name}.outputs\nproducerType=FAST\n"
            "readingTimeInterval=100\nlauncher.max.staleness=-1\n"
        )
        (folder / "algs.props").write_text(
            f"algorithm={ALGORITHM}\n{params}training.maxdata=-1\nmodel.keep=50\n"
        )
        sites.append(folder)
    return server, sites


async def stored(connections: ConnectionSettings, database: str, sites: list[Path]) -> bool:
    """Every site's launcher stored all its records."""
    influx = AioinfluxStore(connections.model_copy(update={"influx_db": database}))
    try:
        for folder in sites:
            records, _ = await RecordsMeasurement(folder.name).recent(influx, -1)
            if len(records) < SITE_RECORDS:
                return False
        return True
    except InfluxDBError:  # the launcher has not created the database yet
        return False
    finally:
        await influx.close()


@contextmanager
def stored_sites(
    tmp_path: Path, connections: ConnectionSettings, sites: list[Path], env: dict[str, str]
) -> Iterator[None]:
    """One launcher process for the three sites, their shares replayed and stored."""
    with (
        cli_process(["launch", *map(str, sites)], env, tmp_path / "launch.log"),
        (tmp_path / "produce.log").open("ab") as produce_log,
    ):
        subprocess.run(
            [sys.executable, "-m", "services.cli", "produce", *map(str, sites)],
            cwd=REPO,
            env=env,
            stdout=produce_log,
            stderr=subprocess.STDOUT,
            timeout=120,
            check=True,
        )
        yield


def read_csv(path: Path) -> tuple[list[dict[str, float]], list[float]]:
    with path.open() as handle:
        rows = list(csv.DictReader(handle))
    xs = [{k: float(v) for k, v in row.items() if k != "target"} for row in rows]
    return xs, [float(row["target"]) for row in rows]


@pytest.fixture
def shares(tmp_path: Path) -> Path:
    return generate(tmp_path / "data", site_records=SITE_RECORDS)


async def test_federated_model_beats_each_site_alone(
    tmp_path: Path, connections: ConnectionSettings, unique: str, shares: Path
):
    rounds = 5
    server, sites = make_federation(
        tmp_path, shares, unique, free_port(), f"n.rounds={rounds}\nmin.n.clients=3\n"
    )
    env = service_env(unique)
    with ExitStack() as stack:
        stack.enter_context(stored_sites(tmp_path, connections, sites, env))
        await wait_for(lambda: stored(connections, unique, sites), "the records in InfluxDB")
        for folder in sites:
            stack.enter_context(cli_process(["train", str(folder)], env, tmp_path / "train.log"))
        stack.enter_context(
            cli_process(["federate", "server", str(server)], env, tmp_path / "server.log")
        )
        redis = connect_redis(connections)
        try:
            stores = [ModelStore(redis, f.name, MODEL_SECRET.encode()) for f in sites]

            async def last_round_published() -> bool:
                for store in stores:
                    latest = await store.latest_version()
                    meta = await store.metadata(latest) if latest else {}
                    if meta.get("round") != rounds:
                        return False
                return True

            await wait_for(last_round_published, f"round {rounds} at every site", seconds=90)
            federated = [(await store.load()) for store in stores]
        finally:
            await redis.aclose()

    holdout_x, holdout_y = read_csv(shares / "holdout.csv")
    for model in federated:
        assert model is not None and model.meta["mode"] == "federated"
    federated_loss = [score(model.algorithm, holdout_x, holdout_y) for model in federated]
    # every site holds the same aggregated model
    assert max(federated_loss) - min(federated_loss) < 1e-9
    alone = {}
    for site in VARYING:
        reference = build(ALGORITHM, PARAMS, None)
        xs, ys = read_csv(shares / f"site-{site}.csv")
        for _ in range(rounds):  # as many passes as the federation made
            for x, y in zip(xs, ys, strict=True):
                reference.learn_one(x, y)
        alone[site] = score(reference, holdout_x, holdout_y)
    assert all(federated_loss[0] < loss for loss in alone.values()), (federated_loss, alone)
    # the three regimes together identify every effect: close to the noise (0.3² = 0.09)
    assert federated_loss[0] < 0.5, (federated_loss, alone)
    assert min(alone.values()) > 1.0, alone
    state = ServerState(sync_redis(connections), server.name)
    assert [entry.round for entry in state.history() if entry.phase == "fit"] == list(
        range(1, rounds + 1)
    )
    assert np.isfinite(federated_loss[0])
    # what the API and the dashboard show per round (shared.wire.federated.rounds_table)
    table = rounds_table(state.history())
    assert [row.round for row in table] == list(range(1, rounds + 1))
    for row in table:  # every site trained on all its records in every round
        examples = {client: figures.examples for client, figures in row.clients.items()}
        assert examples == {folder.name: SITE_RECORDS for folder in sites}, row
    for folder, site, model in zip(sites, VARYING, federated, strict=True):
        xs, ys = read_csv(shares / f"site-{site}.csv")  # its loss: scikit-learn's MSE, by hand
        predictions = [model.algorithm.predict_one(x) for x in xs]
        expected = mean_squared_error(ys, predictions)
        assert table[-1].clients[folder.name].loss == pytest.approx(expected, rel=1e-6)


def fit_rounds(state: ServerState) -> list[RoundPhase]:
    return [entry for entry in state.history() if entry.phase == "fit"]


def training_calls(log: Path) -> int:
    """Flower's client logs each training request it receives."""
    return log.read_text(errors="replace").count("Received: train message") if log.exists() else 0


async def test_a_dead_client_does_not_block_a_round_and_a_restarted_server_resumes(
    tmp_path: Path, connections: ConnectionSettings, unique: str, shares: Path
):
    rounds = 8
    server, sites = make_federation(
        tmp_path,
        shares,
        unique,
        free_port(),
        f"n.rounds={rounds}\nmin.n.clients=2\nround.timeout=20000\nround.interval=1500\n",
        # slow enough training that a kill lands in the middle of it
        site_props="local.epochs=20\n",
    )
    env = service_env(unique)
    state = ServerState(sync_redis(connections), server.name)
    victim_log = tmp_path / "train-c.log"
    with ExitStack() as stack:
        stack.enter_context(stored_sites(tmp_path, connections, sites, env))
        await wait_for(lambda: stored(connections, unique, sites), "the records in InfluxDB")
        for folder in sites[:2]:
            stack.enter_context(cli_process(["train", str(folder)], env, tmp_path / "train.log"))
        victim = stack.enter_context(cli_process(["train", str(sites[2])], env, victim_log))
        server_args = ["federate", "server", str(server)]
        first_server = cli_process(server_args, env, tmp_path / "server.log")
        server_process = first_server.__enter__()
        stack.callback(first_server.__exit__, None, None, None)  # a second exit does nothing

        # the third site dies in the middle of its training in round 2 (or later)
        await wait_for(lambda: len(fit_rounds(state)) >= 1, "round 1")
        before = training_calls(victim_log)
        await wait_for(lambda: training_calls(victim_log) > before, "the victim's training")
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        killed_at = len(fit_rounds(state)) + 1  # the round under way
        await wait_for(lambda: len(fit_rounds(state)) >= killed_at, "the round it died in")
        cut = fit_rounds(state)[killed_at - 1]
        # the round went on without it, with the others that answered in time (on a busy
        # machine one of them may miss round.timeout too)
        answered = {client.client for client in cut.clients}
        assert answered and answered <= {f.name for f in sites[:2]}, cut
        assert cut.failures >= 1, cut  # the dead site counted as a failure (the round had 2 or 3)

        # it rejoins at a later round
        stack.enter_context(cli_process(["train", str(sites[2])], env, victim_log))

        def rejoined() -> bool:
            return any(
                sites[2].name in {client.client for client in entry.clients}
                for entry in fit_rounds(state)[killed_at:]
            )

        await wait_for(rejoined, "the restarted site in a later round")

        # the server is killed, then restarted: it resumes after the last completed round
        server_process.send_signal(signal.SIGKILL)
        server_process.wait()
        first_server.__exit__(None, None, None)
        saved = state.load()
        assert saved is not None
        done = len(fit_rounds(state))
        stack.enter_context(cli_process(server_args, env, tmp_path / "server-2.log"))
        await wait_for(
            lambda: (state.load() or saved).round == rounds, f"round {rounds}", seconds=120
        )
    numbers = [entry.round for entry in fit_rounds(state)]
    # before the kill: 1..done; after: from the saved round on, never from 1 again
    assert numbers[:done] == list(range(1, done + 1))
    assert numbers[done:] == list(range(saved.round + 1, rounds + 1))
    assert saved.round >= done - 1  # at most the round under way was lost
