"""ExternalAlgorithm against the real Redis, with the scripts of tests/fixtures/external
(a nearest-class-mean model in the original STREAMER's protocol, needing only `redis`)."""

from __future__ import annotations

import pickle
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shared.algorithms import ExternalAlgorithm, build, build_algorithm
from shared.config import ConnectionSettings, load_usecase
from shared.errors import StreamerError

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "external"
TRAIN_XS = [
    {"size": 1.0, "kind": "tcp", "rate": 0.1},
    {"size": 2.0, "kind": "udp", "rate": 0.2},
    {"size": 10.0, "kind": "tcp", "rate": 0.9},
    {"size": 11.0, "kind": "icmp", "rate": 1.0},
]
TRAIN_YS = ["small", "small", "large", "large"]
TEST_XS = [
    {"size": 1.5, "kind": "tcp", "rate": 0.1},
    {"size": 12.0, "kind": "udp", "rate": 0.95},
    {"size": 0.0, "kind": "icmp", "rate": 0.0},
]


@pytest.fixture
def folder(tmp_path: Path, unique: str) -> Path:
    """A use-case folder named `unique` holding the scripts (commands are relative to it)."""
    path = tmp_path / unique
    path.mkdir()
    for script in FIXTURES.glob("*.py"):
        shutil.copy(script, path / script.name)
    return path


@pytest.fixture
def sync_redis(connections: ConnectionSettings, unique: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(connections.redis_url)
    yield client
    keys = [key for key in client.scan_iter(f"*{unique}*")]
    if keys:
        client.delete(*keys)
    client.close()


def external(
    folder: Path, connections: ConnectionSettings, train: str = "train.py", **params: str
) -> ExternalAlgorithm:
    algorithm = build(
        "ExternalAlgorithm",
        {"train": f"python3 {train}", "test": "python3 test.py", **params},
        folder,
        usecase_name=folder.name,
        connections=connections,
    )
    assert isinstance(algorithm, ExternalAlgorithm)
    return algorithm


def test_learn_then_predict_through_the_protocol(
    folder: Path, connections: ConnectionSettings, sync_redis: redis.Redis, unique: str
) -> None:
    algorithm = external(folder, connections)
    assert algorithm.predict_many(TEST_XS) == [None, None, None]  # no model yet: no outputs

    algorithm.learn_many(TRAIN_XS, TRAIN_YS)
    data = [item.decode() for item in sync_redis.lrange(f"datatrain{unique}", 0, -1)]
    assert len(data) == 4
    assert re.fullmatch(r"\d{4}-\d\d-\d\d\d\d:\d\d:\d\d\.\d{3}[+-]\d{4};1 tcp 0\.1", data[0])
    assert data[3].endswith(";11 icmp 1")
    assert sync_redis.lrange(f"datatrain{unique}target", 0, -1) == [y.encode() for y in TRAIN_YS]
    assert sync_redis.get(f"{unique}model") is not None
    assert (folder / "logs").is_dir()

    assert algorithm.predict_many(TEST_XS) == ["small", "large", "small"]
    assert algorithm.predict_one(TEST_XS[1]) == "large"
    assert sync_redis.lrange(f"datatest{unique}", 0, -1)[0].decode().endswith(";12 udp 0.95")
    assert sync_redis.lrange(f"outputs{unique}", 0, -1) == [b"large"]


def test_test_targets_and_separator(
    folder: Path, connections: ConnectionSettings, sync_redis: redis.Redis, unique: str
) -> None:
    algorithm = external(folder, connections)
    algorithm.learn_many(TRAIN_XS, TRAIN_YS)
    algorithm.test_command = "python3 test.py --distance"
    predictions = algorithm.predict_many(TEST_XS[:2], ys=["small", "large"])
    assert sync_redis.lrange(f"datatest{unique}target", 0, -1) == [b"small", b"large"]
    assert sync_redis.get(f"separator{unique}") == b";"
    assert [label for label, _ in predictions] == ["small", "large"]
    assert all(isinstance(distance, str) and float(distance) >= 0 for _, distance in predictions)


def test_numeric_targets_give_numeric_predictions(
    folder: Path, connections: ConnectionSettings, sync_redis: redis.Redis
) -> None:
    algorithm = external(folder, connections)
    algorithm.learn_many(TRAIN_XS, [0.0, 0.0, 1.0, 1.0])
    assert algorithm.predict_many(TEST_XS) == [0.0, 1.0, 0.0]


def test_pickled_handle_predicts_the_same(
    folder: Path, connections: ConnectionSettings, sync_redis: redis.Redis
) -> None:
    algorithm = external(folder, connections)
    algorithm.learn_many(TRAIN_XS, TRAIN_YS)
    restored = pickle.loads(pickle.dumps(algorithm))
    assert restored.predict_many(TEST_XS) == algorithm.predict_many(TEST_XS)


def test_built_from_a_use_case_folder(
    folder: Path, connections: ConnectionSettings, sync_redis: redis.Redis
) -> None:
    (folder / "streaming.props").write_text("mainTopic=in\noutputTopic=out\nproblem.type=Generic\n")
    (folder / "algs.props").write_text(
        "algorithm=ExternalAlgorithm\n"
        "algorithm.train=python3 train.py\n"
        "algorithm.test=python3 test.py\n"
        "algorithm.timeout=60\n"
    )
    usecase = load_usecase(folder, connections)
    algorithm = build_algorithm(usecase)
    assert isinstance(algorithm, ExternalAlgorithm) and algorithm.timeout == 60
    algorithm.learn_many(TRAIN_XS, TRAIN_YS)
    assert algorithm.predict_many(TEST_XS) == ["small", "large", "small"]


def test_failing_command_reports_command_exit_code_and_stderr(
    folder: Path, connections: ConnectionSettings, sync_redis: redis.Redis, unique: str
) -> None:
    algorithm = external(folder, connections, train="fail.py")
    with pytest.raises(StreamerError) as error:
        algorithm.learn_many(TRAIN_XS, TRAIN_YS)
    message = str(error.value)
    assert message.startswith(f"{unique}: the train command failed with exit code 3")
    assert "fail.py" in message and unique in message
    assert message.endswith("loading the model\nValueError: the model is broken")


def test_missing_command_is_reported(
    folder: Path, connections: ConnectionSettings, sync_redis: redis.Redis
) -> None:
    algorithm = build(
        "ExternalAlgorithm",
        {"train": "no-such-program --x", "test": "python3 test.py"},
        folder,
        connections=connections,
    )
    with pytest.raises(StreamerError, match="the train command cannot start: 'no-such-program"):
        algorithm.learn_many(TRAIN_XS, TRAIN_YS)


def test_timeout_kills_the_command(
    folder: Path, connections: ConnectionSettings, sync_redis: redis.Redis
) -> None:
    algorithm = external(folder, connections, train="sleep.py", timeout="1")
    started = time.monotonic()
    with pytest.raises(StreamerError, match=r"did not finish within 1 s and was killed"):
        algorithm.learn_many(TRAIN_XS, TRAIN_YS)
    assert time.monotonic() - started < 10
    # the lock was released: the next call does not wait for it
    algorithm.train_command = "python3 train.py"
    algorithm.learn_many(TRAIN_XS, TRAIN_YS)
