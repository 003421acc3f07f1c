"""The evaluator's checkpoint: a SIGKILLed evaluator resumes with the same metrics, detector and
counters, and ends with exactly the values of a run that was never interrupted.

What it holds (`EvaluatorState`): the scorer (cumulative and window metric objects with the
window's pairs, the detector, the evaluation counter, the input high-water marks that recognise
replayed outputs), the alert and cooldown state, the evaluator's counters, its position in the
`models` stream, the random state of the predictions sample, and the outputTopic offsets all
this covers. It is pickled and signed like the models (shared/modelstore.py, key
STREAMER_MODEL_SECRET): anyone who can write Redis could otherwise make the evaluator unpickle
code. Without the secret the evaluator does not checkpoint (it says so) and a restart scores
outputTopic again from its beginning, which is slow but exact.

Offsets. The checkpoint, not the consumer group, says where reading resumes: at start the
evaluator assigns itself every partition of outputTopic and seeks to the checkpoint's offsets
(to the beginning of a partition it has none for). State and offsets are one Redis value,
written at once, so they cannot disagree; the group's offsets are committed after it only so
that tools see the evaluator's lag.

Write-ahead. Before an evaluation is scored, its number, time and last offsets (`Pending`) are
written next to the checkpoint. An evaluator killed before the checkpoint that follows replays
exactly that evaluation at restart: the same messages (read up to those offsets; what is read
beyond waits for the next evaluation), the same number and time. It therefore rewrites the same
InfluxDB points and Elasticsearch documents instead of adding slightly different ones, and the
requests it may send the trainer (a retrain, a promotion) are written by the same Redis script
as the checkpoint: once.

Fencing. A starting evaluator makes itself the checkpoint's `owner`; every write checks the
owner in the same script, so an evaluator that a newer one replaced stops instead of
overwriting its successor's state.

Size. Metric objects are small (counts, confusion matrices); the window view keeps up to
`evaluation.window` parsed pairs; the dedup is one offset per input partition. The state is
pickled at every evaluation, in the scoring thread; `evaluation.window` is what makes it grow.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from services.evaluator.scoring import VIEWS_FORMAT, Progress, Views
from shared.config import UseCase
from shared.errors import StreamerError
from shared.modelstore import ModelIntegrityError, seal, unseal
from shared.wire.keys import UseCaseKeys
from shared.wire.store import RetrainRequest

log = logging.getLogger("evaluator")

OWNER, EVALUATION, STATE, PENDING = "owner", "evaluation", "state", "pending"

# Fenced write of the checkpoint hash (and of the trainer requests, in the same step).
# KEYS: the checkpoint hash, the trainer requests stream
# ARGV: owner, number of hash fields to set (n), number of hash fields to delete (d),
#       then the n field/value pairs, the d fields, and per request: its number of fields (k)
#       and its k field/value pairs
_WRITE = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then
  return 0
end
local n, d = tonumber(ARGV[2]), tonumber(ARGV[3])
local first = 4
if n > 0 then
  local fields = {}
  for i = first, first + 2 * n - 1 do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
first = first + 2 * n
if d > 0 then
  local fields = {}
  for i = first, first + d - 1 do fields[#fields + 1] = ARGV[i] end
  redis.call('HDEL', KEYS[1], unpack(fields))
end
first = first + d
while #ARGV > first do
  local k = tonumber(ARGV[first])
  local request = {}
  for i = first + 1, first + 2 * k do request[#request + 1] = ARGV[i] end
  redis.call('XADD', KEYS[2], '*', unpack(request))
  first = first + 2 * k + 1
end
return 1
"""


class EvaluatorReplacedError(StreamerError):
    """Another evaluator of the use case started and owns the checkpoint now."""


@dataclass
class EvaluatorCounters:
    evaluations: int = 0
    outputs: int = 0
    duplicates: int = 0
    malformed: int = 0
    retrain_requests: int = 0
    alerts: int = 0
    # labelTopic (delayed labels): label messages read, outputs scored when their label came,
    # outputs whose label did not come within label.timeout (dropped), labels that found no
    # output within it (dropped), outputs waiting for their label now, label messages that
    # are no `Label` (skipped)
    labels: int = 0
    labels_joined: int = 0
    labels_missing: int = 0
    labels_orphaned: int = 0
    labels_waiting: int = 0
    labels_malformed: int = 0


@dataclass
class EvaluatorState:
    """Everything an evaluator carries from one evaluation to the next (see the module
    docstring); `settings` says which metrics and detector `views` belong to."""

    settings: str
    views: Views
    progress: Progress = field(default_factory=Progress)
    offsets: dict[int, int] = field(default_factory=dict)  # partition -> next offset to read
    counters: EvaluatorCounters = field(default_factory=EvaluatorCounters)
    alert_active: bool = False
    last_request_ms: int | None = None
    previous_batch_ms: int | None = None
    models_cursor: str = "0"
    sample: random.Random = field(default_factory=random.Random)
    detection_offsets: dict[str, str] = field(default_factory=dict)  # detector id -> its start


