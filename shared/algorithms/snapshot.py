"""Inference snapshots: predict-only, compact copies of River tree models.

Why: the trainer publishes a model version about every second and launchers only predict with
it, but a whole River tree carries everything learning needs (splitter statistics for every
feature of every leaf, drift detectors, counters) and takes tens of ms to unpickle. A snapshot
keeps the split tests and what each leaf reads to predict, as flat arrays and tuples (no Python
object per node), and predicts exactly as the live model did when it was taken: same labels,
same probability dicts (same keys, same order, same floats: River's arithmetic is replayed in
River's order). It shares nothing mutable with the live model, which keeps learning.

What River does, and a snapshot replays (River 0.26, river/tree):
- a branch sends x down by `x[feature] <= threshold` (numeric binary), `== value` (nominal
  binary), a category -> child map (nominal multiway) or `floor(x[feature] / radius)` -> child
  (numeric multiway). A KeyError (feature missing from x, unseen category or slot) sends x down
  the branch's most common path, frozen at snapshot time; other errors (a string compared with
  a threshold) propagate as in River;
- a majority-class leaf, and any leaf whose River prediction does not read x, predicts a
  constant: River's own distribution, computed once by River at snapshot time;
- a naive Bayes leaf (mode `nb` over `nb_threshold`, or `nba` where naive Bayes was right at
  least as often as the majority class: that choice is fixed at snapshot time) keeps its
  log-priors and, per feature and class, the Gaussian's mean, -2 variance and half log variance
  (numeric features) or the log of each category's share (nominal features): exactly what
  `do_naive_bayes_prediction` reads, nothing else;
- probabilities are River's dict: sorted classes at 0.0 updated with the leaf's distribution
  (HoeffdingTreeClassifier, ExtremelyFastDecisionTreeClassifier); the error-weighted sum of the
  leaves reached, alternate trees included, normalised (HoeffdingAdaptiveTreeClassifier, whose
  classes are in the order of its set when the snapshot is taken); the metric-weighted vote of
  the trees (ARFClassifier). The label is the first most probable class of that dict;
- regression leaves predict their target mean, or with a copy of their linear model.

Covered: HoeffdingTreeClassifier, ExtremelyFastDecisionTreeClassifier,
HoeffdingAdaptiveTreeClassifier, HoeffdingTreeRegressor, HoeffdingAdaptiveTreeRegressor,
ARFClassifier, and a compose.Pipeline ending in one of them (its other steps are deep-copied
and applied as River applies them at prediction; River's learn_during_predict mode is not
replayed). Anything else, or a state River itself cannot predict from (an alternate tree that
grew branches, a leaf with no statistics in an adaptive tree, a splitter naive Bayes cannot
read here), gives None: the caller then ships the full model.
"""

from __future__ import annotations

import collections
import copy
import math
from array import array
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from river import base, compose, forest, tree
from river.proba import Gaussian
from river.tree.base import Branch, Leaf
from river.tree.nodes.branch import (
    DTBranch,
    NominalBinaryBranch,
    NominalMultiwayBranch,
    NumericBinaryBranch,
    NumericMultiwayBranch,
)
from river.tree.nodes.hatc_nodes import AdaBranchClassifier, AdaLeafClassifier
from river.tree.nodes.hatr_nodes import AdaBranchRegressor
from river.tree.nodes.htc_nodes import LeafMajorityClass, LeafNaiveBayes, LeafNaiveBayesAdaptive
from river.tree.nodes.htr_nodes import LeafAdaptive, LeafMean, LeafModel
from river.tree.splitter import ExhaustiveSplitter, GaussianSplitter
from river.tree.splitter.nominal_splitter_classif import NominalSplitterClassif

from shared.algorithms.base import Algorithm, Features
from shared.algorithms.contenders import Contenders
from shared.algorithms.river_algorithm import CLASSIFIER, REGRESSOR, RiverAlgorithm

# River's constant in Gaussian.log_pdf, computed the same way.
_HALF_LOG_TAU = 0.5 * math.log(math.tau)

_LEAF, _NUMERIC, _NOMINAL, _NUMERIC_SLOTS, _NOMINAL_MAP = range(5)
_BRANCH_KINDS = {
    NumericBinaryBranch.branch_no: _NUMERIC,
    NominalBinaryBranch.branch_no: _NOMINAL,
    NumericMultiwayBranch.branch_no: _NUMERIC_SLOTS,
    NominalMultiwayBranch.branch_no: _NOMINAL_MAP,
}


