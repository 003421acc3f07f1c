"""Connection settings taken from the environment (`STREAMER_*`), so one use case runs locally and
in Compose unchanged. They override the addresses written in a use case's props files.

Defaults match the loopback ports that `make services` (scripts/services.sh) uses.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConnectionSettings(BaseSettings):
    """Where the backing services and the data live."""

    model_config = SettingsConfigDict(env_prefix="STREAMER_", extra="ignore")

    kafka_bootstrap: str | None = Field(
        default=None,
        description="Kafka bootstrap servers; overrides `bootstrap.servers` of streaming.props.",
    )
    redis_url: str = "redis://127.0.0.1:16379/0"
    redis_password: SecretStr | None = None
    influx_url: str = "http://127.0.0.1:18086"
    influx_user: str | None = None
    influx_password: SecretStr | None = None
    influx_db: str = "streamer"
    es_url: str = "http://127.0.0.1:19200"
    es_user: str | None = None
    es_password: SecretStr | None = None
    topic_partitions: int | None = Field(
        default=None,
        ge=1,
        description="Least partitions of the topics the services create: the deployment's "
        "launcher parallelism (a use case's `topic.partitions` may ask for more).",
    )
    model_secret: SecretStr | None = Field(
        default=None,
        description="Key of the HMAC that authenticates model bytes in Redis (trainer, launcher).",
    )
    data_dir: Path = Field(
        default=Path("data"),
        description="Folder of the data sets; props files refer to it as ${STREAMER_DATA_DIR}.",
    )
    usecases_dir: Path = Field(
        default=Path("usecases"), description="Where `streamer ... NAME` looks for use cases."
    )

    def kafka_bootstrap_or(self, from_props: str) -> str:
        """The bootstrap servers to use: the environment wins over the props file."""
        return self.kafka_bootstrap or from_props