@dataclass(frozen=True)
class Pending:
    """The evaluation being scored: replayed exactly if the evaluator dies before its
    checkpoint."""

    evaluation: int
    time_ms: int
    ends: dict[int, int]  # partition -> the last offset the evaluation reads

    def encode(self) -> str:
        ends = {str(partition): offset for partition, offset in self.ends.items()}
        return json.dumps({"evaluation": self.evaluation, "time_ms": self.time_ms, "ends": ends})

    @classmethod
    def decode(cls, raw: bytes | str) -> Pending:
        data = json.loads(raw)
        ends = {int(partition): int(offset) for partition, offset in data["ends"].items()}
        return cls(int(data["evaluation"]), int(data["time_ms"]), ends)


def settings_of(usecase: UseCase) -> str:
    """What the metric views and the detector depend on: a checkpoint of other settings (or a
    run-time change of them) starts the views and the detector afresh."""
    algs, monitoring = usecase.algs, usecase.monitoring
    user_metrics = usecase.folder / "metrics.py"
    settings = {
        "views_format": VIEWS_FORMAT,
        "metrics": list(algs.evaluation_metrics),
        "classes": algs.classes_number,
        "window": algs.evaluation_window,
        "monitoring": monitoring.model_dump(mode="json") if monitoring else None,
        "metrics.py": (
            hashlib.sha256(user_metrics.read_bytes()).hexdigest()
            if user_metrics.is_file()
            else None
        ),
    }
    return json.dumps(settings, sort_keys=True, default=str)


def _domain(usecase: str) -> str:
    # what the HMAC covers besides the bytes: a model envelope is no checkpoint
    return f"{usecase}:evaluator-checkpoint"


def seal_state(secret: bytes, usecase: str, state: EvaluatorState) -> bytes:
    """The state pickled and signed for the evaluation it follows."""
    return seal(secret, _domain(usecase), state.progress.index, state)  # type: ignore[arg-type]


def unseal_state(secret: bytes, usecase: str, evaluation: int, sealed: bytes) -> EvaluatorState:
    """The state back, once its signature is checked (ModelIntegrityError otherwise)."""
    state = unseal(secret, _domain(usecase), evaluation, sealed)
    if not isinstance(state, EvaluatorState):
        raise ModelIntegrityError(f"{usecase}: the checkpoint holds a {type(state).__name__}")
    return state


class CheckpointStore:
    """The checkpoint of one use case's evaluator in Redis (UseCaseKeys.evaluator_checkpoint)."""

    def __init__(self, redis: Redis, usecase: str, secret: bytes | None):
        keys = UseCaseKeys(usecase)
        self.redis = redis
        self.usecase = usecase
        self.secret = secret
        self.key = keys.evaluator_checkpoint
        self.requests_key = keys.train_requests
        self.owner = f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._write = redis.register_script(_WRITE)

    @property
    def enabled(self) -> bool:
        return self.secret is not None

    def seal(self, state: EvaluatorState) -> bytes:
        """Pickle and sign (CPU: call it in the scoring thread)."""
        assert self.secret is not None
        return seal_state(self.secret, self.usecase, state)

    def unseal(self, evaluation: int, sealed: bytes) -> EvaluatorState:
        assert self.secret is not None
        return unseal_state(self.secret, self.usecase, evaluation, sealed)

    async def claim(self) -> tuple[int, bytes, Pending | None] | None:
        """Become the owner; the previous owner's (evaluation, sealed state, pending
        evaluation), if it left a state."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hmget(self.key, [EVALUATION, STATE, PENDING])
            pipe.hset(self.key, OWNER, self.owner)
            (evaluation, blob, pending), _ = await pipe.execute()
        if not self.enabled or blob is None or evaluation is None:
            return None
        return int(evaluation), blob, Pending.decode(pending) if pending else None

    async def announce(self, pending: Pending) -> None:
        """Write-ahead of the evaluation about to be scored."""
        if self.enabled:
            await self._fenced({PENDING: pending.encode()})

    async def save(
        self, evaluation: int, sealed: bytes | None, requests: Sequence[RetrainRequest] = ()
    ) -> None:
        """The state after `evaluation` and the trainer requests it decided (a retrain, a
        promotion), in one step. `sealed` None: no state to keep (no secret, or a state that
        does not pickle), and an older one must not be resumed from either."""
        if sealed is not None:
            await self._fenced({EVALUATION: evaluation, STATE: sealed}, [PENDING], requests)
        else:
            await self._fenced({}, [EVALUATION, STATE, PENDING], requests)

    async def _fenced(
        self,
        fields: dict[str, Any],
        delete: list[str] | None = None,
        requests: Sequence[RetrainRequest] = (),
    ) -> None:
        delete = delete or []
        args: list[Any] = [self.owner, len(fields), len(delete)]
        for name, value in fields.items():
            args += [name, value]
        args += delete
        for request in requests:
            encoded = request.encode()
            args.append(len(encoded))
            for name, value in encoded.items():
                args += [name, value]
        if not await self._write(keys=[self.key, self.requests_key], args=args):
            raise EvaluatorReplacedError(
                f"{self.usecase}: another evaluator started and owns the checkpoint "
                f"({self.key}), or the key was deleted; this one stops"
            )
