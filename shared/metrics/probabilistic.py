"""Metrics of class probabilities: ROC AUC, log-loss and calibration (a reliability table).

They score the distribution a classifier published with its prediction (shared/wire/kafka.py
`Probabilities`: the k most probable classes and the predicted one, plus how many other classes
the model gave a probability to) instead of the predicted label: `uses_probabilities` tells
MetricSet to hand them the pair's probabilities. A record without probabilities is skipped.

Completion (docs/metrics.md, "Probabilities"): a class left out of the published top gets an
equal share of the rest of the mass, (1 - the sum of the listed probabilities) / `omitted`, or 0
when nothing was omitted. This depends on the record alone (never on the classes the evaluator
happened to see), so every metric stays an exact add/revert of per-record items, and it is the
exact distribution whenever at most one class was left out (a binary problem with k >= 1).

- `LogLoss` (`log_loss`): mean of -ln p(target), p clipped to [eps, 1 - eps] with eps float64's
  machine epsilon, as scikit-learn's log_loss; exact sums (regression.py's fixed point).
- `ROCAUC` (`roc_auc`): one-vs-rest AUC of each class that occurs as a target, averaged
  (scikit-learn's multi_class="ovr", average="macro"); with two classes, the AUC of the second
  in sorted order (scikit-learn's binary roc_auc_score). Scores are counted in bins of
  1/BINS_PER_LOGIT of log-odds, so its state is bounded whatever the stream's length; scores
  that share a bin count as ties (half a pair), as equal scores do in scikit-learn.
- `Calibration` (`calibration_error`): a reliability table over `n_bins` uniform bins of the
  top-label confidence (the most probable class's probability; outcome: that class is the
  target), or of the probability of `positive` for `BinaryCalibration`
  (`binary_calibration_error`); each bin's mean probability and observed frequency are
  scikit-learn's calibration_curve(strategy="uniform"), and `get()` is the expected
  calibration error, the bins' |frequency - mean probability| weighted by their counts.
"""

from __future__ import annotations

import bisect
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.metrics.base import Metric, as_label, is_missing
from shared.metrics.regression import FIXED_SHIFT, to_fixed

#: scikit-learn's clip of probabilities in log_loss (float64's machine epsilon).
EPSILON = sys.float_info.epsilon
#: ROC AUC's score resolution: bins per unit of log-odds (0.1 % of the odds).
BINS_PER_LOGIT = 1000
#: Scores are clipped to [SCORE_CLIP, 1 - SCORE_CLIP] before binning (about ±27.6 log-odds).
SCORE_CLIP = 1e-12

Counts = dict[Any, int]


@dataclass(frozen=True)
class Distribution:
    """A record's published class probabilities: `listed` (normalised label -> probability,
    most probable first) and how many other classes the model gave a probability to
    (`omitted`), which share the rest of the mass equally."""

    listed: dict[str, float]
    omitted: int = 0

    @property
    def rest_share(self) -> float:
        """The probability of each class left out."""
        if self.omitted <= 0:
            return 0.0
        return max(0.0, 1.0 - sum(self.listed.values())) / self.omitted

    def probability(self, label: str) -> float:
        """The completed probability of `label` (listed, else the rest share)."""
        found = self.listed.get(label)
        return self.rest_share if found is None else found

    def top(self) -> tuple[str, float]:
        """The most probable listed class and its probability (the first on a tie)."""
        best = next(iter(self.listed))
        for label, probability in self.listed.items():
            if probability > self.listed[best]:
                best = label
        return best, self.listed[best]


def as_distribution(value: Any) -> Distribution | None:
    """A Distribution from what outputs carry: a `Probabilities` (or its JSON form `{"top":
    {...}, "omitted": n}`), a plain mapping label -> probability (nothing omitted), or a
    Distribution; None when missing, empty, or when a probability is not a finite number in
    [0, 1] (up to rounding)."""
    if isinstance(value, Distribution):
        return value
    top, omitted = value, 0
    if isinstance(value, Mapping) and isinstance(value.get("top"), Mapping):
        top, omitted = value["top"], value.get("omitted", 0)
    elif value is not None and hasattr(value, "top") and hasattr(value, "omitted"):
        top, omitted = value.top, value.omitted
    if not isinstance(top, Mapping) or not top or isinstance(omitted, bool):
        return None
    listed: dict[str, float] = {}
    for key, probability in top.items():
        label = as_label(key)
        if label is None or isinstance(probability, bool):
            return None
        try:
            number = float(probability)
        except (TypeError, ValueError):
            return None
        if not -1e-9 <= number <= 1 + 1e-9:  # NaN fails too
            return None
        listed[label] = min(1.0, max(0.0, number))
    try:
        count = int(omitted)
    except (TypeError, ValueError):
        return None
    return Distribution(listed, max(0, count))