class _NoCompactForm(Exception):
    """The model (or its current state) is outside what a snapshot replays exactly."""


# ---------------------------------------------------------------------------------------------
# Tree structure


class _Tree:
    """A tree's split tests as flat arrays indexed by node id (depth-first order, root 0).

    Node `i` is a leaf when kind[i] is _LEAF: first[i] is then its leaf id. A binary branch
    goes to first[i] or second[i]; a multiway branch looks its key up in maps[first[i]]. On a
    KeyError every branch goes to fallback[i], River's most common path. alternate[i] is the
    leaf id of a branch's alternate tree (adaptive trees), -1 when it has none.
    """

    def __init__(
        self,
        kind: bytes,
        feature: tuple[Any, ...],
        test: tuple[Any, ...],
        first: array[int],
        second: array[int],
        fallback: array[int],
        maps: tuple[dict[Any, int], ...],
        alternate: array[int],
    ):
        self.kind = kind
        self.feature = feature
        self.test = test
        self.first = first
        self.second = second
        self.fallback = fallback
        self.maps = maps
        self.alternate = alternate

    def __reduce__(self) -> tuple[Any, ...]:
        return _Tree, (
            self.kind,
            self.feature,
            self.test,
            self.first,
            self.second,
            self.fallback,
            self.maps,
            self.alternate,
        )

    @property
    def n_nodes(self) -> int:
        return len(self.kind)

    @property
    def n_branches(self) -> int:
        return len(self.kind) - self.kind.count(_LEAF)

    def child(self, node: int, x: Features) -> int:
        """The child of branch `node` that x goes to (River's `branch_no`); KeyError when x
        lacks the feature or has a category (or slot) the branch never saw."""
        value = x[self.feature[node]]
        k = self.kind[node]
        if k == _NUMERIC:
            return self.first[node] if value <= self.test[node] else self.second[node]
        if k == _NOMINAL:
            return self.first[node] if value == self.test[node] else self.second[node]
        if k == _NOMINAL_MAP:
            return self.maps[self.first[node]][value]
        return self.maps[self.first[node]][math.floor(value / self.test[node])]

    def leaf(self, x: Features) -> int:
        """The leaf id x reaches (River's `traverse(x, until_leaf=True)`)."""
        kind, child, fallback = self.kind, self.child, self.fallback
        node = 0
        while kind[node] != _LEAF:
            try:
                node = child(node, x)
            except KeyError:
                node = fallback[node]
        return self.first[node]

    def leaves(self, x: Features) -> list[int]:
        """The leaf ids an adaptive tree's `traverse` returns: the alternate tree of every
        branch on x's path, then x's leaf. River's `walk` yields a most-common-path child twice
        (once from the parent's fallback, once from the child's own walk), so that child's
        alternate tree counts twice: replayed."""
        kind, child, fallback, alternate = self.kind, self.child, self.fallback, self.alternate
        found = []
        node = 0
        while kind[node] != _LEAF:
            if alternate[node] >= 0:
                found.append(alternate[node])
            try:
                node = child(node, x)
            except KeyError:
                node = fallback[node]
                if kind[node] != _LEAF and alternate[node] >= 0:
                    found.append(alternate[node])
        found.append(self.first[node])
        return found


