"""What travels on Kafka: header names, dead-letter topics, and the output message.

Input topics carry raw lines (value), the source name (key) and a `record-id` header; with
`labelTopic`, the lines may come without their label and a `Label` follows there later. The
launcher writes one `Output` per input record to `outputTopic`, and a line it cannot parse to
`<topic>.dlq` with `DeadLetter` headers. Readers validate what they read (`Output.decode`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import pydantic_core
from pydantic import BaseModel, ConfigDict, Field, JsonValue

#: Header of every input record: `<source>:<line number>`, stable across replays.
RECORD_ID_HEADER = "record-id"
#: The headers of an input record (written by the producer), for docs/wire-format.md.
INPUT_HEADERS = {
    RECORD_ID_HEADER: "`<source>:<line number>` (1-based line of the data file): the same "
    "record has the same id when the file is replayed",
}

Headers = list[tuple[str, bytes]]


def dead_letter_topic(topic: str) -> str:
    """Where what cannot be used from `topic` goes, with the reason."""
    return f"{topic}.dlq"


def input_id(topic: str, partition: int, offset: int) -> str:
    """The identity of an input record: unique, and the same when it is processed again."""
    return f"{topic}/{partition}/{offset}"


def parse_input_id(text: str) -> tuple[str, int, int]:
    """(topic, partition, offset) of an `input_id`; ValueError naming the text otherwise."""
    topic, _, rest = text.rpartition("/")
    topic, _, partition = topic.rpartition("/")
    if (
        not topic
        or not (partition + rest).isascii()
        or not partition.isdecimal()
        or not rest.isdecimal()
    ):
        raise ValueError(f"{text!r} is not <topic>/<partition>/<offset>")
    return topic, int(partition), int(rest)


def partition_key(topic: str, partition: int) -> str:
    """`<topic>/<partition>`: how positions per partition are keyed in metadata and Redis."""
    return f"{topic}/{partition}"


def record_id_of(headers: Sequence[tuple[str, bytes]] | None) -> str | None:
    """The `record-id` header's text, if the message has one."""
    for key, value in headers or ():
        if key == RECORD_ID_HEADER:
            return value.decode("utf-8", "replace")
    return None


class _Message(BaseModel):
    # readers ignore fields they do not know: a newer writer may add some
    model_config = ConfigDict(frozen=True, extra="ignore")


class Timings(_Message):
    """Epoch milliseconds along the way of one record."""

    produced: int | None = Field(description="the input record's Kafka timestamp")
    consumed: int | None = Field(description="when the launcher took its batch")
    predicted: int | None = Field(description="when the launcher's model predicted it")


class Probabilities(_Message):
    """A classifier's class probabilities for one record, bounded: the most probable classes
    and the predicted one. The evaluator completes the distribution for the classes left out
    (docs/metrics.md, "Probabilities")."""

    top: dict[str, float] = Field(
        description="label -> probability: the `output.probabilities` most probable classes "
        "and the predicted one, by decreasing probability (ties by label)"
    )
    omitted: int = Field(
        0,
        ge=0,
        description="how many other classes the model gave a probability to; they share the "
        "rest of the mass (1 - the sum of `top`) equally",
    )

    @classmethod
    def bounded(
        cls, distribution: Mapping[Any, float] | None, predicted: Any, k: int
    ) -> Probabilities | None:
        """The `k` most probable classes of `distribution` and `predicted` (with its own
        probability, 0 when the distribution lacks it); None without a distribution, with
        k <= 0, or when a probability is not a finite number."""
        if not distribution or k <= 0:
            return None
        ranked: list[tuple[str, float]] = []
        for label, probability in distribution.items():
            value = float(probability)
            if not math.isfinite(value):
                return None
            ranked.append((str(label), value))
        ranked.sort(key=lambda item: (-item[1], item[0]))
        top = dict(ranked[:k])
        if predicted is not None and str(predicted) not in top:
            top[str(predicted)] = float(distribution.get(predicted, 0.0))
        omitted = sum(1 for label, _ in ranked if label not in top)
        return cls(top=top, omitted=omitted)


