"""Monitoring: detectors that watch a use case's metrics and raise alerts.

The evaluator builds a detector with `build_detector(config, usecase)`, calls
`observe(index, time_ms, values)` once per evaluation (or `observe_errors` for River detectors on
per-record errors), writes the returned `DetectionChange`s (`Detection.to_document()` for
Elasticsearch) and reads `alert`. docs/monitoring.md describes the detectors and how they differ
from the original STREAMER's.
"""

from __future__ import annotations

from shared.monitoring.base import Detector, as_defined, per_metric
from shared.monitoring.cusum import CuSumDetector, CuSumDetectorOnLine
from shared.monitoring.detection import ChangeKind, Detection, DetectionChange
from shared.monitoring.error_stream import record_error, record_errors
from shared.monitoring.factory import build_detector
from shared.monitoring.river_drift import (
    RIVER_DETECTORS,
    DriftDirection,
    DriftStream,
    RiverDriftDetector,
)
from shared.monitoring.robustness import RunLength, Verdict
from shared.monitoring.stats import RunningStats
from shared.monitoring.threshold import ThresholdDetector

__all__ = [
    "RIVER_DETECTORS",
    "ChangeKind",
    "CuSumDetector",
    "CuSumDetectorOnLine",
    "Detection",
    "DetectionChange",
    "Detector",
    "DriftDirection",
    "DriftStream",
    "RiverDriftDetector",
    "RunLength",
    "RunningStats",
    "ThresholdDetector",
    "Verdict",
    "as_defined",
    "build_detector",
    "per_metric",
    "record_error",
    "record_errors",
]
