"""Monitoring detectors on synthetic metric series with known change points: when alerts start
and stop, the robustness rule, per-metric settings, undefined values, River drift detectors on
error streams, pickling, and the Elasticsearch export."""

from __future__ import annotations

import math
import pickle
import random
from collections.abc import Sequence

import pytest
from pydantic import Field

from shared.config import MonitoringConfig
from shared.errors import StreamerError
from shared.monitoring import (
    ChangeKind,
    CuSumDetector,
    CuSumDetectorOnLine,
    Detection,
    DetectionChange,
    Detector,
    RiverDriftDetector,
    ThresholdDetector,
    build_detector,
    record_errors,
)

T0 = 1_700_000_000_000  # epoch ms of evaluation 0; evaluations every 5 s


def config(**keys: str) -> MonitoringConfig:
    """MonitoringConfig from props keys: `_` stands for `.`, `__` for `-`."""
    return MonitoringConfig.model_validate(
        {key.replace("__", "-").replace("_", "."): value for key, value in keys.items()}
    )


def run(
    detector: Detector, series: Sequence[float | None], metric: str = "m", first: int = 0
) -> tuple[list[tuple[int, ChangeKind]], list[bool]]:
    """Observe `series` (one value per evaluation); the (index, kind) changes and the alert after
    each evaluation."""
    changes: list[tuple[int, ChangeKind]] = []
    alerts: list[bool] = []
    for index, value in enumerate(series, start=first):
        for change in detector.observe(index, T0 + 5000 * index, {metric: value}):
            changes.append((index, change.kind))
        alerts.append(detector.alert)
    return changes, alerts


def starts_stops(changes: list[tuple[int, ChangeKind]]) -> tuple[list[int], list[int]]:
    starts = [i for i, kind in changes if kind is ChangeKind.STARTED]
    stops = [i for i, kind in changes if kind is ChangeKind.STOPPED]
    return starts, stops


def gaussian(seed: int, parts: Sequence[tuple[int, float]], sd: float) -> list[float]:
    """Concatenated N(mean, sd) segments of the given lengths: known change points."""
    rng = random.Random(seed)
    return [rng.gauss(mean, sd) for length, mean in parts for _ in range(length)]


# -- ThresholdDetector ---------------------------------------------------------------------------

# 0.2 ± 0.02 for 50 evaluations, 0.4 for 20 (change at 50), back to 0.2 at 70.
STEP = gaussian(1, [(50, 0.2), (20, 0.4), (30, 0.2)], sd=0.02)


@pytest.mark.parametrize("robustness", [1, 2, 3])
def test_threshold_starts_and_stops_after_robustness_evaluations(robustness):
    detector = build_detector(
        config(
            metrics="m",
            detector="ThresholdDetector",
            threshold_threshold="0.3",
            threshold_threshold_alert__if__greater="true",
            threshold_threshold_abs="false",
            threshold_robustness=str(robustness),
        ),
        "uc",
    )
    changes, alerts = run(detector, STEP)
    starts, stops = starts_stops(changes)
    assert starts == [50 + robustness - 1]  # no false alarm on the stable part
    assert stops == [70 + robustness - 1]  # exactly `robustness` clean evaluations
    assert alerts == [starts[0] <= i < stops[0] for i in range(len(STEP))]


def test_threshold_needs_consecutive_detections_and_consecutive_clean_evaluations():
    detector = ThresholdDetector("uc", ["m"], thresholds=0.5, robustness=3)
    high, low = 0.9, 0.1
    series = [high, low, high, high, low, high, high, high, high, low, low, high, low, low, low]
    changes, _ = run(detector, series)
    # runs of 1 and 2 violations do not start it; the 3rd consecutive one (index 7) does;
    # two clean evaluations then a violation (index 11) restart the clean count.
    assert changes == [
        (7, ChangeKind.STARTED),
        (8, ChangeKind.UPDATED),
        (11, ChangeKind.UPDATED),
        (14, ChangeKind.STOPPED),
    ]


