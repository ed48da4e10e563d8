"""Bearer-token authentication, the one parser for every API that steers the loop (admin, Alertmanager
webhook, the simulator's drills): the token comes from a file or the environment, never the repo, and
is compared in constant time.
"""
from __future__ import annotations

import hmac
import os
from pathlib import Path
from typing import Optional

from aiohttp import web

from inference_server.errors import ApiError
from typed_config import ConfigError

__all__ = ["BearerAuth", "read_secret"]


def read_secret(file: Optional[str], env: str, what: str) -> Optional[bytes]:
    """A secret from `file` (stripped) when set, else from the environment variable `env`, else None."""
    if file:
        try:
            value = Path(file).expanduser().read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(what, f"cannot read {file!r}: {exc.strerror or exc}") from exc
        if not value:
            raise ConfigError(what, f"{file!r} is empty")
        return value.encode()
    value = os.environ.get(env, "").strip()
    return value.encode() if value else None


class BearerAuth:
    """Checks `Authorization: Bearer <token>` against one secret in constant time."""

    def __init__(self, token: Optional[bytes], realm: str) -> None:
        self._token = token
        self.realm = realm

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def check(self, request: web.Request) -> None:
        """Raise 401/403 ApiError unless the request carries the right bearer token."""
        if self._token is None:
            raise ApiError(403, "forbidden", f"the {self.realm} API is disabled: no token is configured")
        header = request.headers.get("Authorization")
        challenge = {"WWW-Authenticate": f'Bearer realm="{self.realm}"'}
        if header is None:
            raise ApiError(401, "unauthorized", "missing Authorization header; send 'Authorization: Bearer <token>'",
                           headers=challenge)
        scheme, _, credentials = header.strip().partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials or " " in credentials:
            raise ApiError(401, "unauthorized", "malformed Authorization header; expected 'Bearer <token>'",
                           headers={"WWW-Authenticate": f'Bearer realm="{self.realm}", error="invalid_request"'})
        if not hmac.compare_digest(credentials.encode("utf-8", "surrogateescape"), self._token):
            raise ApiError(403, "forbidden", "the bearer token is not valid for this server",
                           headers={"WWW-Authenticate": f'Bearer realm="{self.realm}", error="invalid_token"'})
