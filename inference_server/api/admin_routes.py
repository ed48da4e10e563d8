"""Admin API: model versions, traffic and fault drills, behind a bearer token.

The token is read from a file (`admin.token_file`, e.g. a Docker secret) or an environment variable
(`admin.token_env`, default `INFERENCE_ADMIN_TOKEN`), never from the repository, and compared in
constant time (`hmac.compare_digest`). No `Authorization` header or a malformed one -> 401 with
`WWW-Authenticate: Bearer`; a wrong token -> 403; no token configured -> 403 on every admin route (the
API is off). Every action is logged (action, parameters, outcome, request id; never the token) and
counted in `inference_admin_actions_total{action, outcome}`.
"""
from __future__ import annotations

import logging

from aiohttp import web

from inference_server.config import AdminConfig
from inference_server.lifecycle.faults import FaultError
from inference_server.api.context import LIFECYCLE
from inference_server.lifecycle.manager import ModelLifecycle
from inference_server.api.auth import BearerAuth, read_secret
from inference_server.api.context import CATALOG_UPDATER, CONFIG, REQUEST_CONTEXT, RouteSpec, add_route
from inference_server.catalog import CatalogError, Product
from inference_server.catalog.changes import CatalogChanges
from inference_server.errors import ApiError
from inference_server.api.responses import json_response
from inference_server.api.schemas import CatalogChangeRequest, FaultRequest, PromoteRequest, TrafficRequest, read_json, validate_body, validate_version

__all__ = ["ADMIN_AUTH", "AdminConfig", "add_admin_routes"]

log = logging.getLogger(__name__)

ADMIN_AUTH = web.AppKey("admin_auth", BearerAuth)

TRAFFIC_BODY, PROMOTE_BODY, FAULT_BODY = TrafficRequest, PromoteRequest, FaultRequest


ACTION_OF_HANDLER = web.AppKey("admin_actions", dict)


@web.middleware
async def admin_auth(request: web.Request, handler) -> web.StreamResponse:
    """The admin sub-app's one middleware: bearer auth, logging and `inference_admin_actions_total`."""
    lifecycle: ModelLifecycle = request.config_dict[LIFECYCLE]
    action = request.app[ACTION_OF_HANDLER].get(request.match_info.handler, "other")
    ctx = request[REQUEST_CONTEXT]
    counter = lifecycle.metrics.admin_actions
    params = dict(request.match_info)
    try:
        request.app[ADMIN_AUTH].check(request)
    except ApiError as exc:
        counter.labels(action, exc.code).inc()
        log.warning("admin %s %s refused (%s) request_id=%s remote=%s", action, params or "", exc.code,
                    ctx.request_id, request.remote)
        raise
    try:
        response = await handler(request)
    except ApiError as exc:
        counter.labels(action, "error").inc()
        log.warning("admin %s %s failed: %s %s request_id=%s", action, params or "", exc.code, exc.message,
                    ctx.request_id)
        raise
    except Exception:
        counter.labels(action, "error").inc()
        raise
    counter.labels(action, "ok").inc()
    log.info("admin %s %s ok request_id=%s", action, params or "", ctx.request_id)
    return response


def _handler(fn):
    """An admin handler taking the lifecycle (auth and accounting are the sub-app middleware's job)."""

    async def handler(request: web.Request) -> web.Response:
        return await fn(request, request.config_dict[LIFECYCLE])

    handler.__name__ = fn.__name__
    handler.__doc__ = fn.__doc__
    return handler


def _model(request: web.Request, lifecycle: ModelLifecycle) -> str:
    name = request.match_info["name"]
    if name != lifecycle.model:
        raise ApiError(404, "not_found", f"model {name!r} is not served here (this server serves {lifecycle.model!r})")
    return name


def _version(request: web.Request) -> str:
    version = request.match_info["version"]
    return validate_version(version, "version")


async def _body(request: web.Request, model: type) -> dict:
    return validate_body(model, await read_json(request, request.config_dict[CONFIG].server.max_body_bytes))


async def list_versions(request: web.Request, lc: ModelLifecycle) -> web.Response:
    """Every version of the repository with state, traffic, health and evaluation; the split; faults."""
    return json_response(lc.describe())


async def load_version(request: web.Request, lc: ModelLifecycle) -> web.Response:
    """Load, health-check and warm up a version (answers when it is ready; serving continues meanwhile)."""
    _model(request, lc)
    mv = await lc.load(_version(request))
    return json_response({"model": mv.name, "version": mv.version, "state": mv.state, "health": mv.health})


async def unload_version(request: web.Request, lc: ModelLifecycle) -> web.Response:
    """Unload a version without live traffic, after its in-flight requests finish."""
    _model(request, lc)
    version = _version(request)
    await lc.unload(version)
    return json_response({"model": lc.model, "version": version, "state": "unloaded"})


async def reload_version(request: web.Request, lc: ModelLifecycle) -> web.Response:
    """Load a fresh instance of a ready version and swap it in atomically."""
    _model(request, lc)
    mv = await lc.reload(_version(request))
    return json_response({"model": mv.name, "version": mv.version, "state": mv.state, "health": mv.health})


def _split_json(lc: ModelLifecycle) -> dict:
    split = lc.router.split
    return {"model": lc.model, "weights": split.as_percent(), "shadow": sorted(split.shadow),
            "stable": lc.router.stable.as_percent()}