def test_threshold_per_metric_settings():
    detector = build_detector(
        config(
            metrics="mae, accuracy, drift",
            detector="ThresholdDetector",
            threshold_threshold="0.5, 0.8, 1.0",
            threshold_threshold_alert__if__greater="true, false, true",
            threshold_threshold_abs="false, false, true",
            threshold_robustness="1, 1, 2",
        ),
        "uc",
    )
    assert isinstance(detector, ThresholdDetector)
    assert [detector.robustness(m) for m in detector.metrics] == [1, 1, 2]
    fine = {"mae": 0.4, "accuracy": 0.9, "drift": -0.5}
    assert detector.observe(0, T0, fine) == [] and not detector.alert
    # accuracy below its threshold: alert-if-greater=false for that metric only
    (change,) = detector.observe(1, T0, {**fine, "accuracy": 0.7})
    assert (change.kind, change.detection.metric) == (ChangeKind.STARTED, "accuracy")
    # mae 0.6 is above 0.5; -1.5 is beyond 1.0 in absolute value, but drift needs 2 in a row
    changes = detector.observe(2, T0, {"mae": 0.6, "accuracy": 0.9, "drift": -1.5})
    assert [(c.kind, c.detection.metric) for c in changes] == [
        (ChangeKind.STARTED, "mae"),
        (ChangeKind.STOPPED, "accuracy"),
    ]
    changes = detector.observe(3, T0, {"mae": 0.4, "accuracy": 0.9, "drift": -1.5})
    assert [(c.kind, c.detection.metric) for c in changes] == [
        (ChangeKind.STOPPED, "mae"),
        (ChangeKind.STARTED, "drift"),
    ]
    assert detector.alert and set(detector.ongoing()) == {"drift"}


@pytest.mark.parametrize(
    ("absolute", "greater", "value", "detected"),
    [
        (True, True, -0.7, True),  # |−0.7| > 0.5
        (False, True, -0.7, False),
        (False, True, 0.5, False),  # equal is not beyond
        (False, False, 0.4, True),  # alert-if-greater false: below the threshold
        (False, False, 0.6, False),
        (True, False, -0.4, True),  # |−0.4| < 0.5
    ],
)
def test_threshold_abs_and_alert_if_greater(absolute, greater, value, detected):
    detector = ThresholdDetector("uc", ["m"], 0.5, alert_if_greater=greater, absolute=absolute)
    assert bool(detector.observe(0, T0, {"m": value})) is detected
    assert detector.alert is detected


def test_threshold_magnitude_is_the_most_extreme_value():
    greater = ThresholdDetector("uc", ["m"], 0.5)
    run(greater, [0.6, 0.9, 0.7])
    assert greater.ongoing()["m"].magnitude == 0.9
    lower = ThresholdDetector("uc", ["m"], 0.5, alert_if_greater=False)
    run(lower, [0.4, 0.1, 0.3])
    assert lower.ongoing()["m"].magnitude == 0.1


def test_undefined_values_are_skipped_not_counted():
    detector = ThresholdDetector("uc", ["m"], 0.5, robustness=2)
    high, low, nan = 0.9, 0.1, math.nan
    series = [high, None, high, low, nan, math.inf, low, high]
    changes, alerts = run(detector, series)
    # None between two violations does not break the run: it starts at index 2;
    # NaN and inf between two clean evaluations do not break the clean run: it stops at 6.
    assert changes == [(2, ChangeKind.STARTED), (6, ChangeKind.STOPPED)]
    assert alerts == [False, False, True, True, True, True, False, False]
    # a metric missing from the values is undefined as well
    assert detector.observe(8, T0, {}) == []
    (change,) = detector.observe(9, T0, {"m": high})  # 7 and 9 are consecutive detections
    assert (change.kind, change.detection.start) == (ChangeKind.STARTED, 9)


