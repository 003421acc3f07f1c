"""Use-case configuration: good folders load typed, bad ones fail with exact, located messages."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from shared.config import (
    ConnectionSettings,
    DetectorName,
    ProducerType,
    RetrainStrategy,
    load_usecase,
)
from shared.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

STREAMING = """\
mainTopic=in1, in2
outputTopic=out
problem.type=Generic
recordsPerBlock=20
"""
ALGS = "algorithm=HoeffdingTreeClassifier\n"


def make_usecase(root: Path, streaming=STREAMING, algs=ALGS, monitoring=None, name="uc") -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "streaming.props").write_text(streaming)
    (folder / "algs.props").write_text(algs)
    if monitoring is not None:
        (folder / "monitoring.props").write_text(monitoring)
    return folder


def messages(error: pytest.ExceptionInfo[ConfigError], folder: Path) -> list[str]:
    """Issue texts with the folder prefix removed, so tests can compare them exactly."""
    return [str(issue).replace(f"{folder}/", "") for issue in error.value.issues]


def settings(tmp_path: Path, **overrides) -> ConnectionSettings:
    return ConnectionSettings(usecases_dir=tmp_path, data_dir=tmp_path / "data", **overrides)


def test_minimal_usecase_gets_typed_values_and_the_original_defaults(tmp_path):
    make_usecase(tmp_path)
    usecase = load_usecase("uc", settings(tmp_path))
    assert usecase.name == "uc"
    assert usecase.streaming.main_topics == ["in1", "in2"]
    assert usecase.streaming.records_per_block == 20
    assert usecase.streaming.producer_type is ProducerType.BLOCK
    assert usecase.streaming.online_train is True
    assert usecase.streaming.reading_time_interval == 100
    assert usecase.algs.training_maxdata == -1
    assert usecase.algs.retrain_strategy is RetrainStrategy.SINCE_CHANGE
    assert usecase.algs.retrain_min_records == 200
    assert usecase.monitoring is None
    assert usecase.group_id == "streamer-uc"
    assert usecase.warnings == ()


def test_wrong_value_names_file_line_key_and_reason(tmp_path):
    folder = make_usecase(tmp_path, streaming=STREAMING.replace("=20", "=abc"))
    with pytest.raises(ConfigError) as error:
        load_usecase(folder, settings(tmp_path))
    assert messages(error, folder) == [
        "streaming.props:4: recordsPerBlock: Input should be a valid integer, "
        "unable to parse string as an integer (got 'abc')"
    ]
    assert error.value.exit_code == 2


def test_every_problem_of_every_file_is_reported_at_once(tmp_path):
    streaming = "outputTopic=out\nproblem.type=Generic\nproducerType=SOMETIMES\nscale=0\n"
    folder = make_usecase(tmp_path, streaming=streaming, algs="training.interval=soon\n")
    with pytest.raises(ConfigError) as error:
        load_usecase(folder, settings(tmp_path))
    assert messages(error, folder) == [
        "streaming.props: mainTopic: required key is missing",
        "streaming.props:3: producerType: Input should be 'BLOCK', 'BLOCKBYGROUP', 'TIMESTAMP' "
        "or 'FAST' (got 'SOMETIMES')",
        "streaming.props:4: scale: Input should be greater than 0 (got '0')",
        "algs.props: algorithm: required key is missing",
        "algs.props:1: training.interval: Input should be a valid integer, unable to parse string "
        "as an integer (got 'soon')",
    ]


def test_empty_required_value_is_reported_as_empty(tmp_path):
    folder = make_usecase(tmp_path, streaming=STREAMING.replace("outputTopic=out", "outputTopic="))
    with pytest.raises(ConfigError) as error:
        load_usecase(folder, settings(tmp_path))
    assert messages(error, folder) == ["streaming.props:2: outputTopic: value is empty"]


def test_missing_props_file_and_missing_folder(tmp_path):
    folder = make_usecase(tmp_path)
    (folder / "algs.props").unlink()
    with pytest.raises(ConfigError) as error:
        load_usecase(folder, settings(tmp_path))
    assert messages(error, folder) == ["algs.props: algs.props: file is missing"]
    with pytest.raises(ConfigError, match="no use-case folder 'nowhere'"):
        load_usecase("nowhere", settings(tmp_path))


def test_unknown_key_is_a_warning_with_a_suggestion(tmp_path, caplog):
    folder = make_usecase(tmp_path, streaming=STREAMING + "readingTimeIntervall=5\n")
    with caplog.at_level(logging.WARNING):
        usecase = load_usecase(folder, settings(tmp_path))
    expected = (
        f"{folder}/streaming.props:5: readingTimeIntervall: unknown key, ignored "
        "(did you mean 'readingTimeInterval'?)"
    )
    assert usecase.warnings == (expected,)
    assert expected in caplog.messages
    assert usecase.streaming.reading_time_interval == 100


def test_java_only_kafka_keys_are_accepted_silently_and_tuning_keys_are_typed(tmp_path):
    java_keys = (
        "key.serializer=org.apache.kafka.common.serialization.StringSerializer\n"
        "value.deserializer=org.apache.kafka.common.serialization.StringDeserializer\n"
        "application.id=test\nacks=all\nretries=0\nblock.on.buffer.full=true\n"
        "linger.ms=7\nsession.timeout.ms=10000\n"
    )
    folder = make_usecase(tmp_path, streaming=STREAMING + java_keys)
    usecase = load_usecase(folder, settings(tmp_path))
    assert usecase.warnings == ()
    assert usecase.streaming.linger_ms == 7
    assert usecase.streaming.session_timeout_ms == 10000


def test_environment_overrides_connection_settings(tmp_path, monkeypatch):
    folder = make_usecase(tmp_path, streaming=STREAMING + "bootstrap.servers=localhost:9092\n")
    assert load_usecase(folder, settings(tmp_path)).bootstrap_servers == "localhost:9092"
    monkeypatch.setenv("STREAMER_KAFKA_BOOTSTRAP", "kafka:29092")
    monkeypatch.setenv("STREAMER_REDIS_URL", "redis://redis:6379/1")
    monkeypatch.setenv("STREAMER_ES_PASSWORD", "s3cret")
    usecase = load_usecase(folder, ConnectionSettings(usecases_dir=tmp_path))
    assert usecase.bootstrap_servers == "kafka:29092"
    assert usecase.connections.redis_url == "redis://redis:6379/1"
    resolved = usecase.resolved()
    assert resolved["connections"]["es_password"] == "**********"
    assert "s3cret" not in repr(resolved)


def test_paths_resolve_against_the_usecase_folder_and_the_data_dir(tmp_path, monkeypatch):
    streaming = STREAMING + "datafile=${STREAMER_DATA_DIR}/set/file.csv\n"
    algs = ALGS + "training.source=train.csv\n"
    folder = make_usecase(tmp_path, streaming=streaming, algs=algs)
    usecase = load_usecase(folder, settings(tmp_path))
    assert usecase.streaming.datafile == (tmp_path / "data" / "set" / "file.csv").resolve()
    assert usecase.algs.training_source == folder / "train.csv"
    assert usecase.warnings == (
        f"{folder}/streaming.props: datafile: {usecase.streaming.datafile} does not exist",
    )


def test_unset_variable_is_an_error_unless_it_has_a_default(tmp_path, monkeypatch):
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    streaming = STREAMING + "outputTopic=${NOT_SET_ANYWHERE}\n"
    folder = make_usecase(tmp_path, streaming=streaming)
    with pytest.raises(ConfigError) as error:
        load_usecase(folder, settings(tmp_path))
    assert messages(error, folder) == [
        "streaming.props:5: outputTopic: environment variable NOT_SET_ANYWHERE is not set"
    ]
    (folder / "streaming.props").write_text(STREAMING + "outputTopic=${NOT_SET_ANYWHERE:-fallback}")
    assert load_usecase(folder, settings(tmp_path)).streaming.output_topic == "fallback"


def test_algorithm_parameters_are_collected(tmp_path):
    algs = ALGS + "algorithm.grace_period=50\nalgorithm.delta=1e-5\ntraining.maxdata=-2\n"
    folder = make_usecase(tmp_path, algs=algs)
    with pytest.raises(ConfigError) as error:
        load_usecase(folder, settings(tmp_path))
    assert messages(error, folder) == [
        "algs.props:4: training.maxdata: must be -1 (all records) or a positive count"
    ]
    (folder / "algs.props").write_text(algs.replace("-2", "1000"))
    usecase = load_usecase(folder, settings(tmp_path))
    assert usecase.algs.algorithm_params == {"grace_period": "50", "delta": "1e-5"}


def test_challengers_take_their_parameters_by_name_wherever_the_keys_are(tmp_path, caplog):
    algs = (
        "moa.HoeffdingTree.grace_period=50\n"  # before `challengers`: the order does not matter
        "algorithm=HoeffdingTreeClassifier\n"
        "algorithm.grace_period=200\n"
        "challengers=moa.HoeffdingTree, river.tree.HoeffdingTreeClassifier\n"
        "river.tree.HoeffdingTreeClassifier.max_depth=10\n"
        "moa.HoeffdingTree.split_criterion=GiniSplitCriterion\n"
        "moa.HoefdingTree.confidence=0.01\n"  # no such challenger: an unknown key
        "promotion.metric=accuracy\npromotion.margin=0.02\npromotion.min-records=500\n"
    )
    folder = make_usecase(tmp_path, algs=algs)
    with caplog.at_level(logging.WARNING):
        algs_config = load_usecase(folder, settings(tmp_path)).algs
    assert algs_config.challengers == ["moa.HoeffdingTree", "river.tree.HoeffdingTreeClassifier"]
    assert algs_config.challenger_params == {
        "moa.HoeffdingTree": {"grace_period": "50", "split_criterion": "GiniSplitCriterion"},
        "river.tree.HoeffdingTreeClassifier": {"max_depth": "10"},
    }
    assert algs_config.algorithm_params == {"grace_period": "200"}
    assert (algs_config.promotion_metric, algs_config.promotion_margin) == ("accuracy", 0.02)
    assert algs_config.promotion_min_records == 500
    assert "algs.props:7: moa.HoefdingTree.confidence: unknown key, ignored" in caplog.text


def test_a_model_needs_its_own_name_and_promotion_needs_challengers(tmp_path):
    algs = ALGS + "challengers=KNN, HoeffdingTreeClassifier, KNN\npromotion.margin=-1\n"
    folder = make_usecase(tmp_path, algs=algs)
    with pytest.raises(ConfigError) as error:
        load_usecase(folder, settings(tmp_path))
    twice = "is listed twice, or is the champion (algorithm): each model needs its own name"
    assert messages(error, folder) == [
        "algs.props:3: promotion.margin: Input should be greater than or equal to 0 (got '-1')",
    ]
    (folder / "algs.props").write_text(ALGS + "challengers=KNN, HoeffdingTreeClassifier, KNN\n")
    with pytest.raises(ConfigError) as error:
        load_usecase(folder, settings(tmp_path))
    assert messages(error, folder) == [
        f"algs.props:2: challengers: HoeffdingTreeClassifier {twice}",
        f"algs.props:2: challengers: KNN {twice}",
    ]
    (folder / "algs.props").write_text(ALGS + "promotion.metric=accuracy\n")
    with pytest.raises(ConfigError) as error:
        load_usecase(folder, settings(tmp_path))
    assert messages(error, folder) == [
        "algs.props:2: promotion.metric: promotes a challenger: set challengers (or "
        "retrain.strategy=challenger) too"
    ]


THRESHOLD = """\
metrics=Accuracy,MacroF1
detector=ThresholdDetector
threshold.robustness=3
threshold.threshold=0.9, 0.8
threshold.threshold.alert-if-greater=false
threshold.threshold.abs=false
"""


def test_monitoring_props_are_typed_per_metric(tmp_path):
    folder = make_usecase(tmp_path, monitoring=THRESHOLD)
    monitoring = load_usecase(folder, settings(tmp_path)).monitoring
    assert monitoring is not None
    assert monitoring.detector is DetectorName.THRESHOLD
    assert monitoring.threshold_threshold == [0.9, 0.8]
    assert monitoring.threshold_alert_if_greater == [False]
    assert monitoring.robustness() == [3]


def test_monitoring_cross_key_rules(tmp_path):
    monitoring = THRESHOLD.replace("threshold.threshold=0.9, 0.8\n", "").replace(
        "robustness=3", "robustness=3,2,1"
    )
    folder = make_usecase(tmp_path, monitoring=monitoring)
    with pytest.raises(ConfigError) as error:
        load_usecase(folder, settings(tmp_path))
    assert messages(error, folder) == [
        "monitoring.props: threshold.threshold: required when detector=ThresholdDetector",
        "monitoring.props:3: threshold.robustness: needs 1 value or one per metric (2), got 3",
    ]


def test_retrain_strategies_and_a_retrain_challenger_needs_the_promotion_rule(tmp_path):
    folder = make_usecase(tmp_path, algs=ALGS + "retrain.strategy=reset\nretrain.min-records=50\n")
    usecase = load_usecase(folder, settings(tmp_path))
    assert usecase.algs.retrain_strategy is RetrainStrategy.RESET
    assert usecase.algs.retrain_min_records == 50
    folder = make_usecase(tmp_path, algs=ALGS + "retrain.strategy=challenger\n", name="uc2")
    with pytest.raises(ConfigError) as error:
        load_usecase(folder, settings(tmp_path))
    (message,) = messages(error, folder)
    assert message.startswith("algs.props:2: retrain.strategy: challenger: a retrain challenger")
    assert "set promotion.metric" in message
    folder = make_usecase(
        tmp_path, algs=ALGS + "retrain.strategy=challenger\npromotion.metric=accuracy\n", name="uc3"
    )
    usecase = load_usecase(folder, settings(tmp_path))  # no challengers listed: allowed
    assert usecase.algs.retrain_strategy is RetrainStrategy.CHALLENGER


def test_each_cusum_detector_reads_its_own_robustness_key(tmp_path):
    monitoring = "metrics=MAE\ndetector=CuSumDetector\ncusum.drift=0.1\nthreshold.robustness=4\n"
    folder = make_usecase(tmp_path, monitoring=monitoring + "cusum.robustness=2\n")
    assert load_usecase(folder, settings(tmp_path)).monitoring.robustness() == [2]
    (folder / "monitoring.props").write_text(monitoring)  # the original's files: fall back
    assert load_usecase(folder, settings(tmp_path)).monitoring.robustness() == [4]


def test_shipped_kdd_usecase_loads(data_dir):
    usecase = load_usecase(REPO / "usecases" / "kdd-cup-99", ConnectionSettings(data_dir=data_dir))
    assert usecase.streaming.problem_type == "KDDClassification"
    expected = (data_dir / "kdd-cup-99" / "kddcup.data_10_percent.gz").resolve()
    assert usecase.streaming.datafile == expected
    assert usecase.algs.classes_number == 23
    assert usecase.monitoring is not None and usecase.monitoring.metrics == ["Accuracy"]


def test_original_streamer_setup_folder_loads_unchanged(data_dir):
    """The original's kdd-cup-99_23class keys (Java Kafka keys included) load without warnings."""
    folder = REPO / "usecases" / "kdd-cup-99_23class"
    usecase = load_usecase(folder, ConnectionSettings(data_dir=data_dir))
    assert usecase.streaming.main_topics == ["topic_kddmulticlass"]
    assert usecase.streaming.output_topic == "OutputPlatformKDDB"
    assert usecase.streaming.contains_header is True
    assert usecase.streaming.prepostprocessor is None
    assert usecase.streaming.fetch_min_bytes == 50000
    assert usecase.algs.evaluation_metrics[0] == "AccuracyMultiClassClassificationMetric"
    unexpected = [w for w in usecase.warnings if "does not exist" not in w]
    assert unexpected == []
