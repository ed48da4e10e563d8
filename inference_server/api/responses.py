"""JSON responses encoded with msgspec (`web.json_response` uses `json.dumps`; see json_codec.py)."""
from __future__ import annotations

from typing import Any, Mapping, Optional

from aiohttp import web

from inference_server.json_codec import encode_json

__all__ = ["json_response"]


def json_response(data: Any, *, status: int = 200, headers: Optional[Mapping[str, str]] = None) -> web.Response:
    """`web.json_response` with msgspec's encoder (same content type: application/json; charset=utf-8)."""
    return web.Response(body=encode_json(data), status=status, headers=headers, content_type="application/json",
                        charset="utf-8")
