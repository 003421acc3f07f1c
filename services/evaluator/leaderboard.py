"""The leaderboard: every metric of the use case for each model (the champion and its
challengers), and the automatic promotion rule. Pure logic, no I/O; its state is pickled in
the evaluator's checkpoint.

Models are scored by name, not by role: the champion's `prediction` counts for the model the
output names as `champion`, each shadow prediction for its challenger. A model's values
therefore continue across promotions and rollbacks (its window view covers the last
`evaluation.window` records it predicted, whichever role it had), while the use case's own
metrics (the evaluator's main views) follow the role: whatever the champion predicted.

The rule (`promotion.metric`, `.margin`, `.min-records`): a challenger whose window-view value
beats the champion's by at least the margin (in the metric's direction: higher, or lower for
error measures), once both have scored `min-records` records since the champion last changed,
is promoted (the best one when several qualify). The evaluator decides, the trainer carries
it out as a new version; until the outputs show the new champion (or PENDING_MS pass) no other
promotion is decided. A model a rollback demoted is never promoted again by the rule (by hand
only): the rule would otherwise undo the rollback at once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from shared.config import UseCase
from shared.errors import StreamerError
from shared.metrics.base import Pair
from shared.metrics.evaluation import MetricSet, Results
from shared.wire.kafka import Output
from shared.wire.store import ModelMeta

#: How long a requested promotion holds further decisions while the outputs do not show it.
PENDING_MS = 60_000


@dataclass(frozen=True)
class PromotionRule:
    """algs.props' promotion keys, with the direction of the metric they name."""

    metric: str  # the metric's output name
    margin: float
    min_records: int
    bigger_is_better: bool

    @classmethod
    def of(cls, usecase: UseCase, metric_set: MetricSet) -> PromotionRule | None:
        """The rule of the use case, None without `promotion.metric`; a metric that is not one
        of evaluation.metrics (by output name or spec) is an error naming it."""
        algs = usecase.algs
        wanted = algs.promotion_metric
        if wanted is None:
            return None
        for metric in metric_set.templates:
            if wanted in (metric.name, metric.spec):
                return cls(
                    metric.name, algs.promotion_margin, algs.promotion_min_records,
                    metric.bigger_is_better,
                )  # fmt: skip
        known = ", ".join(metric.name for metric in metric_set.templates) or "none"
        raise StreamerError(
            f"{usecase.name}: promotion.metric={wanted} is not a metric of evaluation.metrics "
            f"(metrics: {known})"
        )


@dataclass(frozen=True)
class Promotion:
    """What the rule decided: promote `model`, and why."""

    model: str
    reason: str


@dataclass
class Standing:
    """One evaluation's leaderboard: per model, its views' values and pairs, and the roles."""

    champion: str | None = None
    challengers: list[str] = field(default_factory=list)
    values: dict[str, Results] = field(default_factory=dict)  # model -> view -> metric -> value
    pairs: dict[str, dict[str, int]] = field(default_factory=dict)  # model -> view -> pairs

    def role(self, model: str) -> str:
        return "champion" if model == self.champion else "challenger"


class Leaderboard:
    """Per model name, a MetricSet of the use case's metrics (see the module docstring)."""

    def __init__(self, metric_set: MetricSet) -> None:
        self.templates = metric_set.templates
        self.window = metric_set.window_size
        self.metrics: dict[str, MetricSet] = {}
        self.pairs_seen: dict[str, int] = {}
        self.champion: str | None = None
        self.challengers: list[str] = []
        self.since_change: dict[str, int] = {}  # pairs per model since the champion changed
        self.pending: tuple[str, int] | None = None  # (model, time ms) of a requested promotion
        self.held: set[str] = set()  # demoted by a rollback: not promoted by the rule

    def score(self, outputs: Sequence[Output]) -> Standing:
        """Score the outputs (in order) of each model; the standing after them. Outputs
        without a champion's name (no challengers) are not on the leaderboard."""
        pairs: dict[str, list[Pair]] = {}
        for output in outputs:
            if output.champion is None:
                continue
            if output.champion != self.champion:
                self.champion, self.since_change = output.champion, {}
                if self.pending is not None and self.pending[0] == output.champion:
                    self.pending = None
            self.challengers = list(output.challengers)
            if not output.targets:
                continue
            target = output.targets[0]
            predictions: list[tuple[str, Any]] = [(output.champion, output.prediction)]
            probabilities = {
                output.champion: output.probabilities,
                **output.challenger_probabilities,
            }
            for name, prediction in [*predictions, *output.challengers.items()]:
                pairs.setdefault(name, []).append((target, prediction, probabilities.get(name)))
                self.since_change[name] = self.since_change.get(name, 0) + 1
        standing = Standing(self.champion, list(self.challengers))
        if self.champion is None:
            return standing
        for name in [self.champion, *self.challengers]:
            scored = pairs.get(name, [])
            metric_set = self.metrics.get(name)
            if metric_set is None:
                metric_set = self.metrics[name] = MetricSet(self.templates, self.window)
            standing.values[name] = metric_set.update_batch(scored)
            seen = self.pairs_seen[name] = self.pairs_seen.get(name, 0) + len(scored)
            window = min(seen, self.window or 0)
            standing.pairs[name] = {"batch": len(scored), "cumulative": seen, "window": window}
        return standing

    def decide(
        self, rule: PromotionRule | None, standing: Standing, time_ms: int
    ) -> Promotion | None:
        """The promotion the rule asks for after this standing, if any (remembered as
        pending)."""
        champion = standing.champion
        if rule is None or champion is None or champion not in standing.values:
            return None
        if self.pending is not None:
            if time_ms - self.pending[1] < PENDING_MS:
                return None
            self.pending = None  # not carried out (refused, or the trainer is down): again
        if self.since_change.get(champion, 0) < rule.min_records:
            return None
        reference = standing.values[champion]["window"].get(rule.metric)
        if reference is None:
            return None
        best: tuple[float, str, float] | None = None
        for name in standing.challengers:
            if name in self.held or self.since_change.get(name, 0) < rule.min_records:
                continue
            value = standing.values.get(name, {}).get("window", {}).get(rule.metric)
            if value is None:
                continue
            gain = value - reference if rule.bigger_is_better else reference - value
            if gain > 0 and gain >= rule.margin and (best is None or gain > best[0]):
                best = (gain, name, value)
        if best is None:
            return None
        _, name, value = best
        self.pending = (name, time_ms)
        records = min(self.since_change[name], self.since_change[champion])
        return Promotion(
            name,
            f"window {rule.metric} {value:.4f} against {reference:.4f} for {champion} "
            f"(margin {rule.margin:g}, {records} records since the champion changed)",
        )

    def note_version(self, meta: ModelMeta) -> None:
        """A model version published: a rollback holds the model it demoted back from the
        rule; any promotion of a model releases it."""
        if meta.mode == "rollback" and meta.previous_champion:
            self.held.add(meta.previous_champion)
        elif meta.mode == "promotion" and meta.champion:
            self.held.discard(meta.champion)
