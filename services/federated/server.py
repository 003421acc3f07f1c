"""`streamer federate server USECASE`: a Flower server running `n.rounds` rounds for the client
use cases that name it in their `server.address`.

Flower's gRPC server and its round loop (flwr.server.Server, run_fl) run in a daemon thread: they
block, and the round loop cannot be interrupted between two waits. The event loop keeps the
heartbeat and the signals; a SIGTERM stops the gRPC server and the process ends, which costs at
most the round under way (the completed ones are saved: a restart resumes after the last one).

A client that dies mid-round fails that round's call at once (its stream breaks); one that hangs
is cut off by `round.timeout`: either way the round aggregates the others (Flower's
accept_failures) and the client takes part again in the next round it is connected for. A round
waits for `min.n.clients` connected clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.common import Scalar, ndarrays_to_parameters
from flwr.server import Server, ServerConfig, SimpleClientManager
from flwr.server.server import run_fl

# Flower's own gRPC server for its grpc-bidi transport (the one flwr's start_server runs);
# started here so that signals stay ours (start_server installs handlers that exit).
from flwr.server.superlink.fleet.grpc_bidi.grpc_server import start_grpc_server

from services.federated.state import ServerState, sync_redis
from services.federated.strategy import RoundKeeper, build_strategy
from shared.algorithms.base import Algorithm, Features
from shared.algorithms.parametric import parameters_of, score
from shared.algorithms.registry import build_algorithm
from shared.config import UseCase
from shared.errors import StreamerError
from shared.records import record_class_for
from shared.records.base import RecordError
from shared.runtime import heartbeating, stop_on_signals

log = logging.getLogger("federate")

#: Held-out records the server scores each round's model on (do.server.eval.step).
HELD_OUT_LIMIT = 20_000


@dataclass
class ServerCounters:
    round: int = 0  # the last completed round
    rounds: int = 0  # n.rounds
    clients: int = 0  # sampled in the last round
    failures: int = 0  # of the last round


def held_out(usecase: UseCase, limit: int = HELD_OUT_LIMIT) -> tuple[list[Any], list[Any]]:
    """The first `limit` labelled records of the server's datafile (its held-out stream)."""
    datafile = usecase.streaming.datafile
    if datafile is None or not datafile.is_file():
        raise StreamerError(
            f"{usecase.name}: do.server.eval.step=true needs a datafile in streaming.props "
            f"(the held-out stream the server scores each round on); got {datafile}"
        )
    record_class = record_class_for(usecase)
    opener = gzip.open if datafile.suffix == ".gz" else open
    xs: list[Features] = []
    ys: list[Any] = []
    with opener(datafile, "rt", encoding="utf-8") as lines:
        if usecase.streaming.contains_header:
            next(lines, None)
        for line in lines:
            if len(xs) >= limit:
                break
            try:
                record = record_class.parse(line.rstrip("\n"), str(datafile))
            except RecordError:
                continue
            if record.targets:
                xs.append(record.values)
                ys.append(record.targets[0])
    return xs, ys


def server_evaluation(usecase: UseCase, model: Algorithm) -> Any:
    """Flower's evaluate_fn: the round's model scored on the held-out stream."""
    xs, ys = held_out(usecase)
    view = parameters_of(model)

    def evaluate(
        server_round: int, arrays: Sequence[np.ndarray], config: dict[str, Scalar]
    ) -> tuple[float, dict[str, Scalar]]:
        view.set_parameters(arrays)
        loss = score(model, xs, ys)
        return loss, {"records": len(xs)}

    return evaluate


async def serve_federated(usecase: UseCase) -> ServerCounters:
    settings = usecase.federated
    if settings is None or settings.is_client:
        raise StreamerError(
            f"{usecase.name}: not a federated server (its federated.props must exist and have "
            "no server.address)"
        )
    assert settings.n_rounds is not None
    counters = ServerCounters(rounds=settings.n_rounds)
    client = sync_redis(usecase.connections)
    state = ServerState(client, usecase.name)
    model = build_algorithm(usecase)
    saved = await asyncio.to_thread(state.load)
    arrays = saved.arrays if saved else parameters_of(model).get_parameters()
    offset = saved.round if saved else 0
    counters.round = offset
    initial = ndarrays_to_parameters(arrays)
    evaluate_fn = server_evaluation(usecase, model) if settings.do_server_eval_step else None
    inner = build_strategy(settings, initial, evaluate_fn)
    keeper = RoundKeeper(inner, settings, state, initial, offset)
    remaining = settings.n_rounds - offset
    stop = asyncio.Event()

    def snapshot() -> dict[str, Any]:
        counters.round, counters.clients = keeper.completed, keeper.clients
        counters.failures = keeper.failures
        return {"counters": {usecase.name: dict(counters.__dict__)}}

    with stop_on_signals(stop):
        async with heartbeating("federate", [usecase], snapshot):
            if remaining <= 0:
                log.info(
                    "every round is done already",
                    extra={"usecase": usecase.name, "round": offset},
                )
                client.close()
                return counters
            manager = SimpleClientManager()
            address = f"{settings.server_host}:{settings.server_port}"
            grpc_server = start_grpc_server(client_manager=manager, server_address=address)
            log.info(
                "federated server listening",
                extra={
                    "usecase": usecase.name,
                    "address": address,
                    "strategy": type(inner).__name__,
                    "from_round": offset + 1,
                    "rounds": settings.n_rounds,
                },
            )
            try:
                await _rounds(
                    Server(client_manager=manager, strategy=keeper),
                    ServerConfig(num_rounds=remaining, round_timeout=settings.round_timeout / 1000),
                    stop,
                )
            finally:
                grpc_server.stop(grace=1)
                client.close()
    snapshot()
    log.info("federated server stopped", extra={"usecase": usecase.name, **counters.__dict__})
    return counters


async def _rounds(server: Server, config: ServerConfig, stop: asyncio.Event) -> None:
    """Run Flower's round loop in a daemon thread until it ends or `stop` is set."""
    loop = asyncio.get_running_loop()
    finished: asyncio.Future[None] = loop.create_future()

    def work() -> None:
        try:
            run_fl(server, config)
        except BaseException as error:  # reported on the event loop
            outcome: BaseException | None = error
        else:
            outcome = None
        with contextlib.suppress(RuntimeError):  # the loop closed: the process is ending
            loop.call_soon_threadsafe(_settle, finished, outcome)

    threading.Thread(target=work, name="flower-rounds", daemon=True).start()
    stopped: asyncio.Future[Any] = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if finished.done():
        finished.result()


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
