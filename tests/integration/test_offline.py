"""Offline mode on the real Redis and InfluxDB: train/test from a file or from InfluxDB."""

from __future__ import annotations

import csv

import pytest
from pydantic import SecretStr

from services.trainer.offline import run_offline
from shared.clients.influx import AioinfluxStore
from shared.config import load_usecase
from shared.errors import StreamerError
from shared.modelstore import ModelIntegrityError
from shared.wire.influx import RecordsMeasurement
from tests.integration.pipeline_helpers import kdd_slice


@pytest.fixture
def kdd_usecase(tmp_path, data_dir, connections, unique):
    rows = kdd_slice(data_dir, 3000, tmp_path / "all.csv").read_text().splitlines(keepends=True)
    (tmp_path / "train.csv").write_text("".join(rows[:2000]))
    (tmp_path / "test.csv").write_text("".join(rows[2000:]) + "1,2,3\n")
    folder = tmp_path / unique
    folder.mkdir()
    (folder / "streaming.props").write_text(
        "mainTopic=t\noutputTopic=o\nproblem.type=KDDClassification\ndatafile=../test.csv\n"
    )
    (folder / "algs.props").write_text(
        "algorithm=HoeffdingTreeClassifier\ntraining.source=../train.csv\n"
        "evaluation.metrics=Accuracy\n"
    )
    settings = connections.model_copy(
        update={"model_secret": SecretStr("s3cret"), "influx_db": unique}
    )
    return load_usecase(folder, settings)


async def test_train_then_test_from_files_with_a_binary_safe_model_file(kdd_usecase, tmp_path):
    model = tmp_path / "model.bin"
    report = await run_offline(kdd_usecase, "file", True, False, model, tmp_path)
    assert report.trained_on == 2000 and report.model_version == 1
    assert model.read_bytes().startswith(b"STRM1")

    report = await run_offline(kdd_usecase, "file", False, True, model, tmp_path)
    assert report.tested_on == 1000 and report.skipped_lines == 1
    assert report.metrics["accuracy"] > 0.9
    with (tmp_path / f"{kdd_usecase.name}_resultsTest.csv").open() as results:
        rows = list(csv.reader(results, delimiter=";"))
    assert rows[0][0] == "timestamp" and rows[0][-2:] == ["target", "output"]
    assert len(rows) == 1001

    foreign = kdd_usecase.connections.model_copy(update={"model_secret": SecretStr("other")})
    with pytest.raises(ModelIntegrityError):
        await run_offline(
            load_usecase(kdd_usecase.folder, foreign), "file", False, True, model, tmp_path
        )


async def test_train_from_influxdb_without_wiping_it(kdd_usecase, tmp_path, unique):
    store = AioinfluxStore(kdd_usecase.connections)
    await store.ensure_database()
    try:
        lines = (tmp_path / "train.csv").read_text().splitlines()
        measurement = RecordsMeasurement(unique)
        points = [
            measurement.point(
                line,
                source="kdd",
                topic="t",
                partition=0,
                offset=index,
                event_time_ms=index,
                record_id=f"kdd:{index}",
            )
            for index, line in enumerate(lines)
        ]
        # as the launcher does after its batches: the points up to here are complete
        points.append(measurement.progress_point("t", 0, len(lines) - 1))
        await store.write_lines(points)
        report = await run_offline(kdd_usecase, "influx", True, True, None, tmp_path)
        assert report.trained_on == 2000 and report.metrics["accuracy"] > 0.9
        count = await store.query(f'SELECT count("_record_id") AS n FROM "{unique}"')
        assert count[0]["n"] == 2000
    finally:
        await store.query(f'DROP DATABASE "{unique}"')
        await store.close()


async def test_test_without_any_model_is_a_clear_error(kdd_usecase, tmp_path):
    with pytest.raises(StreamerError, match="no model in Redis to test; train first"):
        await run_offline(kdd_usecase, "file", False, True, None, tmp_path)