def test_an_evaluation_index_seen_already_is_ignored():
    detector = ThresholdDetector("uc", ["m"], 0.5)
    assert detector.observe(5, T0, {"m": 0.9})
    assert detector.observe(5, T0, {"m": 0.1}) == []  # replayed after a restore
    assert detector.observe(4, T0, {"m": 0.1}) == []
    assert detector.alert
    assert [c.kind for c in detector.observe(6, T0, {"m": 0.1})] == [ChangeKind.STOPPED]


# -- CUSUM detectors ------------------------------------------------------------------------------

# 0.2 ± 0.02 for 150 evaluations, +3σ (0.26) from 150 to 190, back to 0.2 until 270.
SHIFT = gaussian(3, [(150, 0.2), (40, 0.26), (80, 0.2)], sd=0.02)
CHANGE, RETURN = 150, 190


@pytest.mark.parametrize(("robustness", "max_delay", "max_stop_delay"), [(1, 3, 12), (3, 5, 14)])
def test_cusum_detects_the_change_and_stops_after_the_return(robustness, max_delay, max_stop_delay):
    detector = build_detector(
        config(
            metrics="m", detector="CuSumDetector", cusum_drift="1", cusum_robustness=str(robustness)
        ),
        "uc",
    )
    changes, alerts = run(detector, SHIFT)
    starts, stops = starts_stops(changes)
    assert len(starts) == 1 and len(stops) == 1  # no false alarm, no flicker during the shift
    assert CHANGE <= starts[0] <= CHANGE + max_delay
    assert RETURN <= stops[0] <= RETURN + max_stop_delay
    assert alerts == [starts[0] <= i < stops[0] for i in range(len(SHIFT))]


def test_cusum_robustness_delays_the_start_by_robustness_minus_one():
    first = {}
    for robustness in (1, 2, 3):
        detector = CuSumDetector("uc", ["m"], drift=1.0, robustness=robustness)
        starts, _ = starts_stops(run(detector, SHIFT)[0])
        first[robustness] = starts[0]
    # the statistic stays over h while the shift lasts, so each extra unit waits one evaluation
    assert first[2] == first[1] + 1 and first[3] == first[1] + 2


def test_cusum_threshold_is_in_sigma_units_whatever_the_metric_scale():
    """The original compared factor·std (raw units) with a CUSUM of z-scores: scaling the
    metric changed its alerts. Here h = factor σ, so they do not depend on the scale."""
    results = []
    for scale in (1.0, 1000.0):
        detector = CuSumDetector("uc", ["m"], drift=1.0)
        results.append(run(detector, [scale * x for x in SHIFT])[0])
        assert detector.threshold("m") == 5.0
    assert results[0] == results[1] != []


def test_cusum_reference_is_learnt_from_clean_values_only():
    detector = CuSumDetector("uc", ["m"], drift=1.0)
    run(detector, SHIFT[:175])  # stopped while the shift is ongoing
    reference = detector.reference("m")
    assert reference.n < 150 + 5  # the shifted values did not leak into the reference
    assert reference.mean == pytest.approx(0.2, abs=0.005)
    assert reference.std == pytest.approx(0.02, rel=0.2)


def test_cusum_online_accumulates_across_evaluations():
    """A 1σ shift never crosses h=5 in one evaluation; the original restarted S at every batch
    (never accumulated) and so never saw it."""
    series = gaussian(5, [(100, 0.43), (40, 0.63), (60, 0.43)], sd=0.2)
    detector = build_detector(
        config(
            metrics="m",
            detector="CuSumDetectorOnLine",
            cusumonline_drift="0.5",
            cusumonline_average="0.43",
            cusumonline_std="0.2",
            cusumonline_robustness="2",
        ),
        "uc",
    )
    changes, _ = run(detector, series)
    starts, stops = starts_stops(changes)
    assert len(starts) == 1 and 100 <= starts[0] <= 100 + 20
    assert len(stops) == 1 and 140 <= stops[0] <= 140 + 20


