"""Run-time overrides are validated like props files and limited to the mutable keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConnectionSettings, load_usecase
from shared.config.live import apply_overrides
from shared.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def kdd(data_dir):
    return load_usecase(REPO / "usecases" / "kdd-cup-99", ConnectionSettings(data_dir=data_dir))


def test_overrides_change_only_their_keys(kdd):
    changed = apply_overrides(
        kdd, {"training.interval": "250", "online.inference": "false", "threshold.threshold": "0.5"}
    )
    assert changed.algs.training_interval == 250
    assert changed.streaming.online_inference is False
    assert changed.monitoring.threshold_threshold == [0.5]
    assert changed.streaming.datafile == kdd.streaming.datafile
    assert changed.algs.algorithm_params == kdd.algs.algorithm_params
    assert kdd.algs.training_interval == 5000  # the base is untouched


def test_bad_or_immutable_overrides_are_refused_with_the_key(kdd):
    with pytest.raises(ConfigError) as error:
        apply_overrides(
            kdd, {"mainTopic": "other", "training.maxdata": "0", "recordsPerBlock": "0"}
        )
    messages = [f"{issue.key}: {issue.reason}" for issue in error.value.issues]
    assert messages == [
        "mainTopic: cannot be changed at run time",
        "recordsPerBlock: Input should be greater than or equal to 1 (got '0')",
        "training.maxdata: must be -1 (all records) or a positive count",
    ]
