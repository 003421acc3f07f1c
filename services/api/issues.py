"""Configuration problems as API answers: located issues, and 422 bodies shaped like FastAPI's
own validation errors so that clients handle one format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import HTTPException

from services.api.models import Issue
from shared.errors import ConfigIssue


def issue_model(issue: ConfigIssue, folder: Path) -> Issue:
    """The issue with its file relative to the use-case folder (no server paths in answers)."""
    try:
        file = str(issue.file.relative_to(folder))
    except ValueError:
        file = issue.file.name
    return Issue(file=file, line=issue.line, key=issue.key, reason=issue.reason)


def body_error(key: str, message: str, kind: str, value: Any = None) -> dict[str, Any]:
    """One entry of a 422 `detail`, in FastAPI's format (`loc`, `msg`, `type`, `input`)."""
    return {"loc": ["body", key], "msg": message, "type": kind, "input": value}


def unprocessable(errors: list[dict[str, Any]]) -> HTTPException:
    return HTTPException(422, detail=errors)  # the constant's name differs across Starlettes