def test_cusum_online_fires_with_robustness_above_one():
    # the original reset its robustness counter at each batch: with 2 or more it never fired
    detector = CuSumDetectorOnLine("uc", ["m"], average=0.0, std=1.0, drift=0.5, robustness=3)
    changes, _ = run(detector, [0.0] * 5 + [4.0] * 5)
    assert starts_stops(changes)[0] == [5 + 2 + 1]  # S crosses 5 at index 6, 3 in a row at 8


def test_cusum_statistic_is_clamped_during_an_episode_and_restarts_when_it_stops():
    detector = CuSumDetectorOnLine("uc", ["m"], average=0.0, std=1.0, drift=0.5)
    # S⁺ = 3.5, 7 (start), then clamped at 2h = 10 however long the shift lasts
    changes, _ = run(detector, [4.0] * 30)
    assert starts_stops(changes) == ([1], []) and detector.ongoing()["m"].magnitude == 10.0
    # back to normal: S⁺ falls by k = 0.5 per evaluation and is 5.0 (not > h) after 10
    changes, _ = run(detector, [0.0] * 10 + [1.0], first=30)
    assert starts_stops(changes) == ([], [39])
    # S restarted from 0 at the stop, so 1.0 (S⁺ = 0.5) does not start a new alert
    assert not detector.alert


def test_cusum_online_without_std_works_in_the_metrics_units():
    detector = CuSumDetectorOnLine("uc", ["m"], average=10.0, drift=0.0, thresholds=[3.0])
    changes, _ = run(detector, [10.0, 11.0, 11.0, 11.0, 11.0])
    assert starts_stops(changes)[0] == [4]  # S⁺ = 1, 2, 3, 4 > 3


@pytest.mark.parametrize(
    ("detector", "keys"),
    [
        ("CuSumDetector", {"cusum_drift": "0.5"}),
        (
            "CuSumDetectorOnLine",
            {"cusumonline_drift": "0.5", "cusumonline_average": "0", "cusumonline_std": "1"},
        ),
    ],
)
def test_each_cusum_detector_reads_its_own_robustness_key(detector, keys):
    own = "cusum_robustness" if detector == "CuSumDetector" else "cusumonline_robustness"
    other = "cusumonline_robustness" if own == "cusum_robustness" else "cusum_robustness"
    base = {"metrics": "a, b", "detector": detector, "threshold_robustness": "4", **keys}
    assert build_detector(config(**base, **{own: "2, 3", other: "7"}), "uc").robustness("b") == 3
    fallback = build_detector(config(**base, **{other: "7"}), "uc")  # the original's files
    assert [fallback.robustness(m) for m in ("a", "b")] == [4, 4]


def test_cusum_online_reads_its_own_threshold_key():
    keys = {
        "metrics": "m",
        "detector": "CuSumDetectorOnLine",
        "cusumonline_drift": "0.5",
        "cusumonline_average": "0",
        "cusumonline_std": "2",
        "threshold_robustness": "1",
        "cusum_threshold": "100",  # the key the original read instead
    }
    assert build_detector(config(**keys, cusumonline_threshold="3"), "uc").threshold("m") == 3.0
    by_factor = build_detector(config(**keys, cusumonline_factor="4"), "uc")
    assert by_factor.threshold("m") == 4.0  # factor σ, in σ units (not std·factor)


# -- River drift detectors on an error stream -----------------------------------------------------

# 0/1 errors, 50 records per evaluation: error rate 0.1, then 0.5 from evaluation 12.
ERRORS_CHANGE = 12


def error_batches(seed: int = 0, size: int = 50) -> list[list[float]]:
    rng = random.Random(seed)
    rates = [0.1] * ERRORS_CHANGE + [0.5] * 8 + [0.1] * 4
    return [[1.0 if rng.random() < rate else 0.0 for _ in range(size)] for rate in rates]


