"""A scikit-learn style estimator (fit/predict, optionally partial_fit) as an Algorithm.

scikit-learn is optional: it is imported when such an algorithm is built. Records' dict
features become a matrix through a DictVectorizer (numbers as columns, each category string
one-hot as `name=value`), so the column order is fixed by the vectorizer's fit:
- incremental (the estimator has `partial_fit`): the first fit fixes the columns (categories
  first seen later are ignored: DictVectorizer drops unknown features) and a classifier's
  classes (partial_fit needs them all up front): `algorithm.classes=a,b,c` (or a literal
  list) when given, else the labels seen before the first fit, which waits (buffering, at most
  BUFFER_SIZE records) until two labels have been seen, so that learn_one one record at a time
  does not fix a single class. Records whose label is not among the classes are skipped with
  a warning instead of sklearn's error, so a rare label does not stop training; list every
  class in `algorithm.classes` to avoid it. Numbers are passed unscaled.
- batch (no `partial_fit`): `learn_many` refits vectorizer and estimator on the given window
  (the trainer's classical mode). `learn_one` only buffers the record (at most BUFFER_SIZE, the
  oldest dropped) and the estimator is refitted on the buffer at the next prediction: correct
  but slow, which is why the trainer never uses learn_one for non-incremental algorithms.
predict_one returns None before the first fit.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from shared.algorithms.base import Algorithm, Features
from shared.errors import StreamerError

log = logging.getLogger(__name__)

BUFFER_SIZE = 10_000
INSTALL_HINT = "scikit-learn is not installed: pip install scikit-learn"


def require_sklearn() -> Any:
    """The sklearn package, or a StreamerError telling how to install it."""
    try:
        import sklearn
        import sklearn.base
        import sklearn.feature_extraction
    except ImportError as error:
        raise StreamerError(INSTALL_HINT) from error
    return sklearn


def is_batch_model(obj: Any) -> bool:
    return callable(getattr(obj, "fit", None)) and callable(getattr(obj, "predict", None))


def _classes_from(value: Any) -> list[Any] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return list(value)


class SklearnAlgorithm(Algorithm):
    """Wraps an unfitted estimator instance; pickles with it and its vectorizer."""

    def __init__(
        self,
        estimator: Any,
        name: str | None = None,
        classes: Any = None,
        params: dict[str, Any] | None = None,
    ):
        sklearn = require_sklearn()
        self.estimator = estimator
        self.name = name or type(estimator).__name__
        self.params = dict(params or {})
        self.incremental = callable(getattr(estimator, "partial_fit", None))
        self.is_classifier = bool(sklearn.base.is_classifier(estimator))
        self.is_regressor = bool(sklearn.base.is_regressor(estimator))
        self.classes: list[Any] | None = _classes_from(classes)
        self.vectorizer: Any = None
        self.fitted = False
        self.skipped_labels: set[Any] = set()
        self.buffer: deque[tuple[Features, Any]] = deque(maxlen=BUFFER_SIZE)
        self.stale = False

    def learn_one(self, x: Features, y: Any) -> None:
        if y is None:
            return
        if self.incremental:
            self._partial_fit([x], [y])
        else:
            self.buffer.append((x, y))
            self.stale = True

    def learn_many(self, xs: Sequence[Features], ys: Sequence[Any]) -> None:
        pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
        if not pairs:
            return
        kept_xs = [x for x, _ in pairs]
        kept_ys = [y for _, y in pairs]
        if self.incremental:
            self._partial_fit(kept_xs, kept_ys)
        else:
            self._fit(kept_xs, kept_ys)

    def predict_one(self, x: Features) -> Any:
        return self.predict_many([x])[0]

    def predict_many(self, xs: Sequence[Features], ys: Sequence[Any] | None = None) -> list[Any]:
        if self.stale and not self.incremental:
            self._fit([x for x, _ in self.buffer], [y for _, y in self.buffer])
        if not self.fitted or not xs:
            return [None] * len(xs)
        predictions: list[Any] = self.estimator.predict(self.vectorizer.transform(xs)).tolist()
        return predictions

    def _targets(self, ys: Sequence[Any]) -> list[Any]:
        if self.is_regressor:
            return [float(y) for y in ys]
        return list(ys)

    def _fit(self, xs: Sequence[Features], ys: Sequence[Any]) -> None:
        from sklearn.feature_extraction import DictVectorizer

        vectorizer = DictVectorizer(sparse=False)
        matrix = vectorizer.fit_transform(xs)
        try:
            self.estimator.fit(matrix, self._targets(ys))
        except ValueError as error:
            raise StreamerError(f"{self.name}: fit on {len(ys)} records failed: {error}") from error
        self.vectorizer, self.fitted, self.stale = vectorizer, True, False

    def _partial_fit(self, xs: Sequence[Features], ys: Sequence[Any]) -> None:
        from sklearn.feature_extraction import DictVectorizer

        ys = self._targets(ys)
        kwargs: dict[str, Any] = {}
        if not self.fitted:
            # The first fit fixes the columns and the classes: wait for two labels at least.
            self.buffer.extend(zip(xs, ys, strict=True))
            seen = {y for _, y in self.buffer}
            if self.is_classifier and self.classes is None and len(seen) < 2:
                return
            xs, ys = [x for x, _ in self.buffer], [y for _, y in self.buffer]
            self.buffer.clear()
            self.vectorizer = DictVectorizer(sparse=False).fit(xs)
            if self.is_classifier:
                classes = self._fix_classes(ys)
                kwargs["classes"] = classes
                log.info("%s: classes fixed to %s", self.name, ", ".join(map(str, classes)))
        if self.is_classifier:
            xs, ys = self._known_labels(xs, ys)
            if not ys:
                return
        self.estimator.partial_fit(self.vectorizer.transform(xs), ys, **kwargs)
        self.fitted = True

    def _fix_classes(self, ys: Sequence[Any]) -> list[Any]:
        if self.classes is None:
            self.classes = sorted(set(ys), key=str)
        elif all(isinstance(y, str) for y in ys):
            self.classes = [str(label) for label in self.classes]  # `0,1` parses as numbers
        return self.classes

    def _known_labels(
        self, xs: Sequence[Features], ys: Sequence[Any]
    ) -> tuple[Sequence[Features], Sequence[Any]]:
        known = set(self.classes or ())
        if all(y in known for y in ys):
            return xs, ys
        unknown = {y for y in ys if y not in known} - self.skipped_labels
        if unknown:
            log.warning(
                "%s: records labelled %s skipped: not among the classes fixed at the first "
                "training (%s); list them all in algorithm.classes",
                self.name,
                sorted(map(str, unknown)),
                ", ".join(map(str, self.classes or ())),
            )
            self.skipped_labels |= unknown
        kept = [(x, y) for x, y in zip(xs, ys, strict=True) if y in known]
        return [x for x, _ in kept], [y for _, y in kept]

    def describe(self) -> dict[str, Any]:
        import sklearn

        estimator = self.estimator
        return {
            **super().describe(),
            "estimator": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
            "params": {name: repr(value) for name, value in self.params.items()},
            "classes": [str(label) for label in self.classes] if self.classes else None,
            "library": f"scikit-learn {sklearn.__version__}",
        }
