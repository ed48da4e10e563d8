"""Operational endpoints: liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import json

from aiohttp import web

from inference_server.api.context import METRICS, SERVING_STATE, RouteSpec, add_route
from inference_server.api.middleware import error_response
from inference_server.serving.metrics import render_metrics
from inference_server.api.openapi import build_openapi
from inference_server.api.responses import json_response

__all__ = ["add_ops_routes"]

_OPENAPI_CACHE = web.AppKey("openapi_cache", dict)


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP (model state does not matter here)."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 once a model version is loaded, checked and warmed up; 503 + Retry-After before.

    The 503 is returned, not raised: a probe's "not yet" is an answer, not a rejected request, so the
    runner's own polls during a model load do not feed `inference_rejected_requests_total` (and the
    InferenceRequestsRejected alert) on every fresh start.
    """
    state = request.app[SERVING_STATE]
    ready = state.ready_versions()
    if not ready:
        return error_response(state.not_ready_error())
    return json_response(
        {"status": "ready", "models": [{"name": mv.name, "version": mv.version} for mv in ready]}
    )


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition; OpenMetrics with exemplars when the Accept header asks for it."""
    body, content_type = render_metrics(request.app[METRICS].registry, request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def openapi(request: web.Request) -> web.Response:
    """The OpenAPI 3.1 document (built once, after all route groups are registered)."""
    cache = request.app[_OPENAPI_CACHE]
    if "body" not in cache:
        cache["body"] = json.dumps(build_openapi(request.app), indent=2).encode()
    return web.Response(body=cache["body"], content_type="application/json")


def add_ops_routes(app: web.Application) -> None:
    app[_OPENAPI_CACHE] = {}
    add_route(app, RouteSpec("GET", "/healthz", healthz, "other", "Liveness", tag="ops", log_requests=False,
                             response_schema={"type": "object", "properties": {"status": {"const": "ok"}}}))
    add_route(app, RouteSpec("GET", "/readyz", readyz, "other", "Readiness", tag="ops", log_requests=False,
                             error_statuses=(503,),
                             response_schema={"type": "object", "properties": {"status": {"const": "ready"},
                                                                                "models": {"type": "array"}}}))
    add_route(app, RouteSpec("GET", "/metrics", metrics, "other", "Prometheus metrics", tag="ops",
                             log_requests=False, response_content_type="text/plain"))
    add_route(app, RouteSpec("GET", "/openapi.json", openapi, "other", "This OpenAPI document", tag="ops",
                             log_requests=False, response_schema={"type": "object"}))