@pytest.mark.parametrize(("kind", "max_delay"), [("ADWIN", 2), ("PageHinkley", 3), ("KSWIN", 2)])
def test_river_detectors_catch_an_abrupt_rise_of_the_error_rate(kind, max_delay):
    detector = build_detector(
        config(metrics="error", detector=kind),
        "uc",
        params={"stream": "errors", "direction": "up"},
    )
    assert isinstance(detector, RiverDriftDetector) and detector.wants_errors
    changes = []
    for index, batch in enumerate(error_batches()):
        if index == ERRORS_CHANGE - 2:  # a checkpoint restored: the windows carry on
            detector = pickle.loads(pickle.dumps(detector))
        changes += [(index, c.kind) for c in detector.observe_errors(index, T0, batch)]
    starts, stops = starts_stops(changes)
    assert len(starts) == 1 and ERRORS_CHANGE <= starts[0] <= ERRORS_CHANGE + max_delay
    # robustness 1: the alert starts at the drift and stops at the next clean evaluation
    assert stops == [starts[0] + 1]


def test_river_detector_on_a_metric_stream():
    series = gaussian(2, [(60, 0.9), (30, 0.8)], sd=0.02)  # an accuracy falling 5σ at 60
    detector = RiverDriftDetector(
        "uc",
        ["accuracy"],
        "PageHinkley",
        params={"threshold": 0.3, "min_instances": 10},  # in the metric's units
        direction="down",
    )
    changes, _ = run(detector, series, metric="accuracy")
    starts, stops = starts_stops(changes)
    assert len(starts) == 1 and 60 <= starts[0] <= 60 + 3
    assert stops == [starts[0] + 1]


def test_river_direction_up_ignores_a_recovery():
    rng = random.Random(4)
    detector = RiverDriftDetector("uc", ["e"], "ADWIN", stream="errors", direction="up")
    both = RiverDriftDetector("uc", ["e"], "ADWIN", stream="errors")
    starts = {"up": [], "both": []}
    for index in range(40):  # errors fall from 0.5 to 0.1 at evaluation 20: good news
        rate = 0.5 if index < 20 else 0.1
        batch = [1.0 if rng.random() < rate else 0.0 for _ in range(20)]
        for name, det in (("up", detector), ("both", both)):
            starts[name] += [
                index for c in det.observe_errors(index, T0, batch) if c.kind == "started"
            ]
    assert starts["up"] == [] and starts["both"] != []


def test_river_input_mode_is_enforced():
    metrics = RiverDriftDetector("uc", ["m"], "PageHinkley")
    with pytest.raises(TypeError, match="observe"):
        metrics.observe_errors(0, T0, [1.0])
    errors = RiverDriftDetector("uc", ["m", "n"], "PageHinkley", stream="errors")
    with pytest.raises(TypeError, match="observe_errors"):
        errors.observe(0, T0, {"m": 1.0})
    with pytest.raises(ValueError, match="mapping"):
        errors.observe_errors(0, T0, [1.0])
    assert errors.observe_errors(1, T0, {"m": [None, math.nan], "n": []}) == []  # all undefined
    with pytest.raises(TypeError, match="observe"):
        ThresholdDetector("uc", ["m"], 1.0).observe_errors(0, T0, [1.0])


def test_river_parameters_and_robustness_from_params():
    detector = build_detector(
        config(metrics="a, b", detector="KSWIN", threshold_robustness="3"),
        "uc",
        params={"alpha": [0.001, 0.01], "window_size": 50, "stat_size": 20},
    )
    assert [detector.river_detector(m).alpha for m in ("a", "b")] == [0.001, 0.01]
    assert detector.river_detector("a").seed == 42  # reproducible by default
    assert detector.robustness("a") == 3  # falls back to threshold.robustness
    assert build_detector(config(metrics="a", detector="ADWIN"), "uc").robustness("a") == 1
    own = build_detector(config(metrics="a", detector="ADWIN"), "uc", params={"robustness": 2})
    assert own.robustness("a") == 2
    with pytest.raises(StreamerError, match="unknown parameter"):
        build_detector(config(metrics="a", detector="ADWIN"), "uc", params={"delat": 0.1})


