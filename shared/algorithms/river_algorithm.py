"""Any River estimator (or duck-typed learn_one/predict_one object) as an Algorithm.

One wrapper for the four kinds, decided once at construction so the hot path (one predict_one
and one learn_one per record in the launcher) is a single attribute test plus River's own call:
- classifier / regressor: supervised; predict_one is the prediction (None before any learning);
- anomaly detector: unsupervised (y ignored); predict_one is the anomaly score (`score_one`);
- clusterer: unsupervised; predict_one is the cluster index;
- other: any object with learn_one(x, y) and predict_one(x), called as is.
River never mutates `x` (its checks test it), so the wrapper passes it through without a copy.

Pickles are compact: River's probability distributions (a Hoeffding tree keeps one Gaussian per
numeric feature, class and leaf) each carry a `random.Random` whose Mersenne Twister state is
~3.8 kB of a ~4 kB pickle; they only use it in `sample()`, which no tree calls. The wrapper
pickles them without it and reseeds on load (`random.Random(seed)`, or one shared unseeded
generator when they had no seed): on KDD after 100k
records a 19 MB pickle becomes about 1 MB and dumps/loads an order of magnitude faster.
Predictions and learning are unchanged; only `sample()` draws restart from the seed.
"""

from __future__ import annotations

import copyreg
import gc
import io
import pickle
import random
from collections.abc import Iterator, Sequence
from typing import Any

import river
from river import base, compose, proba

from shared.algorithms.base import Algorithm, Features

CLASSIFIER = "classifier"
REGRESSOR = "regressor"
ANOMALY = "anomaly"
CLUSTER = "cluster"
OTHER = "other"


def river_kind(model: Any) -> str:
    """What the model predicts, judged on a pipeline's last step."""
    final = model._last_step if isinstance(model, compose.Pipeline) else model
    if isinstance(final, base.AnomalyDetector):
        return ANOMALY
    if isinstance(final, base.Classifier):
        return CLASSIFIER
    if isinstance(final, base.Regressor):
        return REGRESSOR
    if isinstance(final, base.Clusterer):
        return CLUSTER
    return OTHER


def is_online_model(obj: Any) -> bool:
    """River estimators and anything that learns and predicts one record at a time."""
    learns = callable(getattr(obj, "learn_one", None))
    predicts = callable(getattr(obj, "predict_one", None)) or callable(
        getattr(obj, "score_one", None)
    )
    return learns and predicts


def _subclasses(cls: type) -> Iterator[type]:
    for subclass in cls.__subclasses__():
        yield subclass
        yield from _subclasses(subclass)


def _reduce_distribution(distribution: Any) -> tuple[Any, ...]:
    state = distribution.__dict__.copy()
    had_rng = state.pop("_rng", None) is not None
    return _restore_distribution, (type(distribution), state, had_rng)


def _restore_distribution(cls: type[object], state: dict[str, Any], had_rng: bool) -> Any:
    distribution: Any = cls.__new__(cls)  # a River distribution, its state restored below
    distribution.__dict__.update(state)
    if had_rng:
        seed = state.get("seed")
        # Unseeded ones share one generator: seeding thousands from os.urandom is slow.
        distribution._rng = _SHARED_RNG if seed is None else random.Random(seed)
    return distribution


_SHARED_RNG = random.Random()
_COMPACT = copyreg.dispatch_table.copy()
for _cls in _subclasses(proba.base.Distribution):
    _COMPACT[_cls] = _reduce_distribution


def _compact_dumps(state: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.dispatch_table = _COMPACT
    pickler.dump(state)
    return buffer.getvalue()


def _restore_river(cls: type[RiverAlgorithm], payload: bytes) -> RiverAlgorithm:
    """Unpickle with the cyclic GC paused: a tree is thousands of new objects, and the GC passes
    they trigger walk the whole heap (a 60 ms load took 250 ms in a process holding 100k
    records). Everything loaded is live, so the pause leaves no garbage behind."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        state = pickle.loads(payload)
    finally:
        if enabled:
            gc.enable()
    algorithm = cls.__new__(cls)
    algorithm.__dict__.update(state)
    return algorithm


class RiverAlgorithm(Algorithm):
    """Wraps an online model; pickles with it (River estimators are plain picklable objects)."""

    incremental = True

    def __init__(self, model: Any, name: str | None = None, params: dict[str, Any] | None = None):
        self.model = model
        self.name = name or type(model).__name__
        self.params = dict(params or {})
        self.kind = river_kind(model)
        self.supervised = self.kind in (CLASSIFIER, REGRESSOR, OTHER)
        self.n_learned = 0

    def learn_one(self, x: Features, y: Any) -> None:
        if self.supervised:
            if y is None:
                return
            if self.kind == REGRESSOR and isinstance(y, str):
                y = float(y)
            self.model.learn_one(x, y)
        else:
            self.model.learn_one(x)
        self.n_learned += 1

    def learn_many(self, xs: Sequence[Features], ys: Sequence[Any]) -> None:
        # River's learn_many wants pandas frames; a loop is as fast for tree models.
        for x, y in zip(xs, ys, strict=True):
            self.learn_one(x, y)

    def predict_one(self, x: Features) -> Any:
        if self.kind == ANOMALY:
            return self.model.score_one(x)
        if self.n_learned == 0 and self.supervised:
            return None
        return self.model.predict_one(x)

    def predict_proba_one(self, x: Features) -> dict[Any, float] | None:
        """River's predict_proba_one for a classifier (or a duck-typed model that has one); None
        for the other kinds, before any learning (as predict_one), and for a River classifier
        that raises NotImplementedError (River's way of saying it has no probabilities)."""
        if self.kind not in (CLASSIFIER, OTHER) or (self.n_learned == 0 and self.supervised):
            return None
        predict_proba = getattr(self.model, "predict_proba_one", None)
        if not callable(predict_proba):
            return None
        try:
            proba: dict[Any, float] | None = predict_proba(x)
            return proba
        except NotImplementedError:
            return None

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return _restore_river, (type(self), _compact_dumps(self.__dict__))

    def describe(self) -> dict[str, Any]:
        model = self.model
        return {
            **super().describe(),
            "kind": self.kind,
            "estimator": f"{type(model).__module__}.{type(model).__qualname__}",
            "params": {name: repr(value) for name, value in self.params.items()},
            "library": f"river {river.__version__}",
            "records_learned": self.n_learned,
        }
