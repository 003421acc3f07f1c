"""ExternalAlgorithm without Redis: configuration, record format, argv, pickling.
The protocol against the real Redis: tests/integration/test_external_algorithm.py."""

from __future__ import annotations

import pickle
import re
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from shared.algorithms import ExternalAlgorithm, build
from shared.algorithms.external import format_record, format_timestamp, format_value
from shared.config import ConnectionSettings
from shared.errors import StreamerError

PARAMS = {"train": "python3 train.py --fast", "test": "Rscript 'my test.R'", "timeout": "30"}


def external(
    tmp_path: Path, url: str = "redis://10.0.0.5:6390/0", **params: str
) -> ExternalAlgorithm:
    connections = ConnectionSettings(redis_url=url)
    algorithm = build(
        "ExternalAlgorithm",
        {**PARAMS, **params},
        tmp_path,
        usecase_name="kdd-cup-99",
        connections=connections,
    )
    assert isinstance(algorithm, ExternalAlgorithm)
    return algorithm


def test_built_from_algs_props_params(tmp_path: Path) -> None:
    algorithm = external(tmp_path)
    assert not algorithm.incremental
    assert algorithm.timeout == 30.0 and algorithm.id == "kdd-cup-99"
    assert algorithm.describe() == {
        "algorithm": "ExternalAlgorithm",
        "incremental": False,
        "train": "python3 train.py --fast",
        "test": "Rscript 'my test.R'",
        "timeout_s": 30.0,
        "model_key": "kdd-cup-99model",
    }


def test_argv_is_the_command_then_id_host_port(tmp_path: Path) -> None:
    algorithm = external(tmp_path)
    assert algorithm.argv(algorithm.train_command) == [
        sys.executable,
        "train.py",
        "--fast",
        "kdd-cup-99",
        "10.0.0.5",
        "6390",
    ]
    assert algorithm.argv(algorithm.test_command)[:2] == ["Rscript", "my test.R"]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"train": ""}, "needs algorithm.train"),
        ({"test": ""}, "needs algorithm.test"),
        ({"timeout": "0"}, "algorithm.timeout=0: must be > 0"),
        ({"timeout": "soon"}, "algorithm.timeout='soon'"),
        ({"tmeout": "3"}, "unknown parameter algorithm.tmeout; valid parameters: train, test"),
    ],
)
def test_configuration_errors(tmp_path: Path, params: dict[str, str], fragment: str) -> None:
    with pytest.raises(StreamerError, match=re.escape(fragment)):
        external(tmp_path, **params)


def test_redis_url_must_be_tcp_on_database_0(tmp_path: Path) -> None:
    with pytest.raises(StreamerError, match="database 0"):
        external(tmp_path, url="redis://127.0.0.1:16379/2")
    with pytest.raises(StreamerError, match="TCP"):
        external(tmp_path, url="unix:///tmp/redis.sock")


def test_pickles_without_connection_or_credentials(tmp_path: Path) -> None:
    algorithm = external(tmp_path, url="redis://:s3cret@10.0.0.5:6390/0")
    algorithm.target_is_number = False
    blob = pickle.dumps(algorithm)
    assert b"s3cret" not in blob and b"10.0.0.5" not in blob
    restored = pickle.loads(blob)
    assert restored.describe() == algorithm.describe()
    assert restored.target_is_number is False
    assert restored._client is None and restored._redis_url is None


def test_after_unpickling_redis_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    restored = pickle.loads(pickle.dumps(external(tmp_path)))
    monkeypatch.setenv("STREAMER_REDIS_URL", "redis://redis.internal:6379/0")
    assert restored.argv("./train")[-2:] == ["redis.internal", "6379"]


def test_record_format_is_the_originals() -> None:
    moment = datetime(2023, 10, 23, 14, 31, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert format_timestamp(moment) == "2023-10-2314:31:00.123+0200"
    assert format_timestamp(datetime(2023, 1, 2, 3, 4, 5)) == "2023-01-0203:04:05.000+0000"
    x = {"duration": 0.0, "protocol_type": "tcp", "src_bytes": 181.0, "rate": 0.25, "n": 3}
    assert format_record(x, moment) == "2023-10-2314:31:00.123+0200;0 tcp 181 0.25 3"
    assert format_value("a b\tc") == "abc" and format_value(["x", 2.0]) == "x 2"
    now = format_record({"a": 1.5})
    assert re.fullmatch(r"\d{4}-\d\d-\d\d\d\d:\d\d:\d\d\.\d{3}[+-]\d{4};1\.5", now)
    written = datetime.strptime(now.split(";")[0], "%Y-%m-%d%H:%M:%S.%f%z")
    assert abs(written - datetime.now(UTC)) < timedelta(minutes=1)


def test_empty_batches_touch_nothing(tmp_path: Path) -> None:
    algorithm = external(tmp_path, url="redis://127.0.0.1:1/0")  # nothing listens there
    algorithm.learn_many([], [])
    algorithm.learn_many([{"a": 1.0}], [None])
    assert algorithm.predict_many([]) == []