def _flatten(
    root: Branch | Leaf,
    encode_leaf: Callable[[Leaf], int],
    alternate_type: type[Any] | None = None,
) -> _Tree:
    """Number River's nodes depth-first and copy their tests; `encode_leaf` stores a leaf's
    prediction data and returns its leaf id. With `alternate_type`, branches of that type also
    get their alternate tree encoded (it must be a single leaf: River cannot predict through an
    alternate tree that has branches, its traverse returns a list in place of a leaf)."""
    order: list[Any] = []
    ids: dict[int, int] = {}
    stack = [root]
    while stack:
        node = stack.pop()
        if node is None:
            raise _NoCompactForm("a branch has an empty child")
        ids[id(node)] = len(order)
        order.append(node)
        if isinstance(node, Branch):
            stack.extend(reversed(node.children))

    kind = bytearray()
    feature: list[Any] = []
    test: list[Any] = []
    first, second, fallback, alternate = array("l"), array("l"), array("l"), array("l")
    maps: list[dict[Any, int]] = []
    for node in order:
        alt = -1
        if isinstance(node, Branch):
            node_kind = _branch_kind(node)
            if type(node).traverse is not (alternate_type or Branch).traverse:
                raise _NoCompactForm(f"{type(node).__name__} traverses its own way")
            feature.append(node.feature)
            children = [ids[id(child)] for child in node.children]
            if node_kind in (_NUMERIC, _NOMINAL):
                test.append(node.threshold if node_kind == _NUMERIC else node.value)
                first.append(children[0])
                second.append(children[1])
            else:
                test.append(node.radius if node_kind == _NUMERIC_SLOTS else None)
                first.append(len(maps))
                second.append(-1)
                maps.append({key: children[index] for key, index in node._mapping.items()})
            fallback.append(ids[id(node.most_common_path()[1])])
            if alternate_type is not None and isinstance(node, alternate_type):
                alt_tree = node._alternate_tree
                if alt_tree:
                    if not isinstance(alt_tree, Leaf):
                        raise _NoCompactForm("an alternate tree has branches")
                    alt = encode_leaf(alt_tree)
        else:
            if type(node).walk is not Leaf.walk:
                raise _NoCompactForm(f"{type(node).__name__} walks its own way")
            node_kind = _LEAF
            feature.append(None)
            test.append(None)
            first.append(encode_leaf(node))
            second.append(-1)
            fallback.append(-1)
        kind.append(node_kind)
        alternate.append(alt)
    return _Tree(
        bytes(kind), tuple(feature), tuple(test), first, second, fallback, tuple(maps), alternate
    )


def _branch_kind(node: Branch) -> int:
    cls = type(node)
    node_kind = _BRANCH_KINDS.get(cls.branch_no)
    if node_kind is None or cls.next is not DTBranch.next or cls.walk is not Branch.walk:
        raise _NoCompactForm(f"{cls.__name__} is not one of River's four decision branches")
    return node_kind


# ---------------------------------------------------------------------------------------------
# Classification leaves


class _ClassLeavesBuilder:
    """Collects the leaves of a _ClassLeaves (see there) in growable lists."""

    def __init__(self) -> None:
        self.lo, self.hi, self.flo, self.fhi = array("l"), array("l"), array("l"), array("l")
        self.bayes = bytearray()
        self.classes: list[Any] = []
        self.values: list[float] = []
        self.names: list[Any] = []
        self.gauss = bytearray()
        self.elo, self.ehi = array("l"), array("l")
        self.g_slot, self.g_mu = array("l"), array("d")
        self.g_minus_two_var, self.g_half_log_var = array("d"), array("d")
        self.c_slot = array("l")
        self.c_table: list[dict[Any, float]] = []

    def add_constant(self, distribution: dict[Any, float]) -> int:
        self.lo.append(len(self.classes))
        self.classes.extend(distribution)
        self.values.extend(distribution.values())
        self.hi.append(len(self.classes))
        self.flo.append(len(self.names))
        self.fhi.append(len(self.names))
        self.bayes.append(0)
        return len(self.lo) - 1

    def add_naive_bayes(self, stats: dict[Any, float], splitters: dict[Any, Any]) -> int:
        """River's do_naive_bayes_prediction(x, stats, splitters) as data (stats must be
        non-empty with a non-zero total: River predicts {} otherwise, a constant)."""
        total_weight = sum(stats.values())
        live = [(slot, cls) for slot, (cls, weight) in enumerate(stats.items()) if weight > 0]
        self.lo.append(len(self.classes))
        self.classes.extend(stats)
        self.values.extend(
            math.log(weight / total_weight) if weight > 0 else 0.0 for weight in stats.values()
        )
        self.hi.append(len(self.classes))
        self.flo.append(len(self.names))
        for name, splitter in splitters.items():
            if type(splitter) is ExhaustiveSplitter:
                continue  # its cond_proba is always 0.0, for which River adds 0.0
            if type(splitter) is GaussianSplitter:
                self.names.append(name)
                self.gauss.append(1)
                self.elo.append(len(self.g_slot))
                for slot, cls in live:
                    terms = _gaussian_terms(splitter._att_dist_per_class.get(cls))
                    if terms is not None:
                        self.g_slot.append(slot)
                        self.g_mu.append(terms[0])
                        self.g_minus_two_var.append(terms[1])
                        self.g_half_log_var.append(terms[2])
                self.ehi.append(len(self.g_slot))
            elif type(splitter) is NominalSplitterClassif:
                self.names.append(name)
                self.gauss.append(0)
                self.elo.append(len(self.c_slot))
                for slot, cls in live:
                    table = _category_log_shares(splitter._att_dist_per_class.get(cls))
                    if table:
                        self.c_slot.append(slot)
                        self.c_table.append(table)
                self.ehi.append(len(self.c_slot))
            else:
                raise _NoCompactForm(f"naive Bayes through a {type(splitter).__name__}")
        self.fhi.append(len(self.names))
        self.bayes.append(1)
        return len(self.lo) - 1

    def freeze(self) -> _ClassLeaves:
        """Done adding leaves: the growable lists become tuples (smaller pickles)."""
        return _ClassLeaves(self)


