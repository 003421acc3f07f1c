"""What the API answers, as pydantic models: they are the OpenAPI schema clients generate from,
so every field says what it holds. /health answers shared.health.Health, the read model that
`streamer status` and the dashboard share."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from shared.wire.federated import RoundRow
from shared.wire.store import ModelMeta

# A props value in a PATCH body: text as in a props file, or a JSON number/bool/list that is
# turned into that text (`500` -> "500", `true` -> "true", `["a", "b"]` -> "a,b").
Scalar = StrictBool | StrictInt | StrictFloat | StrictStr
PropValue = Scalar | list[Scalar]


class Issue(BaseModel):
    """A configuration problem, located like `streamer config validate` locates it."""

    file: str = Field(description="relative to the use-case folder")
    line: int | None
    key: str
    reason: str


class UseCaseSummary(BaseModel):
    name: str
    valid: bool
    errors: list[Issue]
    warnings: list[str]
    services: list[str] = Field(description="services whose live heartbeat names this use case")
    model_version: int | None = Field(description="newest model version a service reports")


class UseCaseList(BaseModel):
    usecases_dir: str
    usecases: list[UseCaseSummary]


class UseCaseConfig(BaseModel):
    usecase: str
    config: dict[str, Any] = Field(
        description="UseCase.resolved() with the overrides applied; secrets masked"
    )
    overrides: dict[str, str] = Field(description="the run-time overrides stored in Redis")
    override_errors: list[Issue] = Field(
        description="set when the stored overrides no longer validate (config shown without them)"
    )
    mutable_keys: list[str]


class AuditEntry(BaseModel):
    id: str = Field(description="Redis stream entry id")
    who: str
    at: float = Field(description="epoch seconds")
    key: str
    old: str
    new: str


class AuditLog(BaseModel):
    usecase: str
    entries: list[AuditEntry] = Field(description="newest first")


class RetrainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, min_length=1, max_length=500)


class RetrainAccepted(BaseModel):
    usecase: str
    request_id: str = Field(description="entry id in `streamer:<usecase>:train:requests`")
    reason: str
    by: str


class MetricValue(BaseModel):
    view: str
    metric: str
    value: float | None
    time_ms: int


class MetricSeries(BaseModel):
    view: str
    metric: str
    points: list[tuple[int, float | None]] = Field(description="[epoch ms, value], oldest first")


class Metrics(BaseModel):
    usecase: str
    latest: list[MetricValue]
    series: list[MetricSeries] | None = Field(description="only with `since`")


class ReliabilityBin(BaseModel):
    """One bin of a reliability table: the records whose probability fell in (lower, upper]."""

    bin: int = Field(description="0 for the lowest probabilities")
    lower: float
    upper: float
    count: int
    confidence: float = Field(description="their mean probability")
    frequency: float = Field(description="how often the outcome happened among them")


class ReliabilityTable(BaseModel):
    """A calibration metric's table in one view, as its newest evaluation left it."""

    view: str
    metric: str = Field(description="calibration_error or binary_calibration_error")
    evaluation: int
    time_ms: int
    bins: list[ReliabilityBin] = Field(description="the non-empty bins, lowest first")


class Reliability(BaseModel):
    usecase: str
    tables: list[ReliabilityTable] = Field(
        description="one per (view, calibration metric); empty without calibration metrics"
    )


class AlertDocument(BaseModel):
    """A document of `streamer-alerts` (fields: shared/sinks/documents.py)."""

    model_config = ConfigDict(populate_by_name=True)

    timestamp: int | None = Field(None, alias="@timestamp", description="epoch ms")
    state: str | None = None
    metrics: list[str] = Field(default_factory=list)
    evaluation: int | None = None
    retrain_requested: bool | None = None
    detection_ids: list[str] = Field(default_factory=list)


class DetectionDocument(BaseModel):
    """A document of `streamer-detections`."""

    model_config = ConfigDict(populate_by_name=True)

    timestamp: int | None = Field(None, alias="@timestamp", description="epoch ms")
    detection_id: str | None = None
    metric: str | None = None
    detector: str | None = None
    start: int | None = None
    stop: int | None = None
    touched: int | None = None
    start_time: int | None = None
    stop_time: int | None = None
    touched_time: int | None = None
    magnitude: float | None = None
    active: bool | None = None


class Alerts(BaseModel):
    usecase: str
    alerts: list[AlertDocument] = Field(description="newest first")
    detections: list[DetectionDocument] = Field(description="newest first")


class Models(BaseModel):
    usecase: str
    latest: int | None
    versions: list[ModelMeta] = Field(description="newest first")


class Rounds(BaseModel):
    """A federated server's newest rounds, oldest first; empty for other use cases."""

    usecase: str
    rounds: list[RoundRow]


class RoleChange(BaseModel):
    """Body of `POST .../promote`."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1, max_length=300, description="the challenger to promote")
    reason: str | None = Field(None, min_length=1, max_length=500)


class Rollback(BaseModel):
    """Body of `POST .../rollback` (optional)."""

    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, min_length=1, max_length=500)


class RoleChangeAccepted(BaseModel):
    usecase: str
    request_id: str = Field(description="entry id in `streamer:<usecase>:train:requests`")
    action: str = Field(description="promote or rollback")
    champion: str = Field(description="the champion once the trainer has carried it out")
    replaces: str = Field(description="the champion now (a challenger then, still learning)")
    reason: str
    by: str


class PromotionSettings(BaseModel):
    metric: str
    margin: float
    min_records: int


class ModelStanding(BaseModel):
    model: str = Field(description="the model's name in algs.props")
    role: str = Field(description="champion or challenger")
    values: dict[str, dict[str, float | None]] = Field(
        description="view -> metric -> value (null: undefined)"
    )
    pairs: dict[str, int] = Field(description="view -> (target, prediction) pairs it covers")
    time_ms: int | None = Field(description="the newest evaluation's time, epoch ms")


class Leaderboard(BaseModel):
    usecase: str
    champion: str | None = Field(description="per the newest model version")
    challengers: list[str]
    previous_champion: str | None = Field(description="what a rollback restores")
    model_version: int | None
    promotion: PromotionSettings | None = Field(description="the automatic rule, if any")
    models: list[ModelStanding] = Field(description="the champion first, then the challengers")
