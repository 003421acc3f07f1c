"""Build a use case's detector from its monitoring.props (`MonitoringConfig`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from shared.config.models import DetectorName, MonitoringConfig
from shared.errors import StreamerError
from shared.monitoring.base import Detector
from shared.monitoring.cusum import CuSumDetector, CuSumDetectorOnLine
from shared.monitoring.river_drift import RiverDriftDetector
from shared.monitoring.threshold import ThresholdDetector

__all__ = ["PARAM_PREFIXES", "build_detector"]

#: The monitoring.props prefix of each detector's optional keys that MonitoringConfig may gain
#: (`cusum.warmup`, `adwin.delta`, `kswin.seed`, ...): `build_detector` reads any such field.
PARAM_PREFIXES: dict[DetectorName, str] = {
    DetectorName.CUSUM: "cusum",
    DetectorName.ADWIN: "adwin",
    DetectorName.PAGE_HINKLEY: "pagehinkley",
    DetectorName.KSWIN: "kswin",
}
_CUSUM_EXTRAS = {"warmup", "min_std"}


def build_detector(
    config: MonitoringConfig, usecase: str, params: Mapping[str, Any] | None = None
) -> Detector | None:
    """The detector monitoring.props asks for, or None when it names none.

    Per-metric keys take one value for every metric of `metrics` or one per metric. `params`
    holds settings MonitoringConfig has no field for; it wins over such fields when the config
    has them:

    - CuSumDetector: `warmup` (default 10 values), `min_std` (default 1e-9);
    - ADWIN, PageHinkley, KSWIN: the River constructor's arguments (one value or one per
      metric), `robustness` (default: `<prefix>.robustness`, else `threshold.robustness`, else
      1), `stream` (`metrics`, the default, or `errors`) and `direction` (`both`, the
      default, `up` or `down`).

    Raises StreamerError naming the key when the configuration cannot make a detector.
    """
    if config.detector is None:
        return None
    problems = config.problems()
    if problems:
        raise StreamerError(
            f"{usecase}: monitoring.props: " + "; ".join(f"{k}: {why}" for k, why in problems)
        )
    extras = {**_config_extras(config), **(params or {})}
    try:
        return _build(config, usecase, extras)
    except ValueError as error:
        raise StreamerError(f"{usecase}: monitoring.props: {error}") from error


def _build(config: MonitoringConfig, usecase: str, extras: dict[str, Any]) -> Detector:
    detector = config.detector
    metrics = config.metrics
    if detector is DetectorName.THRESHOLD:
        _no_extras(detector, extras, set())
        assert config.threshold_threshold is not None  # enforced by problems()
        return ThresholdDetector(
            usecase,
            metrics,
            config.threshold_threshold,
            alert_if_greater=config.threshold_alert_if_greater or [True],
            absolute=config.threshold_abs or [False],
            robustness=_robustness(config),
        )
    if detector is DetectorName.CUSUM:
        _no_extras(detector, extras, _CUSUM_EXTRAS)
        assert config.cusum_drift is not None
        return CuSumDetector(
            usecase,
            metrics,
            drift=config.cusum_drift,
            thresholds=config.cusum_threshold,
            factor=config.cusum_factor,
            robustness=_robustness(config),
            **extras,
        )
    if detector is DetectorName.CUSUM_ONLINE:
        _no_extras(detector, extras, set())
        assert config.cusumonline_drift is not None
        if config.cusumonline_average is None:
            raise ValueError(
                "cusumonline.average: required (the in-control mean of each metric; "
                "cusumonline.std defaults to 1, drift and threshold then in the metric's units)"
            )
        return CuSumDetectorOnLine(
            usecase,
            metrics,
            average=config.cusumonline_average,
            drift=config.cusumonline_drift,
            std=config.cusumonline_std,
            thresholds=config.cusumonline_threshold,
            factor=config.cusumonline_factor,
            robustness=_robustness(config),
        )
    assert detector is not None
    river = dict(extras)
    robustness = river.pop("robustness", None)
    if robustness is None:
        robustness = config.robustness() or 1
    stream = river.pop("stream", "metrics")
    direction = river.pop("direction", "both")
    return RiverDriftDetector(
        usecase,
        metrics,
        detector.value,
        robustness=robustness,
        params=river,
        stream=stream,
        direction=direction,
    )


def _robustness(config: MonitoringConfig) -> list[int]:
    robustness = config.robustness()
    assert robustness is not None  # enforced by problems() for these detectors
    return robustness


def _no_extras(detector: DetectorName, extras: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(extras) - allowed)
    if unknown:
        valid = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"{detector.value}: unknown parameter(s) {', '.join(unknown)}; {valid}")


def _config_extras(config: MonitoringConfig) -> dict[str, Any]:
    """Fields `<prefix>.<name>` of the configured detector that the code above does not read
    itself, as {name: value}; none today, any field the config later gains for them."""
    prefix = PARAM_PREFIXES.get(config.detector) if config.detector is not None else None
    if prefix is None:
        return {}
    read_directly = {"drift", "factor", "threshold", "robustness"} if prefix == "cusum" else set()
    found: dict[str, Any] = {}
    for name, field in type(config).model_fields.items():
        alias = field.alias or name
        head, _, tail = alias.partition(".")
        key = tail.replace("-", "_").replace(".", "_")
        if head != prefix or not tail or key in read_directly:
            continue
        value = getattr(config, name)
        if value is not None:
            found[key] = value
    return found
