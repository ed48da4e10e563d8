"""The OpenAPI 3.1 document, generated from the registered `RouteSpec`s and their request models.

A request body's schema is its pydantic model's `model_json_schema` (nested models become shared
components), the same model the handler validates with, so the document and the server cannot
disagree about what is accepted.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from pydantic import BaseModel, TypeAdapter

from inference_server import __version__

from inference_server.api.context import ROUTE_SPECS, RouteSpec
from inference_server.errors import REJECTION_REASONS

__all__ = ["body_schema", "build_openapi"]

REF_TEMPLATE = "#/components/schemas/{model}"

_STATUS_TEXT = {
    400: "Invalid body: invalid_json, invalid_encoding or validation (field names the problem)",
    401: "Missing bearer token (unauthorized)",
    403: "Wrong bearer token (forbidden)",
    404: "Not found",
    405: "Method not allowed",
    413: "Body over the size limit (body_too_large)",
    415: "Content-Type is not application/json (unsupported_media_type)",
    422: "Unknown product id (unknown_product; field names it)",
    429: "Batch queue full (queue_full); retry after Retry-After seconds",
    503: "Not ready (not_ready) or model failure (model_error); retry after Retry-After seconds",
    504: "Request deadline exceeded (deadline_exceeded)",
}

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {
                "code": {"enum": sorted(REJECTION_REASONS | {"internal_error"})},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "JSON path of the field at fault"},
            },
        }
    },
}


def _operation(spec: RouteSpec, components: dict[str, Any]) -> dict[str, Any]:
    op: dict[str, Any] = {
        "operationId": f"{spec.method.lower()}_{spec.path.strip('/').replace('/', '_').replace('{', '').replace('}', '').replace('.', '_') or 'root'}",
        "summary": spec.summary,
        "tags": [spec.tag],
        "parameters": [
            {
                "name": "X-Request-ID",
                "in": "header",
                "required": False,
                "description": "client request id (1-64 of [A-Za-z0-9._-]); echoed back, generated when absent",
                "schema": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},
            }
        ],
    }
    for segment in spec.path.split("/"):
        if segment.startswith("{") and segment.endswith("}"):
            op["parameters"].append(
                {"name": segment[1:-1], "in": "path", "required": True, "schema": {"type": "string"}}
            )
    if spec.request_schema is not None:
        schema = body_schema(spec.request_schema)
        components.update(schema.pop("$defs", {}))
        name = schema.get("title") or f"{op['operationId']}_body"
        components[name] = schema
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}},
        }
    ok: dict[str, Any] = {"description": "OK"}
    if spec.response_schema is not None:
        ok["content"] = {spec.response_content_type: {"schema": spec.response_schema}}
    elif spec.response_content_type != "application/json":
        ok["content"] = {spec.response_content_type: {"schema": {"type": "string"}}}
    responses: dict[str, Any] = {"200": ok}
    for status in spec.error_statuses:
        responses[str(status)] = {
            "description": _STATUS_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
    op["responses"] = responses
    if spec.security is not None:
        op["security"] = spec.security
    return op


def body_schema(model: type[BaseModel] | TypeAdapter) -> dict[str, Any]:
    """The JSON schema of a request body model, nested models referenced as OpenAPI components."""
    if isinstance(model, TypeAdapter):
        return model.json_schema(ref_template=REF_TEMPLATE)
    return model.model_json_schema(ref_template=REF_TEMPLATE)


def build_openapi(app: web.Application) -> dict[str, Any]:
    components: dict[str, Any] = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict[str, Any]] = {}
    for spec in app[ROUTE_SPECS]:
        paths.setdefault(spec.path, {})[spec.method.lower()] = _operation(spec, components)
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "E-commerce inference server",
            "version": __version__,
            "description": "Search, re-rank and recommend over a product catalog with a sentence encoder. "
            "Every model response names the model version that served it.",
        },
        "paths": paths,
        "components": {"schemas": components},
    }
    if any(spec.security for spec in app[ROUTE_SPECS]):
        doc["components"]["securitySchemes"] = {"bearerAuth": {"type": "http", "scheme": "bearer"}}
    return doc
