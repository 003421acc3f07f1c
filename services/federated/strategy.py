"""The server's strategy: a Flower strategy chosen by `aggregation.strategy`, inside a wrapper
that adds what the original's federated mode and our faults need.

- `aggregation.strategy`: `FedAvgStrategy` (the original's name) is Flower's FedAvg; any class
  of flwr.server.strategy (FedProx, FedAdam, FedYogi, FedAvgM, FedMedian...) by its name, with
  `aggregation.<param>` values given to its constructor. The aggregation is Flower's, never ours.
- Rounds are numbered from the start of the federation, across server restarts (`offset`:
  rounds completed before this process); each completed round is saved (state.py).
- `n.clients` samples that many of the connected clients per round; `min.n.clients` is what a
  round waits for; the round timeout is the server's (server.py).
- The evaluate phase always sends the round's aggregated model to every connected client, which
  publishes it as a version (the original's passive `model_parameters` update); the clients
  also score it on their records when `do.client.eval.step` is true.
"""

from __future__ import annotations

import inspect
import logging
import random
import time
from collections.abc import Callable
from typing import Any

import flwr.server.strategy as flower_strategies
from flwr.common import (
    EvaluateIns,
    EvaluateRes,
    FitIns,
    FitRes,
    Parameters,
    Scalar,
    parameters_to_ndarrays,
)
from flwr.server.client_manager import ClientManager
from flwr.server.client_proxy import ClientProxy
from flwr.server.strategy import Strategy
from pydantic import JsonValue

from services.federated.state import ServerState
from shared.algorithms.params import accepted_params, construct, parse_params
from shared.config import FederatedConfig
from shared.errors import StreamerError
from shared.wire.federated import RoundPhase, client_round

log = logging.getLogger("federate")

#: The original's strategy names -> Flower's.
ORIGINAL_NAMES = {"FedAvgStrategy": "FedAvg"}

EvaluateFn = Callable[[int, Any, dict[str, Scalar]], tuple[float, dict[str, Scalar]] | None]


def build_strategy(
    settings: FederatedConfig, initial: Parameters, evaluate_fn: EvaluateFn | None
) -> Strategy:
    """The Flower strategy `aggregation.strategy` names, with its `aggregation.<param>` values;
    sampling and waiting follow `min.n.clients` (RoundKeeper applies `n.clients`)."""
    name = ORIGINAL_NAMES.get(settings.aggregation_strategy, settings.aggregation_strategy)
    what = f"aggregation.strategy={settings.aggregation_strategy}"
    cls = getattr(flower_strategies, name, None)
    if not (inspect.isclass(cls) and issubclass(cls, Strategy)):
        known = sorted(
            n
            for n, obj in vars(flower_strategies).items()
            if inspect.isclass(obj) and issubclass(obj, Strategy) and obj is not Strategy
        )
        raise StreamerError(f"{what}: no such Flower strategy; known: FedAvgStrategy, {known}")
    ours: dict[str, Any] = {
        "fraction_fit": 1.0,
        "fraction_evaluate": 1.0,
        "min_fit_clients": settings.min_n_clients,
        "min_evaluate_clients": 1,
        "min_available_clients": settings.min_n_clients,
        "initial_parameters": initial,
        "evaluate_fn": evaluate_fn,
    }
    accepted = accepted_params(cls) or {}
    values = {key: value for key, value in ours.items() if key in accepted}
    values.update(parse_params(settings.aggregation_params))
    return construct(cls, values, what)