class ProbabilityMetric(Metric):
    """A metric of (target, class probabilities) pairs (see the module docstring)."""

    uses_probabilities = True

    def _target_and_distribution(self, target: Any, output: Any) -> tuple[str, Distribution] | None:
        if is_missing(target):
            return None
        label, distribution = as_label(target), as_distribution(output)
        if label is None or distribution is None:
            return None
        return label, distribution


class LogLoss(ProbabilityMetric):
    """Mean -ln p(target) (see the module docstring)."""

    name = "log_loss"
    bigger_is_better = False

    def _reset_state(self) -> None:
        self.total = 0  # sum of the terms, in units of 2^-1074 (exact)

    def parse(self, target: Any, output: Any) -> int | None:
        found = self._target_and_distribution(target, output)
        if found is None:
            return None
        label, distribution = found
        probability = min(max(distribution.probability(label), EPSILON), 1 - EPSILON)
        return to_fixed(-math.log(probability))

    def accumulate(self, item: int, sign: int) -> None:
        self.total += item if sign > 0 else -item

    def get(self) -> float | None:
        return self.total / (self.count << FIXED_SHIFT) if self.count > 0 else None


def score_bin(probability: float) -> int:
    """The ROC AUC bin of a score: its log-odds times BINS_PER_LOGIT, rounded (monotonic: a
    higher score never gets a lower bin)."""
    p = min(max(probability, SCORE_CLIP), 1 - SCORE_CLIP)
    return round(BINS_PER_LOGIT * math.log(p / (1 - p)))


# (target, ((listed class, its bin), ...), the bin of the rest share)
AUCItem = tuple[str, tuple[tuple[str, int], ...], int]


class ROCAUC(ProbabilityMetric):
    """One-vs-rest ROC AUC from binned scores (see the module docstring).

    For class c, the records whose target is c are its positives, the others its negatives,
    each scored by its completed probability of c. Per record only the listed classes and
    the target are touched: a class left out scores the rest share, so the negatives of c
    are (records listing c, not of target c) + (every record's rest share) - (the rest
    shares of records listing c or of target c); the last two are kept once for all classes.
    """

    name = "roc_auc"

    def _reset_state(self) -> None:
        self.targets: Counts = {}  # class -> records whose target it is
        self.positives: dict[str, Counts] = {}  # class -> bin -> records of that target
        self.listed_negatives: dict[str, Counts] = {}  # class -> bin -> listed, other target
        self.rest: Counts = {}  # bin of the rest share -> records
        self.excluded: dict[str, Counts] = {}  # class -> rest bins of records listing or of it

    def parse(self, target: Any, output: Any) -> AUCItem | None:
        found = self._target_and_distribution(target, output)
        if found is None:
            return None
        label, distribution = found
        listed = tuple(
            (name, score_bin(probability)) for name, probability in distribution.listed.items()
        )
        return label, listed, score_bin(distribution.rest_share)

    def accumulate(self, item: AUCItem, sign: int) -> None:
        label, listed, rest_bin = item
        _bump(self.targets, label, sign)
        _bump(self.rest, rest_bin, sign)
        target_bin = rest_bin
        for name, bin_ in listed:
            _bump(self.excluded.setdefault(name, {}), rest_bin, sign)
            if name == label:
                target_bin = bin_
            else:
                _bump(self.listed_negatives.setdefault(name, {}), bin_, sign)
        if all(name != label for name, _ in listed):
            _bump(self.excluded.setdefault(label, {}), rest_bin, sign)
        _bump(self.positives.setdefault(label, {}), target_bin, sign)

    def class_auc(self, label: str) -> float | None:
        """The one-vs-rest AUC of `label`; None without a positive or a negative."""
        positives = self.targets.get(label, 0)
        negatives = self.count - positives
        if positives <= 0 or negatives <= 0:
            return None
        negative_bins = dict(self.rest)
        for bin_, count in self.excluded.get(label, {}).items():
            negative_bins[bin_] -= count
        for bin_, count in self.listed_negatives.get(label, {}).items():
            negative_bins[bin_] = negative_bins.get(bin_, 0) + count
        positive_bins = self.positives.get(label, {})
        twice_wins, below = 0, 0  # 2 x (pairs ranked right + half the ties), exact
        for bin_ in sorted(positive_bins.keys() | negative_bins.keys()):
            tied = negative_bins.get(bin_, 0)
            twice_wins += positive_bins.get(bin_, 0) * (2 * below + tied)
            below += tied
        return twice_wins / (2 * positives * negatives)

    def get(self) -> float | None:
        classes = sorted(label for label, count in self.targets.items() if count > 0)
        if len(classes) < 2:
            return None
        if len(classes) == 2:
            return self.class_auc(classes[1])
        return sum(self.class_auc(label) or 0.0 for label in classes) / len(classes)


