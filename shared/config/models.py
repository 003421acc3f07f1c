"""Typed models of a use case's props files, keyed by the original STREAMER's key names.

Field aliases are the original keys (`mainTopic`, `training.interval`, ...), so an original setup
folder validates unchanged. Where the original had no default (a missing key crashed it) we use
the value it ships in its own setup files, or a documented safer one; docs/configuration.md lists
each key.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer

from shared.labels import Delay, parse_delay


def _split_commas(value: Any) -> Any:
    """`a, b,c` -> ["a", "b", "c"]; the original's comma lists (topics, metrics, thresholds)."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


CommaList = Annotated[list[str], BeforeValidator(_split_commas)]
#: Alias of the challengers' parameters: `<challenger>.<param>` keys, gathered by challenger.
CHALLENGER_PARAMS = "<challenger>.*"
FloatList = Annotated[list[float], BeforeValidator(_split_commas)]
IntList = Annotated[list[int], BeforeValidator(_split_commas)]
BoolList = Annotated[list[bool], BeforeValidator(_split_commas)]
#: `1000` (records) or `5s`, `250ms`, `2m`, `1h` (time): shared/labels.py
DelaySetting = Annotated[Delay, BeforeValidator(parse_delay), PlainSerializer(str)]
#: label.timeout when not set: bounded memory by default
DEFAULT_LABEL_TIMEOUT = Delay(records=100_000)


class ProducerType(StrEnum):
    """How the producer paces the replay of `datafile`."""

    BLOCK = "BLOCK"  # recordsPerBlock lines every producerTimeInterval ms
    BLOCKBYGROUP = "BLOCKBYGROUP"  # like BLOCK, but a block never mixes two groups
    TIMESTAMP = "TIMESTAMP"  # paced by the records' own timestamps
    FAST = "FAST"  # as fast as the broker takes it (benchmarks)


def _normalize_producer_type(value: Any) -> Any:
    # The original removes spaces before comparing; we also accept any letter case.
    return value.replace(" ", "").upper() if isinstance(value, str) else value


class PropsModel(BaseModel):
    """The model of one props file (streaming, algs, monitoring, federated)."""

    # nan/inf are never meaningful settings (a threshold of nan would never fire)
    model_config = ConfigDict(
        populate_by_name=True, frozen=True, extra="forbid", allow_inf_nan=False
    )

    @classmethod
    def known_keys(cls) -> set[str]:
        return {field.alias or name for name, field in cls.model_fields.items()}