def test_river_parameters_are_read_from_config_fields_when_the_model_has_them():
    class WithAdwinKeys(MonitoringConfig):
        adwin_delta: float | None = Field(None, alias="adwin.delta")
        adwin_robustness: int | None = Field(None, alias="adwin.robustness")

    settings = WithAdwinKeys.model_validate(
        {"metrics": "a", "detector": "ADWIN", "adwin.delta": 0.01, "adwin.robustness": 2}
    )
    detector = build_detector(settings, "uc")
    assert detector.river_detector("a").delta == 0.01 and detector.robustness("a") == 2
    assert build_detector(settings, "uc", params={"delta": 0.5}).river_detector("a").delta == 0.5


def test_record_errors():
    assert record_errors(["1", 0, "a"], [1, "0", "b"], regression=False) == [0.0, 0.0, 1.0]
    assert record_errors([1.5, None, "x", 2], [1.0, 3, 1, math.inf], regression=True) == [
        0.5,
        None,
        None,
        None,
    ]


# -- building, state, export ----------------------------------------------------------------------


def test_no_detector_means_no_monitoring():
    assert build_detector(config(metrics="m"), "uc") is None
    assert build_detector(MonitoringConfig(), "uc") is None


@pytest.mark.parametrize(
    ("keys", "params", "message"),
    [
        (
            {"detector": "ThresholdDetector", "threshold_robustness": "1"},
            None,
            "threshold.threshold",
        ),
        (
            {
                "detector": "ThresholdDetector",
                "threshold_threshold": "1, 2, 3",
                "threshold_robustness": "1",
            },
            None,
            "one per metric",
        ),
        (
            {"detector": "CuSumDetector", "cusum_drift": "-0.5", "threshold_robustness": "1"},
            None,
            "cusum.drift: must be >= 0",
        ),
        (
            {
                "detector": "CuSumDetectorOnLine",
                "cusumonline_drift": "0",
                "cusumonline_threshold": "2",
                "threshold_robustness": "1",
            },
            None,
            "cusumonline.average",
        ),
        (
            {"detector": "CuSumDetector", "cusum_drift": "0.5", "threshold_robustness": "1"},
            {"warmpu": 3},
            "warmup",
        ),
    ],
)
def test_bad_monitoring_configurations_name_the_key(keys, params, message):
    with pytest.raises(StreamerError, match=message):
        build_detector(
            config(
                metrics="a, b",
                threshold_threshold_alert__if__greater="true",
                threshold_threshold_abs="false",
                **keys,
            ),
            "uc",
            params,
        )


def make_all() -> dict[str, Detector]:
    return {
        "threshold": ThresholdDetector("uc", ["m"], 0.23, robustness=2),
        "cusum": CuSumDetector("uc", ["m"], drift=0.5, robustness=2),
        "online": CuSumDetectorOnLine("uc", ["m"], average=0.2, std=0.02, drift=0.5),
        **{
            kind.lower(): RiverDriftDetector(
                "uc", ["m"], kind, params={"min_instances": 5} if kind == "PageHinkley" else {}
            )
            for kind in ("ADWIN", "PageHinkley", "KSWIN")
        },
    }