# (bin, the score in units of 2^-1074, 1 when the outcome is positive)
CalibrationItem = tuple[int, int, int]


class Calibration(ProbabilityMetric):
    """A reliability table and the expected calibration error (see the module docstring)."""

    name = "calibration_error"
    bigger_is_better = False

    def __init__(self, n_bins: int = 10, positive: str | None = None) -> None:
        if n_bins < 1:
            raise ValueError(f"n_bins must be >= 1, got {n_bins}")
        self.n_bins = n_bins
        self.positive = as_label(positive) if positive is not None else None
        # scikit-learn's uniform edges, and its rule: bin i holds edges[i] < p <= edges[i+1]
        self.edges = _linspace(n_bins)
        super().__init__()

    def _reset_state(self) -> None:
        self.counts = [0] * self.n_bins
        self.sums = [0] * self.n_bins
        self.hits = [0] * self.n_bins

    def parse(self, target: Any, output: Any) -> CalibrationItem | None:
        found = self._target_and_distribution(target, output)
        if found is None:
            return None
        label, distribution = found
        if self.positive is None:
            predicted, score = distribution.top()
            outcome = predicted == label
        else:
            score, outcome = distribution.probability(self.positive), label == self.positive
        score = min(max(score, 0.0), 1.0)
        bin_ = bisect.bisect_left(self.edges, score, 1, self.n_bins) - 1
        return bin_, to_fixed(score), int(outcome)

    def accumulate(self, item: CalibrationItem, sign: int) -> None:
        bin_, score, outcome = item
        self.counts[bin_] += sign
        self.sums[bin_] += score if sign > 0 else -score
        self.hits[bin_] += outcome if sign > 0 else -outcome

    def table(self) -> list[dict[str, float | int]]:
        """The non-empty bins, lowest first: `bin`, its `lower` and `upper` edges, `count`,
        mean probability (`confidence`) and observed frequency (`frequency`)."""
        rows: list[dict[str, float | int]] = []
        for bin_, count in enumerate(self.counts):
            if count > 0:
                rows.append(
                    {
                        "bin": bin_,
                        "lower": self.edges[bin_],
                        "upper": self.edges[bin_ + 1],
                        "count": count,
                        "confidence": self.sums[bin_] / (count << FIXED_SHIFT),
                        "frequency": self.hits[bin_] / count,
                    }
                )
        return rows

    def get(self) -> float | None:
        if self.count <= 0:
            return None
        error = sum(
            row["count"] * abs(row["frequency"] - row["confidence"]) for row in self.table()
        )
        return error / self.count


class BinaryCalibration(Calibration):
    """The reliability of the probability of the positive class ("1", as the binary metrics)."""

    name = "binary_calibration_error"

    def __init__(self, n_bins: int = 10, positive: str = "1") -> None:
        super().__init__(n_bins, positive)


def _linspace(n_bins: int) -> list[float]:
    """numpy.linspace(0, 1, n_bins + 1), value for value (scikit-learn's uniform edges)."""
    import numpy

    edges: list[float] = numpy.linspace(0.0, 1.0, n_bins + 1).tolist()
    return edges


def _bump(counts: Counts, key: Any, sign: int) -> None:
    """Add sign to counts[key], dropping zero counts (a window equals a fresh metric)."""
    value = counts.get(key, 0) + sign
    if value:
        counts[key] = value
    else:
        del counts[key]