class RoundKeeper(Strategy):
    """Wraps the chosen strategy: absolute round numbers, saved rounds, `n.clients` sampling,
    the model sent to every client after each round, and the per-round history."""

    def __init__(
        self,
        inner: Strategy,
        settings: FederatedConfig,
        state: ServerState,
        initial: Parameters,
        offset: int = 0,
    ):
        self.inner = inner
        self.settings = settings
        self.state = state
        self.current = initial
        self.offset = offset
        self.completed = offset
        self.failures = 0
        self.clients = 0
        self._round_started = 0.0

    def __repr__(self) -> str:
        return f"RoundKeeper({self.inner!r}, from round {self.offset})"

    def initialize_parameters(self, client_manager: ClientManager) -> Parameters | None:
        return self.current

    def configure_fit(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, FitIns]]:
        if not self.settings.do_client_fit_step:
            return []
        # round.interval: the sites' stores fill between two rounds (Flower's thread may wait)
        pause = self._round_started + self.settings.round_interval / 1000 - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        self._round_started = time.monotonic()
        self.current = parameters
        absolute = server_round + self.offset
        instructions = self.inner.configure_fit(absolute, parameters, client_manager)
        wanted = self.settings.n_clients
        if 0 < wanted < len(instructions):
            instructions = random.sample(instructions, wanted)
        for _, ins in instructions:
            # the parameters sent are those of the previous round
            ins.config = {**ins.config, "round": absolute - 1}
        self.clients = len(instructions)
        return instructions

    def aggregate_fit(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, FitRes]],
        failures: list[tuple[ClientProxy, FitRes] | BaseException],
    ) -> tuple[Parameters | None, dict[str, Scalar]]:
        absolute = server_round + self.offset
        # a client with no record yet sends its parameters unchanged, weighing nothing
        results = [(proxy, res) for proxy, res in results if res.num_examples > 0]
        aggregated, metrics = (
            self.inner.aggregate_fit(absolute, results, failures) if results else (None, {})
        )
        if aggregated is not None:
            self.current = aggregated
        self.completed = absolute
        self.failures = len(failures)
        self.state.save(absolute, parameters_to_ndarrays(self.current), type(self.inner).__name__)
        self.state.record(
            RoundPhase(
                phase="fit",
                round=absolute,
                at=time.time(),
                clients=[client_round(res.metrics, res.num_examples) for _, res in results],
                failures=len(failures),
            )
        )
        log.info(
            "round aggregated",
            extra={"round": absolute, "results": len(results), "failures": len(failures)},
        )
        return aggregated, metrics

    def configure_evaluate(
        self, server_round: int, parameters: Parameters, client_manager: ClientManager
    ) -> list[tuple[ClientProxy, EvaluateIns]]:
        config: dict[str, Scalar] = {
            "round": server_round + self.offset,
            "evaluate": self.settings.do_client_eval_step,
        }
        clients = client_manager.all().values()
        return [(client, EvaluateIns(parameters, config)) for client in clients]

    def aggregate_evaluate(
        self,
        server_round: int,
        results: list[tuple[ClientProxy, EvaluateRes]],
        failures: list[tuple[ClientProxy, EvaluateRes] | BaseException],
    ) -> tuple[float | None, dict[str, Scalar]]:
        absolute = server_round + self.offset
        scored = [(proxy, res) for proxy, res in results if res.num_examples > 0]
        self.state.record(
            RoundPhase(
                phase="evaluate",
                round=absolute,
                at=time.time(),
                clients=[
                    client_round(res.metrics, res.num_examples, res.loss) for _, res in scored
                ],
                failures=len(failures),
            )
        )
        if not self.settings.do_client_eval_step or not scored:
            return None, {}
        return self.inner.aggregate_evaluate(absolute, scored, failures)

    def evaluate(
        self, server_round: int, parameters: Parameters
    ) -> tuple[float, dict[str, Scalar]] | None:
        if not self.settings.do_server_eval_step or server_round == 0:
            return None
        absolute = server_round + self.offset
        result = self.inner.evaluate(absolute, parameters)
        if result is not None:
            self.state.record(
                RoundPhase(
                    phase="server",
                    round=absolute,
                    at=time.time(),
                    loss=result[0],
                    metrics={name: _json_metric(name, value) for name, value in result[1].items()},
                )
            )
        return result


def _json_metric(name: str, value: Scalar) -> JsonValue:
    """A Flower metric as the JSON value RoundPhase stores: bytes (a Flower Scalar) has none."""
    if isinstance(value, bytes):
        raise ValueError(f"server metric {name!r} is bytes, which a round record cannot hold")
    return value