class Output(_Message):
    """One prediction on `outputTopic` (key: `id`), one per input record."""

    id: str = Field(description="`<topic>/<partition>/<offset>` of the input record")
    record_id: str = Field(description="the input's `record-id` header (else `id`)")
    usecase: str = Field(description="the use case whose launcher predicted")
    source: str = Field(description="the data source (the input message's key)")
    event_time: int | None = Field(description="the record's event time, epoch ms")
    prediction: JsonValue = Field(description="the model's prediction (null: none yet)")
    champion: str | None = Field(
        None,
        description="with challengers: the name (algs.props) of the model that made "
        "`prediction`, the champion",
    )
    challengers: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="with challengers: each challenger's prediction of the record by its name "
        "(shadow predictions, made by the same model version; not post-processed)",
    )
    probabilities: Probabilities | None = Field(
        None,
        description="the champion's class probabilities (classifiers that give them, "
        "`output.probabilities` > 0; null otherwise)",
    )
    challenger_probabilities: dict[str, Probabilities] = Field(
        default_factory=dict,
        description="with challengers: each challenger's class probabilities by its name (those "
        "that give them)",
    )
    targets: list[JsonValue] = Field(description="the record's labels, when it carries them")
    model_version: int | None = Field(description="the model version that predicted")
    staleness: int | None = Field(
        None,
        description="records of this record's input partition, before it, that the predicting "
        "version had not learned (0: fresh; null: unknown)",
    )
    timings: Timings = Field(description="epoch ms along the way of the record")

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @staticmethod
    def encode_fields(
        *,
        id: str,
        record_id: str,
        usecase: str,
        source: str,
        event_time: int | None,
        prediction: JsonValue,
        champion: str | None,
        challengers: dict[str, JsonValue],
        probabilities: Probabilities | None,
        challenger_probabilities: dict[str, Probabilities],
        targets: list[JsonValue],
        model_version: int | None,
        staleness: int | None,
        produced: int | None,
        consumed: int | None,
        predicted: int | None,
    ) -> bytes:
        """The bytes of `Output(...).encode()` (the timings' three fields flattened), without
        building and validating the model: the launcher writes one output per record from
        values of the right types (0.9 us a record, against 4.9 us for the model;
        tests/unit/test_wire_kafka.py checks both encodings agree, field for field)."""
        return pydantic_core.to_json(
            {
                "id": id,
                "record_id": record_id,
                "usecase": usecase,
                "source": source,
                "event_time": event_time,
                "prediction": prediction,
                "champion": champion,
                "challengers": challengers,
                "probabilities": probabilities,
                "challenger_probabilities": challenger_probabilities,
                "targets": targets,
                "model_version": model_version,
                "staleness": staleness,
                "timings": {"produced": produced, "consumed": consumed, "predicted": predicted},
            },
            inf_nan_mode="null",  # as the model's JSON: NaN and infinities are not JSON
        )

    @classmethod
    def decode(cls, value: bytes | None) -> Output:
        """Validate one message (pydantic.ValidationError says what is wrong)."""
        return cls.model_validate_json(value or b"")


class Label(_Message):
    """A record's label, arriving later on `labelTopic` (key: the source; header `record-id`):
    the trainer learns the record and the evaluator scores its prediction when it arrives."""

    record_id: str = Field(description="the `record-id` of the record it labels")
    targets: list[str] = Field(
        min_length=1,
        description="the record's target columns, as the data file has them (the record class "
        "reads them as it reads a labelled line)",
    )

    def encode(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def decode(cls, value: bytes | None) -> Label:
        """Validate one message (pydantic.ValidationError says what is wrong)."""
        return cls.model_validate_json(value or b"")


class DeadLetter(_Message):
    """The headers of a dead letter; its value is the original bytes, unchanged."""

    error: str = Field(description="why the message could not be used")
    source_topic: str = Field(description="where the message was read")
    source_partition: int = Field(description="its partition there")
    source_offset: int = Field(description="its offset there")
    usecase: str = Field(description="the use case that could not use it")
    record_id: str | None = Field(None, description="its `record-id` header, when it had one")

    def headers(self) -> Headers:
        headers = [
            ("error", self.error.encode()),
            ("source-topic", self.source_topic.encode()),
            ("source-partition", str(self.source_partition).encode()),
            ("source-offset", str(self.source_offset).encode()),
            ("usecase", self.usecase.encode()),
        ]
        if self.record_id is not None:
            headers.append((RECORD_ID_HEADER, self.record_id.encode()))
        return headers

    @classmethod
    def from_headers(cls, headers: Sequence[tuple[str, bytes]]) -> DeadLetter:
        values = {key.replace("-", "_"): value.decode("utf-8", "replace") for key, value in headers}
        return cls.model_validate(values)