class _ClassLeaves:
    """Every leaf's class distribution, flat, indexed by leaf id.

    Leaf `i` owns entries lo[i]:hi[i] of `classes` and `values`. A constant leaf (bayes[i] == 0)
    stores River's distribution there. A naive Bayes leaf stores its classes in River's order
    with their log-priors (0.0 for a class of weight <= 0, which River keeps out of the
    likelihood), and owns feature entries flo[i]:fhi[i]: feature name `names[e]`; if gauss[e],
    Gaussian terms elo[e]:ehi[e] of (slot, mu, minus_two_var, half_log_var), else category
    tables elo[e]:ehi[e] of (slot, {category: log share}); slot is the class's position in the
    leaf's classes.
    """

    def __init__(self, built: _ClassLeavesBuilder) -> None:
        self.lo, self.hi, self.flo, self.fhi = built.lo, built.hi, built.flo, built.fhi
        self.bayes = bytes(built.bayes)
        self.classes = tuple(built.classes)
        self.values = tuple(built.values)
        self.names = tuple(built.names)
        self.gauss = bytes(built.gauss)
        self.elo, self.ehi = built.elo, built.ehi
        self.g_slot, self.g_mu = built.g_slot, built.g_mu
        self.g_minus_two_var, self.g_half_log_var = built.g_minus_two_var, built.g_half_log_var
        self.c_slot = built.c_slot
        self.c_table = tuple(built.c_table)

    @property
    def n_leaves(self) -> int:
        return len(self.lo)

    @property
    def n_bayes(self) -> int:
        return self.bayes.count(1)

    def naive_bayes(self, leaf: int, x: Features) -> list[float]:
        """The leaf's class probabilities for x, in the order of classes[lo:hi]."""
        votes = list(self.values[self.lo[leaf] : self.hi[leaf]])
        names, gauss, elo, ehi = self.names, self.gauss, self.elo, self.ehi
        for entry in range(self.flo[leaf], self.fhi[leaf]):
            name = names[entry]
            if name not in x:
                continue
            # Any: River's arithmetic runs on whatever x holds (a str raises its TypeError)
            value: Any = x[name]
            if gauss[entry]:
                g_slot, g_mu = self.g_slot, self.g_mu
                minus_two_var, half_log_var = self.g_minus_two_var, self.g_half_log_var
                for term in range(elo[entry], ehi[entry]):
                    # Gaussian.log_pdf, operation for operation
                    log_p = (
                        (value - g_mu[term]) ** 2 / minus_two_var[term]
                        - _HALF_LOG_TAU
                        - half_log_var[term]
                    )
                    if log_p > -math.inf:
                        votes[g_slot[term]] += log_p
            else:
                c_slot, c_table = self.c_slot, self.c_table
                for term in range(elo[entry], ehi[entry]):
                    log_share = c_table[term].get(value)
                    if log_share is not None:
                        votes[c_slot[term]] += log_share
        max_ll = max(votes)
        lse = max_ll + math.log(sum(math.exp(vote - max_ll) for vote in votes))
        return [math.exp(vote - lse) for vote in votes]

    def distribution(self, leaf: int, x: Features) -> tuple[Sequence[Any], Sequence[float]]:
        lo, hi = self.lo[leaf], self.hi[leaf]
        if self.bayes[leaf]:
            return self.classes[lo:hi], self.naive_bayes(leaf, x)
        return self.classes[lo:hi], self.values[lo:hi]


