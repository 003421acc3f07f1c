"""Every Redis key of the pipeline, built in one place.

Use-case keys share the prefix `streamer:<usecase>:`; heartbeats are global
(`streamer:heartbeat:<service>:<instance>`). docs/wire-format.md lists them with their types.
"""

from __future__ import annotations

from dataclasses import dataclass

ROOT = "streamer"
HEARTBEAT_PREFIX = f"{ROOT}:heartbeat:"


@dataclass(frozen=True)
class UseCaseKeys:
    """The Redis keys of one use case."""

    usecase: str

    @property
    def prefix(self) -> str:
        return f"{ROOT}:{self.usecase}:"

    # ---- model store (written by the trainer) ----
    @property
    def model_counter(self) -> str:
        """String: the last version number handed out (INCR by the trainer, the offline mode;
        never reused, even when a publication fails)."""
        return self.prefix + "model:counter"

    @property
    def model_latest(self) -> str:
        """String: the newest published version number (written with each version; read by
        launchers, the API, the dashboard)."""
        return self.prefix + "model:latest"

    @property
    def model_checkpoint(self) -> str:
        """Hash: the metadata (ModelMeta) of the newest checkpoint, a version whose full,
        learning model is kept: a restarted trainer resumes from it."""
        return self.prefix + "model:checkpoint"

    @property
    def model_checkpoint_full(self) -> str:
        """Bytes: the signed full model of the newest checkpoint."""
        return self.prefix + "model:checkpoint:full"

    def model(self, version: int) -> str:
        """Bytes: the signed envelope launchers load (an inference snapshot or the full model);
        the newest `model.keep` versions are kept, older ones are deleted with their
        metadata."""
        return f"{self.prefix}model:{version}"

    def model_meta(self, version: int) -> str:
        """Hash: the version's metadata (ModelMeta), JSON values; deleted with the version."""
        return f"{self.prefix}model:{version}:meta"

    @property
    def models(self) -> str:
        """Stream: one entry per published version, its ModelMeta (the notification launchers
        wait on; read by the evaluator, the API, the dashboard); trimmed to its newest
        entries (ModelStore)."""
        return self.prefix + "models"

    # ---- training ----
    @property
    def train_requests(self) -> str:
        """Stream: retrain requests (RetrainRequest) from the evaluator's alerts and the API,
        read by the trainer in the consumer group `trainer`."""
        return self.prefix + "train:requests"

    @property
    def trainer_lease(self) -> str:
        """String with TTL: the lease of the one trainer that may publish (a redis-py lock the
        trainer renews); standby trainers wait for it."""
        return self.prefix + "trainer:lease"

    @property
    def launcher_progress(self) -> str:
        """Hash: `<topic>/<partition>` -> the next input offset no launcher has predicted yet
        (written by launchers after each batch); the trainer learns no record before it was
        predicted."""
        return self.prefix + "launcher:progress"

    @property
    def launcher_demand(self) -> str:
        """Hash: `<topic>/<partition>` -> the position a waiting launcher needs a version to
        have learnt (launcher.max.staleness); the trainer publishes as soon as it is there."""
        return self.prefix + "launcher:demand"

    def external_lock(self, phase: str) -> str:
        """String: the lock that keeps two processes from running a phase (`train`, `test`) of
        the external-script protocol at once (ExternalAlgorithm)."""
        return f"{self.prefix}external:{phase}:lock"

    # ---- evaluation ----
    @property
    def evaluator_checkpoint(self) -> str:
        """Hash: the evaluator's state and the outputTopic offsets it covers (`owner`: the
        instance that may write it; `evaluation`; `state`: the signed state; `pending`: the
        evaluation in progress, JSON). See services/evaluator/checkpoint.py."""
        return self.prefix + "evaluator:checkpoint"

    # ---- federated learning (written by `streamer federate server`) ----
    @property
    def federated_state(self) -> str:
        """Hash of a federated server: `round` (the last completed round), `parameters` (the
        aggregated arrays, numpy .npz bytes), `strategy`, `updated_at`; a restarted server
        resumes from it."""
        return self.prefix + "federated:state"

    @property
    def federated_rounds(self) -> str:
        """Stream of a federated server: one entry per round phase (fit, evaluate) with each
        client's metrics (JSON) and the failures."""
        return self.prefix + "federated:rounds"

    # ---- run-time configuration (written by the api) ----
    @property
    def config_overrides(self) -> str:
        """Hash: props key -> value (props-file text) for the keys changeable at run time
        (written by the API; the services re-read it every few seconds)."""
        return self.prefix + "config:overrides"

    @property
    def config_audit(self) -> str:
        """Stream: one entry per configuration change (`who`, `at`, `key`, `old`, `new`),
        written by the API (trimmed to its newest entries)."""
        return self.prefix + "config:audit"


@dataclass(frozen=True)
class ExternalScriptKeys:
    """The keys of the original STREAMER's protocol with external train/test scripts
    (shared/algorithms/external.py): the scripts know these names, so they keep the
    original's shape, `<name><id>` without the `streamer:` prefix, in database 0."""

    id: str

    def data(self, phase: str) -> str:
        """List: the records of a phase (`datatrain` or `datatest`), one
        `<timestamp>;<v1> <v2> ...` each."""
        return f"{phase}{self.id}"

    def targets(self, phase: str) -> str:
        """List: the records' targets, in the same order."""
        return f"{phase}{self.id}target"

    @property
    def outputs(self) -> str:
        """List: the test script's predictions, one per record."""
        return f"outputs{self.id}"

    @property
    def separator(self) -> str:
        """String (optional): the regex splitting an output element (default a space)."""
        return f"separator{self.id}"

    @property
    def model(self) -> str:
        """Any: where the scripts keep their model (theirs to write)."""
        return f"{self.id}model"


def heartbeat_key(service: str, instance: str) -> str:
    """String (JSON, with TTL): the heartbeat of one service instance (HeartbeatPayload); it
    expires when the instance stops rewriting it, so a missing key means down."""
    return f"{HEARTBEAT_PREFIX}{service}:{instance}"


def heartbeat_pattern(service: str | None = None, host: str | None = None) -> str:
    """A SCAN pattern over heartbeats: all, one service's, or one service's on one host."""
    if service is None:
        return f"{HEARTBEAT_PREFIX}*"
    if host is None:
        return f"{HEARTBEAT_PREFIX}{service}:*"
    return f"{HEARTBEAT_PREFIX}{service}:{host}-*"
