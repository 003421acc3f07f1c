"""Evaluation metrics: the contract, the built-ins (original STREAMER names, textbook
definitions), River and user metrics, and the batch / cumulative / window views.

docs/metrics.md lists every metric and every deliberate difference from the original.
"""

from __future__ import annotations

from shared.metrics.base import Metric, Pair, as_interval, as_label, as_number, is_missing
from shared.metrics.evaluation import VIEWS, MetricSet, Results
from shared.metrics.registry import (
    BUILTINS,
    build_metric,
    build_metrics,
    build_usecase_metrics,
    usecase_metric_set,
)

__all__ = [
    "BUILTINS",
    "VIEWS",
    "Metric",
    "MetricSet",
    "Pair",
    "Results",
    "as_interval",
    "as_label",
    "as_number",
    "build_metric",
    "build_metrics",
    "build_usecase_metrics",
    "is_missing",
    "usecase_metric_set",
]