def _gaussian_terms(distribution: Any) -> tuple[float, float, float] | None:
    """What Gaussian.log_pdf reads, precomputed with its own operations; None where it returns
    -inf (too few samples, no variance, no Gaussian for the class): River then adds nothing."""
    if distribution is None:
        return None
    if type(distribution) is not Gaussian:
        raise _NoCompactForm(f"naive Bayes through a {type(distribution).__name__}")
    var = distribution._var
    n = var.mean.n
    if n > var.ddof:
        variance = var._S / (n - var.ddof)
        if variance > 0.0:
            return var.mean._mean, -2.0 * variance, 0.5 * math.log(variance)
    return None


def _category_log_shares(class_dist: dict[Any, float] | None) -> dict[Any, float]:
    """NominalSplitterClassif.cond_proba's log for each category it gives a positive share;
    River adds 0.0 for the others (share 0, unseen category, class never seen)."""
    if not class_dist:
        return {}
    total = sum(class_dist.values())
    if total == 0:
        return {}
    shares = {category: weight / total for category, weight in class_dist.items()}
    return {category: math.log(share) for category, share in shares.items() if share > 0}


def _uses_naive_bayes(leaf: Leaf, model: Any) -> bool:
    """Whether a classification leaf's River prediction reads x now (River's own tests)."""
    predict = type(leaf).prediction
    if predict is LeafMajorityClass.prediction:
        return False
    if predict is LeafNaiveBayes.prediction:
        return bool(leaf.is_active() and leaf.total_weight >= model.nb_threshold)
    if predict is LeafNaiveBayesAdaptive.prediction:
        return bool(leaf.is_active() and leaf._nb_correct_weight >= leaf._mc_correct_weight)
    if predict is AdaLeafClassifier.prediction:
        option = model.leaf_prediction
        if not leaf.is_active() or option == model._MAJORITY_CLASS:
            return False
        if option == model._NAIVE_BAYES:
            return bool(leaf.total_weight >= model.nb_threshold)
        return bool(leaf._nb_correct_weight >= leaf._mc_correct_weight)
    raise _NoCompactForm(f"{type(leaf).__name__} predicts its own way")


def _naive_bayes_is_constant(leaf: Leaf) -> bool:
    # do_naive_bayes_prediction returns {} whatever x is
    return not leaf.stats or sum(leaf.stats.values()) == 0


# ---------------------------------------------------------------------------------------------
# Classifiers


class _TreeClassifier:
    """HoeffdingTreeClassifier.predict_proba_one: sorted classes at 0.0, updated with the
    leaf's distribution. `labels` holds each constant leaf's predicted label."""

    def __init__(self, model: Any):
        self.classes = tuple(sorted(model.classes))
        leaves = _ClassLeavesBuilder()
        self.tree: _Tree | None = None
        if model._root is not None:
            self.tree = _flatten(model._root, lambda leaf: self._encode(leaf, model, leaves))
        self.leaves = leaves.freeze()
        self.labels = tuple(
            None if self.leaves.bayes[leaf] else self._constant_label(leaf)
            for leaf in range(self.leaves.n_leaves)
        )

    def _encode(self, leaf: Leaf, model: Any, leaves: _ClassLeavesBuilder) -> int:
        if _uses_naive_bayes(leaf, model) and not _naive_bayes_is_constant(leaf):
            return leaves.add_naive_bayes(leaf.stats, leaf.splitters)
        return leaves.add_constant(leaf.prediction({}, tree=model))

    def _constant_label(self, leaf: int) -> Any:
        return _first_most_probable(self._proba(*self.leaves.distribution(leaf, {})))

    def _proba(self, classes: Sequence[Any], values: Sequence[float]) -> dict[Any, float]:
        proba = dict.fromkeys(self.classes, 0.0)
        proba.update(zip(classes, values, strict=True))
        return proba

    def predict_proba_one(self, x: Features) -> dict[Any, float]:
        if self.tree is None:
            return dict.fromkeys(self.classes, 0.0)
        return self._proba(*self.leaves.distribution(self.tree.leaf(x), x))

    def predict_one(self, x: Features) -> Any:
        if self.tree is None:
            return _first_most_probable(dict.fromkeys(self.classes, 0.0))
        leaf = self.tree.leaf(x)
        if self.leaves.bayes[leaf]:
            return _first_most_probable(self._proba(*self.leaves.distribution(leaf, x)))
        return self.labels[leaf]

    def counts(self) -> dict[str, int]:
        return _counts(self.tree, self.leaves)