def test_detector_state_survives_pickling_mid_stream():
    series = gaussian(9, [(120, 0.2), (30, 0.3), (30, 0.2)], sd=0.02)
    cut = 135  # inside the shift: detections are ongoing
    for name, detector in make_all().items():
        run(detector, series[:cut])
        if name in ("threshold", "cusum", "online"):
            assert detector.alert, name
        copy = pickle.loads(pickle.dumps(detector))
        assert copy.alert == detector.alert and copy.ongoing() == detector.ongoing(), name
        rest = series[cut:]
        assert run(copy, rest, first=cut) == run(detector, rest, first=cut), name


def test_detection_export_for_elasticsearch():
    detector = ThresholdDetector("kdd", ["root_mean_square_error (RMSE)"], 10.0)
    metric = "root_mean_square_error (RMSE)"
    (started,) = detector.observe(7, T0, {metric: 12.5})
    (updated,) = detector.observe(8, T0 + 5000, {metric: 14.0})
    (stopped,) = detector.observe(9, T0 + 10000, {metric: 3.0})
    assert started.detection.stop is None and started.detection.ongoing
    detection = stopped.detection
    assert detection.id == "kdd:root_mean_square_error (RMSE):7" == started.detection.id
    assert detection.to_document() == {
        "detection_id": "kdd:root_mean_square_error (RMSE):7",
        "timestamp": "2023-11-14T22:13:20.000+00:00",
        "usecase": "kdd",
        "detector": "ThresholdDetector",
        "metric": "root_mean_square_error (RMSE)",
        "ongoing": False,
        "start": 7,
        "touched": 8,
        "stop": 9,
        "start_time": "2023-11-14T22:13:20.000+00:00",
        "touched_time": "2023-11-14T22:13:25.000+00:00",
        "stop_time": "2023-11-14T22:13:30.000+00:00",
        "magnitude": 14.0,
        "change_start": 7,
    }
    assert updated.detection.to_document()["stop"] is None
    no_time = Detection("uc", "X", "m", start=1, touched=1, magnitude=math.nan)
    assert no_time.to_document()["start_time"] is None
    assert no_time.to_document()["magnitude"] is None  # NaN is not valid JSON
    assert all("." not in key and " " not in key for key in no_time.to_document())


def test_changes_are_snapshots():
    detector = ThresholdDetector("uc", ["m"], 0.5)
    (started,) = detector.observe(0, T0, {"m": 0.9})
    detector.observe(1, T0, {"m": 0.95})
    assert started.detection.touched == 0 and started.detection.magnitude == 0.9


# -- Where the change began (Detection.change_start) ----------------------------------------------


@pytest.mark.parametrize("robustness", [1, 2, 3])
def test_threshold_change_start_is_the_first_evaluation_of_the_streak(robustness):
    detector = ThresholdDetector("uc", ["m"], 0.3, robustness=robustness)
    (started,) = started_in(detector, STEP)
    assert started.start == 50 + robustness - 1
    assert started.change_start == 50


def test_threshold_change_start_skips_undefined_values_in_the_streak():
    detector = ThresholdDetector("uc", ["m"], 0.5, robustness=3)
    series = [0.1, 0.1, 0.9, None, 0.9, 0.9]  # a streak 2, 4, 5 (3 is undefined)
    (started,) = started_in(detector, series)
    assert (started.start, started.change_start) == (5, 2)


def test_cusum_change_start_is_the_last_zero_of_the_statistic_before_it_crossed():
    detector = CuSumDetector("uc", ["m"], drift=1.0, robustness=3)
    (started,) = started_in(detector, SHIFT)
    # seed 3 happens to put S⁺ above zero one evaluation before the shift
    assert started.start == 154 and started.change_start == CHANGE - 1


