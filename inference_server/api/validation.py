"""Request bodies: the schemas of the serving endpoints and the strict JSON body reader.

The schemas here are the single source for both validation and the OpenAPI document
(`inference_server.api.openapi`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from inference_server.config import LimitsConfig

from inference_server.errors import ApiError
from inference_server.api.schema import Array, Integer, Object, Prop, String

__all__ = ["RequestSchemas", "read_json", "read_json_body", "request_schemas"]

USER_ID_MAX_CHARS = 256


@dataclass(frozen=True)
class RequestSchemas:
    search: Object
    rank: Object
    recommend: Object


def request_schemas(limits: LimitsConfig) -> RequestSchemas:
    """The request bodies of the serving endpoints under the configured limits."""
    k = Integer(minimum=1, maximum=limits.max_k, description="number of results")
    query = String(min_length=1, max_length=limits.max_query_chars, strip=True, description="the shopper's query")
    product_id = String(min_length=1, max_length=limits.max_id_chars, description="catalog product id")
    user_id = String(
        min_length=1,
        max_length=USER_ID_MAX_CHARS,
        description="opaque shopper id; hashed in logs, used for sticky traffic assignment",
    )
    item = Object(
        [
            Prop("id", product_id, required=True),
            Prop(
                "title",
                String(
                    min_length=1,
                    max_length=limits.max_title_chars,
                    strip=True,
                    description="text to embed; without it, id must be a catalog product",
                ),
            ),
        ],
        title="RankItem",
    )
    return RequestSchemas(
        search=Object(
            [Prop("query", query, required=True), Prop("k", k, default=10), Prop("user_id", user_id)],
            title="SearchRequest",
        ),
        rank=Object(
            [
                Prop("query", query, required=True),
                Prop(
                    "items",
                    Array(item, min_items=1, max_items=limits.max_items, unique=True,
                          description="candidates to re-rank"),
                    required=True,
                ),
                Prop("k", Integer(minimum=1, maximum=limits.max_items,
                                  description="results to return (default: all items)")),
                Prop("user_id", user_id),
            ],
            title="RankRequest",
        ),
        recommend=Object(
            [
                Prop(
                    "history",
                    Array(product_id, min_items=1, max_items=limits.max_history, unique=True,
                          description="product ids the shopper viewed or bought, most relevant first"),
                    required=True,
                ),
                Prop("k", k, default=10),
                Prop("user_id", user_id),
            ],
            title="RecommendRequest",
        ),
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def read_json(request: web.Request, max_body_bytes: int) -> Any:
    """The request body parsed as strict UTF-8 JSON, or an ApiError (413/415/400) saying why."""
    content_type = request.content_type
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, got {request.headers.get('Content-Type') or 'none'}",
        )
    charset = request.charset
    if charset is not None and charset.lower().replace("-", "") != "utf8":
        raise ApiError(415, "unsupported_media_type", f"charset must be utf-8, got {charset}")
    declared = request.content_length
    if declared is not None and declared > max_body_bytes:
        raise _too_large(max_body_bytes)
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await request.content.read(65536)
        if not chunk:
            break
        size += len(chunk)
        if size > max_body_bytes:
            raise _too_large(max_body_bytes)
        chunks.append(chunk)
    body = b"".join(chunks)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_encoding", f"body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise ApiError(400, "invalid_json", "body is empty; expected a JSON object")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"invalid JSON: {exc}") from None


async def read_json_body(request: web.Request, schema: Object, max_body_bytes: int) -> dict:
    """Read, parse and validate a JSON object body against `schema`."""
    return schema.validate(await read_json(request, max_body_bytes))


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"request body is larger than the limit of {limit} bytes")