class _AdaptiveTreeClassifier:
    """HoeffdingAdaptiveTreeClassifier.predict_proba_one: the classes (in the model's set order)
    at 0.0, plus each reached leaf's distribution (alternate trees' leaves too), normalised.
    A naive Bayes leaf's distribution is divided by its sum times its error rate squared."""

    def __init__(self, model: Any):
        self.classes = tuple(model.classes)
        leaves = _ClassLeavesBuilder()
        self.error = array("d")
        self.tree: _Tree | None = None
        if model._root is not None:
            self.tree = _flatten(
                model._root, lambda leaf: self._encode(leaf, model, leaves), AdaBranchClassifier
            )
        self.leaves = leaves.freeze()

    def _encode(self, leaf: Leaf, model: Any, leaves: _ClassLeavesBuilder) -> int:
        if not leaf.stats:
            raise _NoCompactForm("a leaf with no statistics (River's prediction fails there)")
        self.error.append(leaf._mean_error.get())
        if _uses_naive_bayes(leaf, model) and not _naive_bayes_is_constant(leaf):
            return leaves.add_naive_bayes(leaf.stats, leaf.splitters)
        return leaves.add_constant(leaf.prediction({}, tree=model))

    def predict_proba_one(self, x: Features) -> dict[Any, float]:
        proba = dict.fromkeys(self.classes, 0.0)
        if self.tree is None:
            return proba
        leaves = self.leaves
        for leaf in self.tree.leaves(x):
            classes, values = leaves.distribution(leaf, x)
            if leaves.bayes[leaf]:
                values = _scale_by_error(values, self.error[leaf])
            for cls, value in zip(classes, values, strict=True):
                # add_dict_values(proba, dist, inplace=True)
                try:
                    proba[cls] += value
                except KeyError:
                    proba[cls] = value
        _normalise(proba)
        return proba

    def predict_one(self, x: Features) -> Any:
        return _first_most_probable(self.predict_proba_one(x))

    def counts(self) -> dict[str, int]:
        return _counts(self.tree, self.leaves)


def _scale_by_error(values: Sequence[float], error: float) -> Sequence[float]:
    """AdaLeafClassifier.prediction's weighting: normalize_values_in_dict(dist, sum * e * e)."""
    factor = sum(values) * error * error
    if factor == 0 or math.isnan(factor):
        return values
    multiplier = 1 / factor
    return [value * multiplier for value in values]


def _normalise(proba: dict[Any, float]) -> None:
    """normalize_values_in_dict(proba) in place: times 1 / sum, unless the sum is 0 or NaN."""
    factor = sum(proba.values())
    if factor == 0 or math.isnan(factor):
        return
    multiplier = 1 / factor
    for cls, value in proba.items():
        proba[cls] = value * multiplier


class _ForestClassifier:
    """ARFClassifier.predict_proba_one: each tree's probabilities times its metric (when
    weighted voting is on and the metric is positive), summed in a Counter, over their total."""

    def __init__(self, model: Any):
        self.trees = tuple(_tree_classifier(member) for member in model)
        weights = []
        for metric in model._metrics[: len(self.trees)]:
            value = metric.get()
            weights.append(value if not model.disable_weighted_vote and value > 0.0 else None)
        self.weights = tuple(weights)

    def predict_proba_one(self, x: Features) -> dict[Any, float]:
        y_pred: collections.Counter[Any] = collections.Counter()
        for member, weight in zip(self.trees, self.weights, strict=True):
            y_proba = member.predict_proba_one(x)
            if weight is not None:
                y_proba = {cls: value * weight for cls, value in y_proba.items()}
            y_pred.update(y_proba)
        total = sum(y_pred.values())
        if total > 0:
            return {cls: value / total for cls, value in y_pred.items()}
        # River returns its Counter here; typeshed's Counter counts ints, this one sums floats
        return cast(dict[Any, float], y_pred)

    def predict_one(self, x: Features) -> Any:
        return _first_most_probable(self.predict_proba_one(x))

    def counts(self) -> dict[str, int]:
        totals = collections.Counter(trees=len(self.trees))
        for member in self.trees:
            totals.update(member.counts())
        return dict(totals)