async def set_traffic(request: web.Request, lc: ModelLifecycle) -> web.Response:
    """Set live weights (normalised) and shadow versions; all must be ready."""
    _model(request, lc)
    body = await _body(request, TRAFFIC_BODY)
    weights = body["weights"]
    lc.set_traffic(weights, body.get("shadow") or [])
    return json_response(_split_json(lc))


async def promote(request: web.Request, lc: ModelLifecycle) -> web.Response:
    """All live traffic to one version; the new split is stable."""
    _model(request, lc)
    body = await _body(request, PROMOTE_BODY)
    lc.promote(body["version"])
    return json_response(_split_json(lc))


async def rollback(request: web.Request, lc: ModelLifecycle) -> web.Response:
    """Restore the previous stable split."""
    _model(request, lc)
    lc.rollback()
    return json_response(_split_json(lc))


async def get_faults(request: web.Request, lc: ModelLifecycle) -> web.Response:
    """The active fault drill, if any."""
    return json_response({"fault": lc.faults.describe()})


async def set_faults(request: web.Request, lc: ModelLifecycle) -> web.Response:
    """Start a fault drill: added latency and/or injected 503s, optionally on one version, for a while."""
    body = await _body(request, FAULT_BODY)
    if "version" in body and body["version"] not in lc.version_view():
        raise ApiError(404, "not_found", f"model {lc.model} has no version {body['version']}", field="version")
    try:
        lc.faults.set(body)
    except FaultError as exc:
        raise ApiError(400, "validation", str(exc), field=exc.field) from None
    log.warning("fault drill set: %s", lc.faults.describe())
    return json_response({"fault": lc.faults.describe()})


async def clear_faults(request: web.Request, lc: ModelLifecycle) -> web.Response:
    """End the fault drill."""
    cleared = lc.faults.clear()
    return json_response({"fault": None, "cleared": cleared})


async def change_catalog(request: web.Request, lc: ModelLifecycle) -> web.Response:
    """Add, update and remove products; answers once every version's index serves the change."""
    body = await _body(request, CatalogChangeRequest)
    upserts = tuple(Product(p["id"], p["title"], p.get("brand"), p.get("category"), p.get("price"),
                            dict(p.get("attributes") or {})) for p in body.get("upsert") or [])
    try:
        result = await request.config_dict[CATALOG_UPDATER].submit(
            CatalogChanges(upserts, tuple(body.get("remove") or [])))
    except CatalogError as exc:
        raise ApiError(409, "catalog_not_ready", str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - e.g. the encoder failed: nothing was applied, retry later
        raise ApiError(503, "catalog_update_failed", f"the change was not applied: {type(exc).__name__}: {exc}",
                       retry_after=1) from None
    return json_response({"upserted": result.upserted, "removed": result.removed,
                          "catalog_products": result.catalog_products,
                          "apply_seconds": round(result.apply_seconds, 4), "versions": result.versions})


def add_admin_routes(app: web.Application) -> None:
    """Mount /v1/admin/* as a sub-app whose one middleware authenticates every route; the token is
    read once here."""
    cfg: AdminConfig = app[CONFIG].admin
    admin = web.Application(middlewares=[admin_auth])
    admin[ADMIN_AUTH] = BearerAuth(read_secret(cfg.token_file, cfg.token_env, "admin.token_file"), "inference-admin")
    admin[ACTION_OF_HANDLER] = {}
    security = [{"bearerAuth": []}]
    auth_errors = (401, 403)
    prefix = "/v1/admin"
    base = prefix + "/models/{name}"
    routes = [
        ("GET", "/v1/admin/models", "list", list_versions, "List versions, traffic split and faults", None, ()),
        ("POST", base + "/versions/{version}/load", "load", load_version, "Load a model version", None, (404, 409, 422, 503)),
        ("POST", base + "/versions/{version}/unload", "unload", unload_version, "Unload a model version", None, (404, 409)),
        ("POST", base + "/versions/{version}/reload", "reload", reload_version, "Reload a model version", None, (404, 409, 422, 503)),
        ("PUT", base + "/traffic", "set_traffic", set_traffic, "Set the traffic split", TRAFFIC_BODY, (400, 404, 409, 503)),
        ("POST", base + "/promote", "promote", promote, "Promote a version to all live traffic", PROMOTE_BODY, (400, 404, 409, 503)),
        ("POST", base + "/rollback", "rollback", rollback, "Roll back to the previous stable split", None, (404, 409, 503)),
        ("GET", "/v1/admin/faults", "get_faults", get_faults, "The active fault drill", None, ()),
        ("POST", "/v1/admin/faults", "set_faults", set_faults, "Start a fault drill", FAULT_BODY, (400, 404)),
        ("DELETE", "/v1/admin/faults", "clear_faults", clear_faults, "End the fault drill", None, ()),
        ("POST", "/v1/admin/catalog/changes", "catalog_changes", change_catalog,
         "Add, update and remove catalog products", CatalogChangeRequest, (400, 409, 503)),
    ]
    for method, path, action, fn, summary, schema, errors in routes:
        handler = _handler(fn)
        admin[ACTION_OF_HANDLER][handler] = action
        add_route(app, RouteSpec(method, path, handler, "admin", summary, tag="admin",
                                 request_schema=schema, response_schema={"type": "object"},
                                 error_statuses=auth_errors + tuple(errors), security=security),
                  router=admin.router, prefix=prefix)
    app.add_subapp(prefix, admin)