class StreamingConfig(PropsModel):
    """streaming.props: Kafka, producer pacing, record type and the online switches."""

    bootstrap_servers: str = Field(
        "127.0.0.1:19092", alias="bootstrap.servers", description="Kafka brokers."
    )
    group_id: str | None = Field(
        None, alias="group.id", description="Launcher consumer group (default streamer-<usecase>)."
    )
    main_topics: CommaList = Field(
        alias="mainTopic", min_length=1, description="Input topic(s); each record goes to all."
    )
    output_topic: str = Field(alias="outputTopic", min_length=1, description="Predictions topic.")
    producer_type: Annotated[ProducerType, BeforeValidator(_normalize_producer_type)] = Field(
        ProducerType.BLOCK, alias="producerType"
    )
    datafile: Path | None = Field(None, description="File the producer replays (.gz read as is).")
    contains_header: bool = Field(False, alias="containsHeader")
    max_blocks: int = Field(-1, alias="maxBlocks", ge=-1, description="-1: until the file ends.")
    records_per_block: int = Field(50, alias="recordsPerBlock", ge=1)
    producer_time_interval: int = Field(
        10000, alias="producerTimeInterval", ge=0, description="ms between two blocks."
    )
    epsilonne: float = Field(0.0, description="TIMESTAMP: ms added to each original gap.")
    scale: float = Field(1.0, gt=0, description="TIMESTAMP: the gap is divided by this.")
    topic_partitions: int = Field(
        1, alias="topic.partitions", ge=1, description="Partitions of the topics we create."
    )
    reading_time_interval: int = Field(
        100, alias="readingTimeInterval", ge=0, description="Longest wait for a batch, ms."
    )
    problem_type: str = Field(alias="problem.type", min_length=1, description="Record class.")
    prepostprocessor: str | None = Field(None, alias="consumer.prepostprocessor")
    visualization: bool = False
    online_train: bool = Field(True, alias="online.train")
    online_inference: bool = Field(True, alias="online.inference")
    launcher_learn: bool = Field(
        False,
        alias="launcher.learn",
        description="The launcher learns test-then-train itself (one launcher, no staleness).",
    )
    launcher_transactions: bool = Field(
        True,
        alias="launcher.transactions",
        description="Outputs, dead letters and input offsets in one Kafka transaction "
        "(exactly-once predictions); false: at least once.",
    )
    launcher_max_staleness: int = Field(
        2000,
        alias="launcher.max.staleness",
        ge=-1,
        description="A launcher waits for a newer version rather than predict with one more "
        "records behind; -1: never waits.",
    )
    output_probabilities: int = Field(
        3,
        alias="output.probabilities",
        ge=0,
        description="Classifiers' outputs carry the probabilities of this many most probable "
        "classes and of the predicted one; 0: none.",
    )
    label_topic: str | None = Field(
        None,
        alias="labelTopic",
        min_length=1,
        description="Labels arrive later on this topic, joined to the records by record id; "
        "records on mainTopic may then come without their label (docs/pipeline.md).",
    )
    label_delay: DelaySetting | None = Field(
        None,
        alias="label.delay",
        description="The producer holds each record's label back this long (records or time) "
        "and sends it on labelTopic.",
    )
    label_timeout: DelaySetting = Field(
        DEFAULT_LABEL_TIMEOUT,
        alias="label.timeout",
        description="A record (or label) waiting longer than this (records or time) for its "
        "label (or record) is dropped and counted.",
    )
    # Kafka client tuning keys of the original's files that have an aiokafka equivalent.
    linger_ms: int | None = Field(None, alias="linger.ms", ge=0)
    batch_size: int | None = Field(None, alias="batch.size", ge=1)
    session_timeout_ms: int | None = Field(None, alias="session.timeout.ms", ge=1)
    fetch_min_bytes: int | None = Field(None, alias="fetch.min.bytes", ge=1)
    max_partition_fetch_bytes: int | None = Field(None, alias="max.partition.fetch.bytes", ge=1)
    max_poll_records: int | None = Field(None, alias="max.poll.records", ge=1)
    max_poll_interval_ms: int | None = Field(None, alias="max.poll.interval.ms", ge=1)

    def problems(self) -> list[tuple[str, str]]:
        found = []
        if self.label_topic is None:
            if self.label_delay is not None:
                found.append(("label.delay", "holds labels back for labelTopic: set labelTopic"))
            return found
        if self.label_topic in self.main_topics or self.label_topic == self.output_topic:
            found.append(("labelTopic", "must differ from mainTopic and outputTopic"))
        if self.launcher_learn:
            found.append(
                (
                    "launcher.learn",
                    "learns each record as it is predicted, which needs its label: not with "
                    "labelTopic (the trainer learns each record when its label arrives)",
                )
            )
        if self.label_delay is not None and self.label_delay.records == 0:
            found.append(("label.delay", "must be at least 1 record (or a time)"))
        for key, delay in (("label.timeout", self.label_timeout),):
            if delay.records == 0 or delay.seconds == 0:
                found.append((key, "must be more than 0"))
        return found


class RetrainStrategy(StrEnum):
    """What the trainer learns from when a retrain is asked for (docs/monitoring.md)."""

    WINDOW = "window"  # a refit on the most recent training.maxdata stored records
    SINCE_CHANGE = "since-change"  # a fresh model on the records from the estimated change on
    RESET = "reset"  # a fresh model from the current positions
    CHALLENGER = "challenger"  # a fresh challenger, promoted by the rule once it scores better