def _first_most_probable(proba: dict[Any, float]) -> Any:
    """base.Classifier.predict_one: the first key of highest value, None for an empty dict."""
    if proba:
        return max(proba, key=proba.__getitem__)
    return None


def _tree_classifier(model: Any) -> _TreeClassifier:
    if (
        type(model).predict_proba_one is not tree.HoeffdingTreeClassifier.predict_proba_one
        or type(model).predict_one is not base.Classifier.predict_one
    ):
        raise _NoCompactForm(f"{type(model).__name__} predicts its own way")
    return _TreeClassifier(model)


# ---------------------------------------------------------------------------------------------
# Regressors


class _TreeRegressor:
    """HoeffdingTreeRegressor.predict_one (`adaptive` is False) and
    HoeffdingAdaptiveTreeRegressor.predict_one (`adaptive`: the mean over the reached leaves,
    alternate trees included). A leaf predicts means[i], or models[i].predict_one(x) when
    means[i] is None (a copy of the leaf's linear model)."""

    def __init__(self, model: Any, adaptive: bool):
        self.adaptive = adaptive
        self.tree: _Tree | None = None
        self.n_bayes = 0
        means: list[float | None] = []
        models: list[Any] = []

        def encode(leaf: Leaf) -> int:
            mean, leaf_model = _regression_leaf(leaf)
            means.append(mean)
            models.append(leaf_model)
            return len(means) - 1

        if model._root is not None:
            alternate_type = AdaBranchRegressor if adaptive else None
            self.tree = _flatten(model._root, encode, alternate_type)
        self.means = tuple(means)
        self.models = tuple(models)

    def _leaf_prediction(self, leaf: int, x: Features) -> float:
        mean = self.means[leaf]
        return self.models[leaf].predict_one(x) if mean is None else mean

    def predict_one(self, x: Features) -> float:
        pred = 0.0
        if self.tree is None:
            return pred
        if not self.adaptive:
            return self._leaf_prediction(self.tree.leaf(x), x)
        found = self.tree.leaves(x)
        for leaf in found:
            pred += self._leaf_prediction(leaf, x)
        pred /= len(found)
        return pred

    def predict_proba_one(self, x: Features) -> None:
        return None

    def counts(self) -> dict[str, int]:
        return {
            "nodes": self.tree.n_nodes if self.tree else 0,
            "branches": self.tree.n_branches if self.tree else 0,
            "leaves": len(self.means),
            "model_leaves": self.means.count(None),
        }


def _regression_leaf(leaf: Leaf) -> tuple[float | None, Any]:
    """(target mean, None) for a leaf predicting its mean now, else (None, model copy)."""
    predict = type(leaf).prediction
    if predict is LeafMean.prediction:
        return leaf.stats.mean.get(), None
    if predict is LeafAdaptive.prediction and leaf._fmse_mean < leaf._fmse_model:
        return leaf.stats.mean.get(), None
    if predict in (LeafModel.prediction, LeafAdaptive.prediction):
        return None, copy.deepcopy(leaf._leaf_model)
    raise _NoCompactForm(f"{type(leaf).__name__} predicts its own way")


# ---------------------------------------------------------------------------------------------
# Choosing a compact form


class _Predictor(Protocol):
    """What every compact form above offers an InferenceSnapshot."""

    def predict_one(self, x: Features) -> Any: ...

    def predict_proba_one(self, x: Features) -> dict[Any, float] | None: ...

    def counts(self) -> dict[str, int]: ...


