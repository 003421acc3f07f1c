"""Where in the input topics a change began, for the retrain an alert asks for.

A detector locates a change in evaluations (`Detection.change_start`); the trainer needs input
positions (`<topic>/<partition>` -> offset, as its positions are keyed) to learn from there.
Every output's id is its input record's `<topic>/<partition>/<offset>`, and each input
partition's outputs are scored in input order (scoring.py), so for each recent evaluation the
evaluator remembers, per input partition, the first input offset not scored before it: the
records from there on are the ones that evaluation and the later ones scored (plus, in a
partition it did not score, those still to come). A bounded map, kept with the detector in the
checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.monitoring.base import Detector

#: Evaluations whose input positions are kept (the detectors trace changes back as far:
#: shared.monitoring.river_drift.LOCATE_EVALUATIONS).
ORIGIN_EVALUATIONS = 256


@dataclass
class InputOrigins:
    """Per recent evaluation, `<topic>/<partition>` -> the first input offset it could score
    (the one after the last offset scored before it, or for a partition first seen in it, the
    first offset it scored)."""

    by_evaluation: dict[int, dict[str, int]] = field(default_factory=dict)  # oldest first

    def note(self, evaluation: int, before: Mapping[str, int], firsts: Mapping[str, int]) -> None:
        """Evaluation `evaluation` starts after `before` (the last offset scored per partition
        before it) and scored first `firsts` (per partition it scored)."""
        positions = {key: offset + 1 for key, offset in before.items()}
        for key, offset in firsts.items():
            positions.setdefault(key, offset)
        self.by_evaluation[evaluation] = positions
        while len(self.by_evaluation) > ORIGIN_EVALUATIONS:
            del self.by_evaluation[next(iter(self.by_evaluation))]

    def since(self, evaluation: int) -> dict[str, int]:
        """The input positions of `evaluation` (every evaluation is noted); of the oldest one
        kept when it is older, of the newest when it is newer (empty before any)."""
        if evaluation in self.by_evaluation:
            return dict(self.by_evaluation[evaluation])
        kept = list(self.by_evaluation)
        if not kept:
            return {}
        return dict(self.by_evaluation[kept[0] if evaluation < kept[0] else kept[-1]])


def change_origin(detector: Detector) -> int | None:
    """The earliest estimated start among the ongoing detections (each monitored metric
    reacts at its own pace: the first to move is the nearest to the change)."""
    starts = [
        detection.change_start if detection.change_start is not None else detection.start
        for detection in detector.ongoing().values()
    ]
    return min(starts, default=None)
