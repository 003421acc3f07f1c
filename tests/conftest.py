"""Shared test settings: where the data sets are (../shared/data beside the checkout)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INTEGRATION = REPO / "tests" / "integration"
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The data sets' folder: STREAMER_DATA_DIR, else ../shared/data, else ./data."""
    configured = os.environ.get("STREAMER_DATA_DIR")
    if configured:
        return Path(configured)
    return SHARED_DATA if SHARED_DATA.is_dir() else REPO / "data"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test under tests/integration needs the real services: mark it `integration`
    (`-m "not integration"` then runs what needs none)."""
    for item in items:
        if item.path.is_relative_to(INTEGRATION):
            item.add_marker(pytest.mark.integration)