def _predictor(model: Any) -> _Predictor:
    """The compact predictor of a River estimator (not a pipeline)."""
    cls = type(model)
    if isinstance(model, tree.HoeffdingTreeClassifier):
        if cls.predict_proba_one is tree.HoeffdingAdaptiveTreeClassifier.predict_proba_one:
            if cls.predict_one is not base.Classifier.predict_one:
                raise _NoCompactForm(f"{cls.__name__} predicts its own way")
            return _AdaptiveTreeClassifier(model)
        return _tree_classifier(model)
    if isinstance(model, tree.HoeffdingTreeRegressor):
        if cls.predict_one is tree.HoeffdingTreeRegressor.predict_one:
            return _TreeRegressor(model, adaptive=False)
        if cls.predict_one is tree.HoeffdingAdaptiveTreeRegressor.predict_one:
            return _TreeRegressor(model, adaptive=True)
    if isinstance(model, forest.ARFClassifier) and (
        cls.predict_proba_one is forest.ARFClassifier.predict_proba_one
        and cls.predict_one is base.Classifier.predict_one
    ):
        return _ForestClassifier(model)
    raise _NoCompactForm(f"no compact form for {cls.__name__}")


def _compile(model: Any) -> tuple[tuple[Any, ...], _Predictor]:
    """(transformers to apply first, predictor). A pipeline keeps its steps but the last one as
    River applies them at prediction (anomaly filters only act while learning)."""
    if type(model) is compose.Pipeline:
        steps = list(model.steps.values())
        predictor = _predictor(steps[-1])
        transformers = [step for step in steps[:-1] if not isinstance(step, base.AnomalyFilter)]
        return copy.deepcopy(tuple(transformers)), predictor
    return (), _predictor(model)


def _counts(tree_: _Tree | None, leaves: _ClassLeaves) -> dict[str, int]:
    return {
        "nodes": tree_.n_nodes if tree_ else 0,
        "branches": tree_.n_branches if tree_ else 0,
        "leaves": leaves.n_leaves,
        "naive_bayes_leaves": leaves.n_bayes,
    }


class InferenceSnapshot(Algorithm):
    """A predict-only copy of a River tree model (see the module's docstring).

    `incremental` is False: it never learns, so a launcher that test-then-trains incremental
    models must not hand it records to learn (learn_one raises a TypeError).
    """

    incremental = False

    def __init__(
        self, source: RiverAlgorithm, transformers: tuple[Any, ...], predictor: _Predictor
    ):
        self.name = source.name
        self.kind = source.kind
        self.n_learned = source.n_learned
        self.transformers = transformers
        self.predictor = predictor
        self.source = source.describe()

    def learn_one(self, x: Features, y: Any) -> None:
        raise TypeError(
            f"an inference snapshot does not learn; {self.name} learns in the trainer, which "
            "publishes a fresh snapshot"
        )

    def learn_many(self, xs: Sequence[Features], ys: Sequence[Any]) -> None:
        self.learn_one({}, None)

    def _features(self, x: Features) -> Features:
        for transformer in self.transformers:
            x = transformer.transform_one(x)
        return x

    def predict_one(self, x: Features) -> Any:
        # RiverAlgorithm predicts None before its first record
        if self.n_learned == 0:
            return None
        if self.transformers:
            x = self._features(x)
        return self.predictor.predict_one(x)

    def predict_proba_one(self, x: Features) -> dict[Any, float] | None:
        if self.n_learned == 0 or self.kind != CLASSIFIER:
            return None
        if self.transformers:
            x = self._features(x)
        return self.predictor.predict_proba_one(x)

    def describe(self) -> dict[str, Any]:
        return {
            **self.source,
            "incremental": False,
            "snapshot": {
                "of": self.source.get("estimator"),
                "records_learned": self.n_learned,
                "pipeline_steps_kept": len(self.transformers),
                **self.predictor.counts(),
            },
        }


def inference_snapshot(algorithm: Algorithm) -> Algorithm | None:
    """A predict-only copy of `algorithm` that predicts exactly as it does now, or None when it
    has no compact form (not a River tree model listed in the module's docstring, or in a state
    River itself cannot predict from): the caller then ships the full model. A champion and its
    challengers get each model's snapshot (the full model of those without one)."""
    if isinstance(algorithm, Contenders):
        return algorithm.map_models(inference_snapshot)
    if not isinstance(algorithm, RiverAlgorithm) or algorithm.kind not in (CLASSIFIER, REGRESSOR):
        return None
    try:
        transformers, predictor = _compile(algorithm.model)
    except _NoCompactForm:
        return None
    return InferenceSnapshot(algorithm, transformers, predictor)
