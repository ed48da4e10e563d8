"""A thin async client for the inference server's serving, feedback and admin APIs (docs/api.md)."""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import aiohttp

from loadgen.config import ConfigError, TargetConfig


@dataclass
class Reply:
    """An HTTP answer: `status` is the code as a string, or `error`/`timeout` when none came back."""

    status: str
    latency_s: float
    body: Any = None

    @property
    def ok(self) -> bool:
        return self.status == "200"


class AdminError(RuntimeError):
    """An admin API call failed; the message carries the server's error body."""


def read_admin_token(cfg: TargetConfig) -> Optional[str]:
    """The admin bearer token from `admin_token_file`, else from the `admin_token_env` variable."""
    return _read_token(cfg.admin_token_file, cfg.admin_token_env, "target.admin_token_file")


def read_feedback_token(cfg: TargetConfig) -> Optional[str]:
    """The feedback (event-source) token from `feedback_token_file`, else the `feedback_token_env` variable."""
    return _read_token(cfg.feedback_token_file, cfg.feedback_token_env, "target.feedback_token_file")


def _read_token(file: Optional[str], env: str, key: str) -> Optional[str]:
    if file:
        try:
            token = Path(file).read_text().strip()
        except OSError as exc:
            raise ConfigError(key, f"cannot read {file}: {exc}") from exc
        if not token:
            raise ConfigError(key, f"{file} is empty")
        return token
    token = os.environ.get(env, "").strip()
    return token or None


class ServerClient:
    def __init__(self, cfg: TargetConfig, max_connections: int, admin_token: Optional[str] = None,
                 feedback_token: Optional[str] = None) -> None:
        self.cfg = cfg
        self.base = cfg.url.rstrip("/")
        self.admin_token = admin_token
        self.feedback_token = feedback_token
        self._session: Optional[aiohttp.ClientSession] = None
        self._max_connections = max_connections

    async def __aenter__(self) -> "ServerClient":
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=self._max_connections + 8),
            timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s),
            headers={"User-Agent": "ecommerce-loadgen/1"},
        )
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, method: str, path: str, payload: Any = None, admin: bool = False,
                   feedback: bool = False) -> Reply:
        """One request; never raises for HTTP or network failures (they become the reply status)."""
        assert self._session is not None, "use `async with ServerClient(...)`"
        headers = {}
        if feedback and self.feedback_token:
            headers["Authorization"] = f"Bearer {self.feedback_token}"
        if admin:
            if not self.admin_token:
                raise ConfigError(
                    "target.admin_token_file", "this scenario needs the server's admin token: set it "
                    f"(--admin-token-file) or ${self.cfg.admin_token_env}")
            headers["Authorization"] = f"Bearer {self.admin_token}"
        t0 = time.perf_counter()
        try:
            async with self._session.request(method, self.base + path, json=payload, headers=headers) as resp:
                try:
                    body = await resp.json(content_type=None)
                except (ValueError, aiohttp.ContentTypeError):
                    body = None
                return Reply(str(resp.status), time.perf_counter() - t0, body)
        except TimeoutError:
            return Reply("timeout", time.perf_counter() - t0)
        except aiohttp.ClientError:
            return Reply("error", time.perf_counter() - t0)

    async def admin(self, method: str, path: str, payload: Any = None) -> Any:
        reply = await self.call(method, path, payload, admin=True)
        if not reply.status.startswith("2"):
            raise AdminError(f"{method} {path} -> {reply.status}: {reply.body}")
        return reply.body

    async def models(self) -> list[dict]:
        reply = await self.call("GET", "/v1/models")
        if not reply.ok or not isinstance(reply.body, dict):
            raise AdminError(f"GET /v1/models -> {reply.status}: {reply.body}")
        return list(reply.body.get("models", []))
