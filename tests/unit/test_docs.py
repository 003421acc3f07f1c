"""The configuration reference documents every key the models accept, and every env setting."""

from pathlib import Path

from shared.config import (
    AlgsConfig,
    ConnectionSettings,
    FederatedConfig,
    MonitoringConfig,
    StreamingConfig,
)
from shared.config.usecase import IGNORED_KAFKA_KEYS

DOC = (Path(__file__).resolve().parents[2] / "docs" / "configuration.md").read_text()


def test_every_props_key_is_documented():
    keys = StreamingConfig.known_keys() | AlgsConfig.known_keys() | MonitoringConfig.known_keys()
    keys |= FederatedConfig.known_keys()
    keys = (keys - {"algorithm.*", "aggregation.*"}) | {"algorithm.<param>", "aggregation.<param>"}
    keys |= {"<challenger>.<param>"}  # AlgsConfig.claim_key: named by the `challengers` list
    missing = sorted(key for key in keys | set(IGNORED_KAFKA_KEYS) if f"`{key}`" not in DOC)
    assert missing == []


def test_every_environment_setting_is_documented():
    names = [f"STREAMER_{name.upper()}" for name in ConnectionSettings.model_fields]
    assert [name for name in names if f"`{name}`" not in DOC] == []
