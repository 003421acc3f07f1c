"""Classification metrics under the original STREAMER's names, with the textbook definitions.

Binary: one-vs-rest around a positive class ("1", as the original). Multi-class: accuracy is
the fraction correct; precision, recall and F1 are macro averages over the classes that occur
(as a target or an output) in what the metric has seen, as scikit-learn and River compute them.
Labels are compared as texts after `as_label` (so 1, 1.0 and "1" are one class).
"""

from __future__ import annotations

import logging
from typing import Any

from shared.metrics.base import Metric, as_label

log = logging.getLogger(__name__)

LabelPair = tuple[str, str]


def _labels(target: Any, output: Any) -> LabelPair | None:
    actual, predicted = as_label(target), as_label(output)
    if actual is None or predicted is None:
        return None
    return actual, predicted


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


class BinaryClassificationMetric(Metric):
    """Counts TP/FP/FN/TN for `positive` vs every other label, plus the exact matches."""

    def __init__(self, positive: str = "1") -> None:
        label = as_label(positive)
        if label is None:
            raise ValueError("the positive class cannot be empty")
        self.positive = label
        super().__init__()

    def _reset_state(self) -> None:
        self.tp = self.fp = self.fn = self.tn = self.correct = 0

    def parse(self, target: Any, output: Any) -> LabelPair | None:
        return _labels(target, output)

    def accumulate(self, item: LabelPair, sign: int) -> None:
        actual, predicted = item
        is_actual, is_predicted = actual == self.positive, predicted == self.positive
        if is_actual and is_predicted:
            self.tp += sign
        elif is_predicted:
            self.fp += sign
        elif is_actual:
            self.fn += sign
        else:
            self.tn += sign
        if actual == predicted:
            self.correct += sign


class BinaryAccuracy(BinaryClassificationMetric):
    """Fraction of exact matches (= (TP+TN)/n when the labels are only "0" and "1")."""

    name = "accuracy"

    def get(self) -> float | None:
        return _ratio(self.correct, self.count)


class BinaryPrecision(BinaryClassificationMetric):
    """TP / (TP + FP); None when nothing was predicted positive."""

    name = "precision"

    def get(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fp)


class BinaryRecall(BinaryClassificationMetric):
    """TP / (TP + FN) (sensitivity); None when no target is positive."""

    name = "recall"

    def get(self) -> float | None:
        return _ratio(self.tp, self.tp + self.fn)


class BinaryF1(BinaryClassificationMetric):
    """2TP / (2TP + FP + FN) (= 2PR/(P+R)); None when the positive class never occurs."""

    name = "f1"

    def get(self) -> float | None:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)


class MultiClassClassificationMetric(Metric):
    """Per-class counts of targets, outputs and hits; classes with no count are dropped.

    `classes_number` (classes.number) does not change any value: macro averages run over the
    classes that occur. It only raises a warning, once, when more distinct labels show up.
    """

    def __init__(self, classes_number: int | None = None) -> None:
        self.classes_number = classes_number
        self._warned: set[str] = set()  # shared by clones: warn once per metric spec
        super().__init__()

    def _reset_state(self) -> None:
        self.n_true: dict[str, int] = {}
        self.n_pred: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        self.correct = 0

    def parse(self, target: Any, output: Any) -> LabelPair | None:
        return _labels(target, output)

    def accumulate(self, item: LabelPair, sign: int) -> None:
        actual, predicted = item
        new_class = _bump(self.n_true, actual, sign) | _bump(self.n_pred, predicted, sign)
        if actual == predicted:
            _bump(self.hits, actual, sign)
            self.correct += sign
        if new_class and self.classes_number is not None and not self._warned:
            classes = self.classes()
            if len(classes) > self.classes_number:
                self._warned.add("classes")
                log.warning(
                    "%s: more distinct labels than classes.number=%d: %s",
                    self.name,
                    self.classes_number,
                    ", ".join(sorted(classes)[:30]),
                )

    def classes(self) -> set[str]:
        """Every label currently seen as a target or as an output."""
        return self.n_true.keys() | self.n_pred.keys()

    def _macro(self, per_class: dict[str, int]) -> float | None:
        """Mean over the classes of hits/per_class[c]; a class absent from per_class counts 0."""
        classes = self.classes()
        if not classes:
            return None
        # sorted: the same order whatever the history, so a window equals a fresh metric exactly
        total = sum(
            self.hits.get(c, 0) / per_class[c] for c in sorted(classes) if per_class.get(c, 0)
        )
        return total / len(classes)


class MultiClassAccuracy(MultiClassClassificationMetric):
    """Fraction correct (the original's macro one-vs-rest accuracy counted TNs; see docs)."""

    name = "accuracy"

    def get(self) -> float | None:
        return _ratio(self.correct, self.count)


class MacroPrecision(MultiClassClassificationMetric):
    """Mean per-class precision; a class never predicted counts 0 (scikit-learn, River)."""

    name = "macro_precision"

    def get(self) -> float | None:
        return self._macro(self.n_pred)


class MacroRecall(MultiClassClassificationMetric):
    """Mean per-class recall; a class predicted but never a target counts 0."""

    name = "macro_recall"

    def get(self) -> float | None:
        return self._macro(self.n_true)


class MacroF1(MultiClassClassificationMetric):
    """Mean per-class F1 = 2·hits / (targets + outputs of that class)."""

    name = "macro_f1"

    def get(self) -> float | None:
        classes = self.classes()
        if not classes:
            return None
        total = sum(
            2 * self.hits.get(c, 0) / (self.n_true.get(c, 0) + self.n_pred.get(c, 0))
            for c in sorted(classes)
        )
        return total / len(classes)


def _bump(counts: dict[str, int], key: str, sign: int) -> bool:
    """Add sign to counts[key], dropping zero counts; True when the key is new."""
    value = counts.get(key, 0) + sign
    if value:
        counts[key] = value
    else:
        del counts[key]
    return value == 1 and sign > 0
