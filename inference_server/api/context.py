"""What the application and each request carry: typed app/request keys and the route registry.

Every route is added through `add_route`, which also records its `endpoint` metric label and its
OpenAPI description (`RouteSpec`), so metrics, the request log and `/openapi.json` always cover
exactly the routes that exist. Route groups (serving, ops, and those of other components) are
plain functions ``add_<group>_routes(app)`` calling `add_route`.
"""

from __future__ import annotations

import re
import random
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Optional

from aiohttp import web

from inference_server.config import AppConfig
from inference_server.lifecycle.manager import ModelLifecycle

from inference_server.serving.metrics import ENDPOINTS, ServerMetrics
from inference_server.serving.request_log import RequestLog
from inference_server.api.schemas import RequestModels
from inference_server.serving.catalog_updates import CatalogUpdater
from inference_server.serving.state import ServingState

__all__ = [
    "CONFIG",
    "LIFECYCLE",
    "METRICS",
    "REQUEST_CONTEXT",
    "REQUEST_LOG",
    "ROUTE_SPECS",
    "SCHEMAS",
    "SERVING_STATE",
    "RequestContext",
    "RouteSpec",
    "add_route",
    "endpoint_label",
    "request_id_from",
]

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class RouteSpec:
    """One route: how it is served, labelled in metrics and described in OpenAPI."""

    method: str
    path: str
    handler: Handler
    endpoint: str                                   # `endpoint` label (bounded vocabulary)
    summary: str
    tag: str = "serving"
    request_schema: Optional[Any] = None            # pydantic model (or TypeAdapter) of the JSON body
    response_schema: Optional[dict[str, Any]] = None  # OpenAPI schema of the 200 body
    response_content_type: str = "application/json"
    error_statuses: tuple[int, ...] = ()            # documented error answers
    security: Optional[list[dict[str, list]]] = None  # e.g. [{"bearerAuth": []}] for admin routes
    log_requests: bool = True                       # write successful requests to the request log


@dataclass
class RequestContext:
    """Per-request facts gathered by handlers and reported by the observing middleware."""

    request_id: str
    endpoint: str
    started: float                   # time.perf_counter() at arrival
    deadline: float                  # loop.time() after which encoding work is abandoned
    model: str = ""
    version: str = ""
    user_id: Optional[str] = None
    query: Optional[str] = None      # search / rank query text, for the request log (never a metric label)
    queue_seconds: Optional[float] = None
    compute_seconds: Optional[float] = None
    result_ids: Optional[list[str]] = None
    error_code: Optional[str] = None
    extra: dict[str, Any] = field(default_factory=dict)


CONFIG = web.AppKey("config", AppConfig)
METRICS = web.AppKey("metrics", ServerMetrics)
SERVING_STATE = web.AppKey("serving_state", ServingState)
REQUEST_LOG = web.AppKey("request_log", RequestLog)
SCHEMAS = web.AppKey("schemas", RequestModels)
ROUTE_SPECS = web.AppKey("route_specs", list)
REQUEST_CONTEXT = web.RequestKey("request_context", RequestContext)
LIFECYCLE = web.AppKey("lifecycle", ModelLifecycle)
CATALOG_UPDATER = web.AppKey("catalog_updater", CatalogUpdater)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


def add_route(app: web.Application, spec: RouteSpec, *, router: Optional[web.UrlDispatcher] = None,
              prefix: str = "") -> RouteSpec:
    """Register `spec.handler` for `spec.method spec.path` and record the spec on `app`.

    For a route of a sub-app mounted at `prefix`, pass the sub-app's `router`: the route is added
    there (without the prefix) and the spec, with the full path, is recorded on the main app.
    """
    if spec.endpoint not in ENDPOINTS:
        raise ValueError(f"endpoint label {spec.endpoint!r} is not one of {ENDPOINTS}")
    if not spec.path.startswith(prefix):
        raise ValueError(f"route {spec.path} is not under its sub-app's prefix {prefix}")
    (router if router is not None else app.router).add_route(spec.method, spec.path[len(prefix):], spec.handler)
    app[ROUTE_SPECS].append(spec)
    return spec


def route_spec_for(request: web.Request) -> Optional[RouteSpec]:
    """The spec of the route a request matched, or of a route at its path (405s), or None."""
    specs: list[RouteSpec] = request.config_dict[ROUTE_SPECS]
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else None
    for spec in specs:
        if canonical is not None and spec.path == canonical and spec.method == request.method:
            return spec
    for spec in specs:
        if spec.path == (canonical or request.path):
            return spec
    return None


def endpoint_label(request: web.Request) -> str:
    spec = route_spec_for(request)
    return spec.endpoint if spec is not None else "other"


def request_id_from(request: web.Request) -> str:
    """The client's X-Request-ID when well-formed (1-64 of [A-Za-z0-9._-]), else a fresh one."""
    given = request.headers.get("X-Request-ID")
    if given is not None and _REQUEST_ID.fullmatch(given):
        return given
    # 128 random bits from the seeded PRNG (re-seeded after fork): unique like uuid4, without its
    # os.urandom syscall per request (~4 % of the event loop under overload). Ids are not secrets:
    # clients may choose their own.
    return f"{random.getrandbits(128):032x}"
