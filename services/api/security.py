"""Who may change things: a bearer token from configuration, compared in constant time.

Reading is open (health, configuration with secrets masked, metrics, alerts, models) so that
orchestrators, dashboards and people can look without a secret; changing (PATCH, POST) and the
audit log (who changed what) need the token. Without a configured token nothing can be changed,
and `check_bind` refuses to serve beyond loopback at all.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shared.errors import StreamerError

DEFAULT_ACTOR = "api"
TOKEN_ENV = "STREAMER_API_TOKEN"

bearer = HTTPBearer(
    auto_error=False,
    description=f"the API token (`{TOKEN_ENV}`); required by every changing endpoint",
)


class InsecureBindError(StreamerError):
    """Serving beyond loopback without a token would let anyone on the network change pipelines."""

    exit_code = 2


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, token: str | None) -> None:
    """Raise InsecureBindError when `host` is not a loopback address and there is no token."""
    if not token and not is_loopback(host):
        raise InsecureBindError(
            f"refusing to serve on {host}: it is not a loopback address and no API token is "
            f"configured. Set {TOKEN_ENV} (or the variable named by --token-env), or bind to "
            "127.0.0.1"
        )


def token_matches(given: str, expected: str) -> bool:
    """Constant-time comparison of the bytes: headers arrive decoded as latin-1 (ASGI), the
    configured token is text (UTF-8), so a non-ASCII token sent as UTF-8 still matches."""
    try:
        sent = given.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return secrets.compare_digest(sent, expected.encode())


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


async def require_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> None:
    expected: str | None = request.app.state.api.token
    if not expected:
        raise _unauthorized(f"changes are disabled: this API has no token ({TOKEN_ENV})")
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer token")
    if not token_matches(credentials.credentials, expected):
        raise _unauthorized("invalid bearer token")


def actor(
    x_actor: Annotated[
        str | None,
        Header(max_length=100, description="who makes the change, for the audit log"),
    ] = None,
) -> str:
    """The audit log's `who`: the X-Actor header of an authenticated request, else "api"."""
    name = (x_actor or "").strip()
    return name if name and name.isprintable() else DEFAULT_ACTOR


Authorized = Depends(require_token)
Actor = Annotated[str, Depends(actor)]
