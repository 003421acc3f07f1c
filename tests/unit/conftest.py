"""Unit tests see no STREAMER_* variables from the caller's shell (make test exports them)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("STREAMER_") and name != "STREAMER_DATA_DIR":
            monkeypatch.delenv(name)
