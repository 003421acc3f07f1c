"""The trainer of a federated client use case (federated.props with `server.address`): a Flower
client instead of the streaming learner.

A site's model changes once per round, by the federation, not record by record: in each round
the client learns the records its own launchers stored (InfluxDB, the most recent
`training.maxdata`, `local.epochs` passes) starting from the server's model, and sends back
only the parameters. Each aggregated model it receives (after every round) is published as a
version of its own model store, mode `federated`, with the round in its metadata; its
launchers adopt it like any other version. It does not stream-learn meanwhile: a stream-learnt
model would drift from the federation's between rounds and be overwritten at the next one.

Flower's client (flwr's start_client, grpc-bidi) blocks, so it runs in a daemon thread; its
calls read InfluxDB and publish through this event loop. When the server goes away (restart,
end of the rounds) the client connects again with backoff: it rejoins at the next round. One
client per use case is active, as one trainer is: it holds the trainer lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import numpy as np
from flwr.client import NumPyClient, start_client
from redis.asyncio.lock import Lock
from redis.exceptions import LockError, RedisError

from services.trainer.learner import parse_stored
from services.trainer.service import LEASE_S, RENEW_S
from shared.algorithms.base import Algorithm
from shared.algorithms.parametric import parameters_of, score
from shared.algorithms.registry import build_algorithm
from shared.clients.influx import AioinfluxStore
from shared.clients.redis import check_redis, connect_redis
from shared.config import UseCase
from shared.heartbeat import this_instance
from shared.modelstore import ModelIntegrityError, ModelStore, model_secret
from shared.prepostprocessors import processor_for
from shared.records import record_class_for
from shared.wire.influx import RecordsMeasurement
from shared.wire.keys import UseCaseKeys

log = logging.getLogger("trainer")

#: Seconds between two connection attempts after the server went away.
RECONNECT_S = 2.0
#: Longest wait of a Flower call for InfluxDB or Redis.
IO_TIMEOUT_S = 60.0


@dataclass
class FederatedCounters:
    round: int = 0  # the round of the newest version published
    rounds: int = 0  # rounds this client trained in
    trainings: int = 0  # versions published
    records_learned: int = 0  # by this process, over all rounds
    standby: int = 1  # 1 while another trainer holds the lease


class FederatedClient:
    """One client use case's trainer (the `Worker` of shared/runtime.py)."""

    def __init__(self, usecase: UseCase, stop: asyncio.Event):
        assert usecase.federated is not None and usecase.federated.server_address is not None
        self.usecase = usecase
        self.settings = usecase.federated
        self.stop = stop
        self.counters = FederatedCounters()
        self.keys = UseCaseKeys(usecase.name)
        self.model_version: int | None = None
        self.record_class = record_class_for(usecase)
        self.processor = processor_for(usecase)

    async def run(self) -> FederatedCounters:
        usecase = self.usecase
        self.loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:
            self.redis = connect_redis(usecase.connections)
            stack.push_async_callback(self.redis.aclose)
            await check_redis(self.redis, usecase.connections.redis_url)
            self.store = ModelStore(
                self.redis, usecase.name, model_secret(usecase.connections), usecase.algs.model_keep
            )
            self.influx = AioinfluxStore(usecase.connections)
            stack.push_async_callback(self.influx.close)
            await self.influx.check()
            await self.influx.ensure_database()
            if not await self._acquire_lease(stack):
                return self.counters
            self.model = await self._resume()
            self.view = parameters_of(self.model)
            log.info(
                "federated client started",
                extra={"usecase": usecase.name, "server": self.settings.server_address},
            )
            while not self.stop.is_set():
                await self._session()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stop.wait(), RECONNECT_S)
        log.info(
            "federated client stopped", extra={"usecase": usecase.name, **self.counters.__dict__}
        )
        return self.counters

    async def _resume(self) -> Algorithm:
        """The newest published model (the last round's), else a fresh one."""
        try:
            checkpoint = await self.store.load_checkpoint()
        except ModelIntegrityError as error:
            log.error(f"{error}; starting from a fresh model", extra={"usecase": self.usecase.name})
            checkpoint = None
        if checkpoint is None or checkpoint.algorithm is None:
            return build_algorithm(self.usecase)
        self.model_version = checkpoint.version
        self.counters.round = int(checkpoint.meta.get("round") or 0)
        return checkpoint.algorithm

    async def _session(self) -> None:
        """One connection to the server, in a daemon thread (Flower's client cannot be
        interrupted), until the server ends it or goes away, or this service stops."""
        ended: asyncio.Future[None] = self.loop.create_future()

        def work() -> None:
            error: BaseException | None = None
            try:
                start_client(
                    server_address=self.settings.server_address or "",
                    client=SiteClient(self).to_client(),
                    insecure=True,
                )
            except BaseException as failure:  # reported on the event loop
                error = failure
            with contextlib.suppress(RuntimeError):  # the loop closed: the process is ending
                self.loop.call_soon_threadsafe(_settle, ended, error)

        threading.Thread(target=work, name=f"flower-{self.usecase.name}", daemon=True).start()
        stopped: asyncio.Future[Any] = asyncio.create_task(self.stop.wait())
        try:
            await asyncio.wait({ended, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
        if ended.done() and ended.exception() is not None:
            log.warning(
                "federated server connection lost; reconnecting",
                extra={"usecase": self.usecase.name, "error": repr(ended.exception())},
            )

    # ---- called from Flower's thread ----

    def call(self, work: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(IO_TIMEOUT_S)

    def window(self) -> tuple[list[Any], list[Any], dict[str, int]]:
        """The records the site's launchers stored (most recent training.maxdata), as
        features and targets, and how far they go in each input partition."""
        stored, ends = self.call(
            RecordsMeasurement(self.usecase.name).recent(
                self.influx, self.usecase.algs.training_maxdata
            )
        )
        records = [r for r in parse_stored(stored, self.record_class, self.processor) if r.targets]
        return [r.values for r in records], [r.targets[0] for r in records], ends

    def adopt(self, arrays: list[np.ndarray], config: dict[str, Any]) -> None:
        """Take the server's model; publish it when it is a round newer than the last one."""
        self.view.set_parameters(arrays)
        server_round = int(config.get("round", 0))
        if server_round <= self.counters.round:
            return
        published = self.call(
            self.store.publish(
                self.model,
                lease=self.lease,
                mode="federated",
                reason=f"federated round {server_round} ({self.settings.server_address})",
                round=server_round,
            )
        )
        self.model_version, self.counters.round = published.version, server_round
        self.counters.trainings += 1
        log.info(
            "federated model published",
            extra={
                "usecase": self.usecase.name,
                "round": server_round,
                "version": published.version,
            },
        )

    def fit(self, arrays: list[np.ndarray], config: dict[str, Any]) -> tuple[list[np.ndarray], int]:
        """Learn the local records from the server's model; FedProx's `proximal_mu` pulls the
        result back toward it (a proximal step (w + mu g) / (1 + mu) after each pass)."""
        self.adopt(arrays, config)
        xs, ys, _ = self.window()
        mu = float(config.get("proximal_mu", 0.0))
        for _ in range(self.settings.local_epochs):
            for x, y in zip(xs, ys, strict=True):
                self.model.learn_one(x, y)
            if mu > 0:
                local = self.view.get_parameters()
                self.view.set_parameters(
                    [(w + mu * g) / (1 + mu) for w, g in zip(local, arrays, strict=True)]
                )
        self.counters.rounds += 1
        self.counters.records_learned += len(xs) * self.settings.local_epochs
        return self.view.get_parameters(), len(xs)

    def evaluate(self, arrays: list[np.ndarray], config: dict[str, Any]) -> tuple[float, int]:
        self.adopt(arrays, config)
        if not config.get("evaluate", True):
            return 0.0, 0
        xs, ys, _ = self.window()
        return score(self.model, xs, ys), len(xs)

    # ---- the lease (one active client per use case, as one trainer) ----

    async def _acquire_lease(self, stack: contextlib.AsyncExitStack) -> bool:
        self.lease = Lock(self.redis, self.keys.trainer_lease, timeout=LEASE_S, thread_local=False)
        while not self.stop.is_set():
            if await self.lease.acquire(blocking=False, token=this_instance()):
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), RENEW_S)
        else:
            return False
        self.counters.standby = 0
        renewer = asyncio.create_task(self._renew_lease(), name="federated-lease")
        stack.callback(renewer.cancel)
        stack.push_async_callback(self._release_lease)
        return True

    async def _renew_lease(self) -> None:
        while True:
            await asyncio.sleep(RENEW_S)
            try:
                await self.lease.reacquire()
            except LockError:
                log.error("trainer lease lost: stopping", extra={"usecase": self.usecase.name})
                self.stop.set()
                return
            except (RedisError, OSError) as error:
                log.warning("lease not renewed, retrying", extra={"error": str(error)})

    async def _release_lease(self) -> None:
        with contextlib.suppress(LockError, RedisError, OSError):
            await self.lease.release()


class SiteClient(NumPyClient):
    """Flower's view of the site: parameters in, parameters out, never a record."""

    def __init__(self, owner: FederatedClient):
        self.owner = owner

    def get_parameters(self, config: dict[str, Any]) -> list[np.ndarray]:
        return self.owner.view.get_parameters()

    def fit(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[list[np.ndarray], int, dict[str, Any]]:
        arrays, examples = self.owner.fit(parameters, config)
        return arrays, examples, {"client": self.owner.usecase.name}

    def evaluate(
        self, parameters: list[np.ndarray], config: dict[str, Any]
    ) -> tuple[float, int, dict[str, Any]]:
        loss, examples = self.owner.evaluate(parameters, config)
        return loss, examples, {"client": self.owner.usecase.name}


def _settle(future: asyncio.Future[None], error: BaseException | None) -> None:
    with contextlib.suppress(asyncio.InvalidStateError):
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)