class AlgsConfig(PropsModel):
    """algs.props: which algorithm, how often it retrains, on how much data, how it is scored."""

    algorithm: str = Field(min_length=1, description="Algorithm name or dotted path.")
    algorithm_params: dict[str, str] = Field(
        default_factory=dict,
        alias="algorithm.*",
        description="Every `algorithm.<name>=<value>` key, passed to the algorithm.",
    )
    challengers: CommaList = Field(
        default_factory=list,
        description="Algorithms scored beside the champion (`algorithm`) on every record, "
        "trained the same way (docs/pipeline.md).",
    )
    challenger_params: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        alias=CHALLENGER_PARAMS,
        description="Every `<challenger>.<param>=<value>` key, by challenger.",
    )
    promotion_metric: str | None = Field(
        None,
        alias="promotion.metric",
        min_length=1,
        description="The metric of the automatic promotion rule; none: promotions by hand only.",
    )
    promotion_margin: float = Field(
        0.01,
        alias="promotion.margin",
        ge=0,
        description="How much better (window view) a challenger must be to be promoted.",
    )
    promotion_min_records: int = Field(
        1000,
        alias="promotion.min-records",
        ge=1,
        description="Records both models must have scored since the champion last changed.",
    )
    training_interval: int = Field(
        60000, alias="training.interval", description="ms between trainings; < 0: on request only."
    )
    training_maxdata: int = Field(
        -1, alias="training.maxdata", description="Most recent records to train on; -1: all."
    )
    training_source: Path | None = Field(None, alias="training.source")
    publish_interval: int = Field(
        1000,
        alias="model.publish.interval",
        ge=1,
        description="ms between two versions of a streaming model (when it learnt something).",
    )
    publish_records: int = Field(
        -1,
        alias="model.publish.records",
        ge=-1,
        description="Also publish after this many records learnt; -1: by time only.",
    )
    retrain_strategy: RetrainStrategy = Field(
        RetrainStrategy.SINCE_CHANGE,
        alias="retrain.strategy",
        description="What a retrain learns: window, since-change, reset, challenger "
        "(docs/monitoring.md).",
    )
    retrain_min_records: int = Field(
        200,
        alias="retrain.min-records",
        ge=1,
        description="since-change starts at least this many records before the newest ones.",
    )
    checkpoint_interval: int = Field(
        10000,
        alias="model.checkpoint.interval",
        ge=0,
        description="ms between two checkpoints of the full streaming model (resume point).",
    )
    model_keep: int = Field(
        5, alias="model.keep", ge=1, description="Model versions kept in Redis (older deleted)."
    )
    evaluation_metrics: CommaList = Field(default_factory=list, alias="evaluation.metrics")
    classes_number: int | None = Field(None, alias="classes.number", ge=2)
    evaluation_window: int = Field(
        1000, alias="evaluation.window", ge=1, description="Records in the sliding-window view."
    )
    evaluation_sample: float = Field(
        0.01, alias="evaluation.sample", ge=0, le=1, description="Share of predictions indexed."
    )

    @classmethod
    def known_keys(cls) -> set[str]:
        """`<challenger>.<param>` keys depend on `challengers`: see `claim_key`."""
        return super().known_keys() - {CHALLENGER_PARAMS}

    @staticmethod
    def claim_key(key: str, values: dict[str, Any]) -> tuple[str, str, str] | None:
        """(field alias, challenger, parameter) for a `<challenger>.<param>` key of a challenger
        listed in `challengers` (the longest name wins: `moa.HoeffdingTree.grace_period` is
        `grace_period` of `moa.HoeffdingTree`); None for any other key."""
        names = _split_commas(values.get("challengers") or [])
        owners = [name for name in names if key.startswith(name + ".") and len(key) > len(name) + 1]
        if not owners:
            return None
        owner = max(owners, key=len)
        return CHALLENGER_PARAMS, owner, key[len(owner) + 1 :]

    def problems(self) -> list[tuple[str, str]]:
        found = []
        seen = {self.algorithm}
        for name in self.challengers:
            if name in seen:
                reason = (
                    f"{name} is listed twice, or is the champion (algorithm): each model needs "
                    "its own name"
                )
                found.append(("challengers", reason))
            seen.add(name)
        challenging = self.retrain_strategy is RetrainStrategy.CHALLENGER
        if not self.challengers and not challenging and self.promotion_metric is not None:
            found.append(
                (
                    "promotion.metric",
                    "promotes a challenger: set challengers (or retrain.strategy=challenger) too",
                )
            )
        if self.training_maxdata == 0 or self.training_maxdata < -1:
            found.append(("training.maxdata", "must be -1 (all records) or a positive count"))
        if self.publish_records == 0:
            found.append(("model.publish.records", "must be -1 (by time only) or a positive count"))
        if challenging and self.promotion_metric is None:
            found.append(
                (
                    "retrain.strategy",
                    "challenger: a retrain challenger replaces the champion through the "
                    "promotion rule: set promotion.metric (and promotion.margin, "
                    "promotion.min-records)",
                )
            )
        return found


