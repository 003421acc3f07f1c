"""What a retrain learns from: the pure part of `retrain.strategy` (docs/monitoring.md,
"Retraining after an alert").

After an alert, the records just before it are mostly of the old concept: a refit on the most
recent `training.maxdata` records (`window`) learns the old concept again and recovers no faster
than doing nothing. `since-change` learns from where the detector located the change (the
request's `since`, input positions), with at least `retrain.min-records` records; `reset` from
the current positions. Positions are `<topic>/<partition>` -> input offset, as everywhere in the
trainer; offsets count the producer's transaction markers too (one per block), so record counts
taken from them are slightly high.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from shared.wire.store import RetrainRequest

__all__ = ["located_change", "since_change_starts"]


def located_change(requests: Sequence[RetrainRequest]) -> dict[str, int] | None:
    """The change to learn from when several requests are read at once: the newest located
    one (requests come oldest first); None when none locates a change (the API's)."""
    for request in reversed(requests):
        if request.since:
            return dict(request.since)
    return None


def since_change_starts(
    since: Mapping[str, int], ends: Mapping[str, int], min_records: int
) -> dict[str, int]:
    """Per input partition, where a fresh model starts learning: at `since` (the first offset
    of the change), or earlier so that at least `min_records` records precede `ends` (the
    newest positions that may be learnt now), the missing ones taken evenly from every
    partition (never before offset 0). A partition `since` does not name had no output scored
    before the change: it starts at its end."""
    starts = {key: since.get(key, end) for key, end in ends.items()}
    starts.update({key: offset for key, offset in since.items() if key not in starts})
    following = sum(max(0, ends.get(key, start) - start) for key, start in starts.items())
    missing = min_records - following
    if missing <= 0 or not starts:
        return starts
    share = math.ceil(missing / len(starts))
    return {key: max(0, start - share) for key, start in starts.items()}
