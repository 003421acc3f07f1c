"""Running statistics for references and baselines, checkpointable as plain data."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["RunningStats"]


@dataclass(slots=True)
class RunningStats:
    """Welford's running mean and sample variance: exact and stable in one pass, O(1) memory,
    unlike the original, which re-read the whole history at each check."""

    n: int = 0
    mean: float = 0.0
    m2: float = 0.0

    def add(self, value: float) -> None:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self.m2 += delta * (value - self.mean)

    @property
    def std(self) -> float:
        """Sample standard deviation (n − 1, like the original's commons-math); 0 below 2."""
        return math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else 0.0