def test_cusum_change_start_over_many_seeds():
    """+3σ at 150, k = 1: the estimate is exact in most runs, and never after the alert."""
    errors = []
    for seed in range(200):
        series = gaussian(seed, [(150, 0.2), (40, 0.26), (80, 0.2)], sd=0.02)
        detector = CuSumDetector("uc", ["m"], drift=1.0)
        started = [
            c.detection
            for c in observe_all(detector, series)
            if c.kind is ChangeKind.STARTED and c.detection.start >= CHANGE
        ]
        assert started[0].change_start <= started[0].start
        errors.append(started[0].change_start - CHANGE)
    assert sum(error == 0 for error in errors) >= 140  # 152 of 200 at the time of writing
    assert sum(abs(error) <= 1 for error in errors) >= 170  # 184
    assert all(-6 <= error <= 3 for error in errors)


def test_cusum_online_change_start_of_a_one_sigma_shift():
    series = gaussian(5, [(100, 0.43), (40, 0.63), (60, 0.43)], sd=0.2)
    detector = CuSumDetectorOnLine("uc", ["m"], average=0.43, std=0.2, drift=0.5, robustness=2)
    (started,) = started_in(detector, series)
    assert started.start == 110 and started.change_start == 100


@pytest.mark.parametrize("kind", ["ADWIN", "PageHinkley", "KSWIN"])
def test_river_change_start_on_an_error_stream(kind):
    """Error rate 0.1 -> 0.5 at evaluation 12: each detector signals at 12 or after, the
    change is located at 12 (a checkpoint restored on the way)."""
    detector = build_detector(
        config(metrics="error", detector=kind), "uc", params={"stream": "errors", "direction": "up"}
    )
    started = []
    for index, batch in enumerate(error_batches()):
        if index == ERRORS_CHANGE - 2:
            detector = pickle.loads(pickle.dumps(detector))
        started += [
            c.detection
            for c in detector.observe_errors(index, T0, batch)
            if c.kind is ChangeKind.STARTED
        ]
    assert [d.change_start for d in started] == [ERRORS_CHANGE]
    assert started[0].start >= ERRORS_CHANGE


@pytest.mark.parametrize("kind", ["ADWIN", "PageHinkley", "KSWIN"])
def test_river_change_start_over_many_seeds(kind):
    """Of the runs that alert after the change (KSWIN misses it in some), at least 90 % locate
    it exactly and all within one evaluation."""
    errors = []
    for seed in range(40):
        detector = build_detector(
            config(metrics="error", detector=kind),
            "uc",
            params={"stream": "errors", "direction": "up"},
        )
        for index, batch in enumerate(error_batches(seed)):
            changes = detector.observe_errors(index, T0, batch)
            started = [c.detection for c in changes if c.kind is ChangeKind.STARTED]
            if started and index >= ERRORS_CHANGE:
                errors.append(started[0].change_start - ERRORS_CHANGE)
                break
    # at the time of writing: ADWIN 39 of 40 exact (one at -1), PageHinkley 40 of 40, KSWIN 32
    # of 32
    assert len(errors) >= 30
    assert sum(error == 0 for error in errors) >= 0.9 * len(errors)
    assert all(abs(error) <= 1 for error in errors)


def test_river_change_start_on_a_metric_stream():
    series = gaussian(2, [(60, 0.9), (30, 0.8)], sd=0.02)  # an accuracy falling 5σ at 60
    detector = RiverDriftDetector(
        "uc",
        ["accuracy"],
        "PageHinkley",
        params={"threshold": 0.3, "min_instances": 10},
        direction="down",
    )
    (started,) = started_in(detector, series, metric="accuracy")
    assert started.start == 62 and started.change_start == 60


def started_in(
    detector: Detector, series: Sequence[float | None], metric: str = "m"
) -> list[Detection]:
    """The detections that started while observing `series`."""
    changes = observe_all(detector, series, metric)
    return [c.detection for c in changes if c.kind is ChangeKind.STARTED]


def observe_all(
    detector: Detector, series: Sequence[float | None], metric: str = "m"
) -> list[DetectionChange]:
    changes: list[DetectionChange] = []
    for index, value in enumerate(series):
        changes += detector.observe(index, T0 + 5000 * index, {metric: value})
    return changes
