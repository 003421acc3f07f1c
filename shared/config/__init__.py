"""Use-case configuration: props files parsed into typed models, connection settings from env."""

from shared.config.models import (
    AlgsConfig,
    DetectorName,
    FederatedConfig,
    MonitoringConfig,
    ProducerType,
    RetrainStrategy,
    StreamingConfig,
)
from shared.config.settings import ConnectionSettings
from shared.config.usecase import UseCase, load_usecase

__all__ = [
    "AlgsConfig",
    "ConnectionSettings",
    "DetectorName",
    "FederatedConfig",
    "MonitoringConfig",
    "ProducerType",
    "RetrainStrategy",
    "StreamingConfig",
    "UseCase",
    "load_usecase",
]