class DetectorName(StrEnum):
    THRESHOLD = "ThresholdDetector"
    CUSUM = "CuSumDetector"
    CUSUM_ONLINE = "CuSumDetectorOnLine"
    ADWIN = "ADWIN"
    PAGE_HINKLEY = "PageHinkley"
    KSWIN = "KSWIN"


class MonitoringConfig(PropsModel):
    """monitoring.props: detectors watching metrics; per use case (the original had one file)."""

    metrics: CommaList = Field(default_factory=list)
    detector: DetectorName | None = None
    view: Literal["batch", "cumulative", "window"] = Field(
        "batch", alias="monitoring.view", description="Which metric view the detector watches."
    )
    alert_cooldown: int = Field(
        60000, alias="alert.cooldown", ge=0, description="ms between two retrains one alert asks."
    )
    threshold_robustness: IntList | None = Field(None, alias="threshold.robustness")
    threshold_threshold: FloatList | None = Field(None, alias="threshold.threshold")
    threshold_alert_if_greater: BoolList | None = Field(
        None, alias="threshold.threshold.alert-if-greater"
    )
    threshold_abs: BoolList | None = Field(None, alias="threshold.threshold.abs")
    cusum_drift: FloatList | None = Field(None, alias="cusum.drift")
    cusum_factor: float = Field(5.0, alias="cusum.factor", gt=0)
    cusum_threshold: FloatList | None = Field(None, alias="cusum.threshold")
    cusum_robustness: IntList | None = Field(None, alias="cusum.robustness")
    cusumonline_drift: FloatList | None = Field(None, alias="cusumonline.drift")
    cusumonline_factor: float = Field(5.0, alias="cusumonline.factor", gt=0)
    cusumonline_std: FloatList | None = Field(None, alias="cusumonline.std")
    cusumonline_average: FloatList | None = Field(None, alias="cusumonline.average")
    cusumonline_threshold: FloatList | None = Field(None, alias="cusumonline.threshold")
    cusumonline_robustness: IntList | None = Field(None, alias="cusumonline.robustness")

    def robustness(self) -> list[int] | None:
        """The detector's own robustness key, else `threshold.robustness` (the original's)."""
        own_keys: dict[DetectorName | None, list[int] | None] = {
            DetectorName.CUSUM: self.cusum_robustness,
            DetectorName.CUSUM_ONLINE: self.cusumonline_robustness,
        }
        own = own_keys.get(self.detector)
        return own or self.threshold_robustness

    def problems(self) -> list[tuple[str, str]]:
        """Rules across keys: what a detector needs, and per-metric list lengths."""
        if self.detector is None:
            return []
        found: list[tuple[str, str]] = []
        if not self.metrics:
            found.append(("metrics", f"required when detector={self.detector.value}"))
        needed: dict[DetectorName, list[str]] = {
            DetectorName.THRESHOLD: [
                "threshold.threshold",
                "threshold.threshold.alert-if-greater",
                "threshold.threshold.abs",
            ],
            DetectorName.CUSUM: ["cusum.drift"],
            DetectorName.CUSUM_ONLINE: ["cusumonline.drift"],
        }
        values = self.model_dump(by_alias=True)
        for key in needed.get(self.detector, []):
            if values[key] is None:
                found.append((key, f"required when detector={self.detector.value}"))
        classic = (DetectorName.THRESHOLD, DetectorName.CUSUM, DetectorName.CUSUM_ONLINE)
        if self.detector in classic and self.robustness() is None:
            found.append(("threshold.robustness", "required (or the detector's own key)"))
        if self.detector is DetectorName.CUSUM_ONLINE and self.cusumonline_average is None:
            found.append(("cusumonline.average", "required when detector=CuSumDetectorOnLine"))
        for key in ("cusum.drift", "cusumonline.drift"):
            if any(value < 0 for value in values[key] or []):
                found.append((key, "must be >= 0 (an allowance in standard deviations)"))
        per_metric = (1, len(self.metrics))
        for key, value in values.items():
            if isinstance(value, list) and key != "metrics" and len(value) not in per_metric:
                reason = f"needs 1 value or one per metric ({len(self.metrics)}), got {len(value)}"
                found.append((key, reason))
        return found


class FederatedConfig(PropsModel):
    """federated.props: the original's federated mode (docs/federated.md). A file with
    `server.address` makes its use case a client (its trainer joins that server instead of
    learning the stream); without it, the use case is a server (`streamer federate server`)."""

    # ---- server ----
    server_port: int = Field(
        8080, alias="server.port", ge=1, le=65535, description="Port the server listens on."
    )
    server_host: str = Field(
        "127.0.0.1", alias="server.host", description="Address the server binds (0.0.0.0: all)."
    )
    n_rounds: int | None = Field(None, alias="n.rounds", ge=1, description="Rounds to run.")
    aggregation_strategy: str = Field(
        "FedAvgStrategy",
        alias="aggregation.strategy",
        min_length=1,
        description="FedAvgStrategy (the original's name for FedAvg) or a Flower strategy class.",
    )
    aggregation_params: dict[str, str] = Field(
        default_factory=dict,
        alias="aggregation.*",
        description="Every `aggregation.<name>=<value>` key, passed to the strategy.",
    )
    n_clients: int = Field(
        -1, alias="n.clients", ge=-1, description="Clients sampled per round; -1: all."
    )
    min_n_clients: int = Field(
        1, alias="min.n.clients", ge=1, description="A round waits for this many clients."
    )
    round_timeout: int = Field(
        60000, alias="round.timeout", ge=1, description="ms a round waits for its clients."
    )
    round_interval: int = Field(
        0, alias="round.interval", ge=0, description="Least ms between two rounds' starts."
    )
    do_client_fit_step: bool = Field(True, alias="do.client.fit.step")
    do_client_eval_step: bool = Field(True, alias="do.client.eval.step")
    do_server_eval_step: bool = Field(False, alias="do.server.eval.step")
    # ---- client ----
    server_address: str | None = Field(
        None, alias="server.address", description="host:port of the server: makes a client."
    )
    data_type: str | None = Field(
        None, alias="data.type", description="Where a client's data comes from: influx."
    )
    local_epochs: int = Field(
        1, alias="local.epochs", ge=1, description="Passes over the local records per round."
    )

    @property
    def is_client(self) -> bool:
        return self.server_address is not None

    def problems(self) -> list[tuple[str, str]]:
        found = []
        if not self.is_client and self.n_rounds is None:
            found.append(("n.rounds", "required for a server (a file without server.address)"))
        if self.n_clients != -1 and self.n_clients < self.min_n_clients:
            found.append(("n.clients", "must be -1 (all) or at least min.n.clients"))
        if self.data_type not in (None, "influx"):
            found.append(
                ("data.type", "only influx: a client learns the records its launcher stored")
            )
        if self.server_address is not None and ":" not in self.server_address:
            found.append(("server.address", "must be host:port"))
        return found
