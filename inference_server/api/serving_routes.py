"""Serving endpoints: search, rank, recommend and the model listing.

Handlers stay thin: validate the body, route to a model version, run the vector work, shape the
answer. Timing and outcome go into the request context; the middleware reports them.
"""

from __future__ import annotations

from typing import Sequence

from aiohttp import web

from inference_server.api.context import CONFIG, REQUEST_CONTEXT, SCHEMAS, SERVING_STATE, RequestContext, RouteSpec, add_route
from inference_server.errors import ApiError
from inference_server.serving.scoring import Scored, score_endpoint
from inference_server.serving.state import ModelVersion, RoutingContext, ServedResponse, ServingState
from inference_server.api.responses import json_response
from inference_server.api.schemas import read_json_body

__all__ = ["add_serving_routes"]

_BODY_ERRORS = (400, 413, 415)
_MODEL_ERRORS = (429, 503, 504)


def _route(state: ServingState, ctx: RequestContext, endpoint: str) -> ModelVersion:
    decision = state.route(RoutingContext(endpoint=endpoint, request_id=ctx.request_id, user_id=ctx.user_id))
    ctx.model, ctx.version = decision.primary.name, decision.primary.version
    ctx.extra["shadows"] = decision.shadows
    return decision.primary


def _results(state: ServingState, scored: Scored) -> list[dict]:
    catalog = state.catalog
    out = []
    for position, (product_id, score) in enumerate(zip(scored.ids, scored.scores), start=1):
        title = scored.titles.get(product_id)
        if title is None:
            product = catalog.get(product_id)
            title = product.title if product is not None else None
        out.append({"id": product_id, "title": title, "score": round(float(score), 6), "position": position})
    return out


def _answer(state: ServingState, ctx: RequestContext, body: dict, scored: Scored) -> web.Response:
    ctx.queue_seconds, ctx.compute_seconds = scored.queue_seconds, scored.compute_seconds
    results = _results(state, scored)
    ids = [r["id"] for r in results]
    ctx.result_ids = ids
    state.notify(
        ServedResponse(
            endpoint=ctx.endpoint,
            request_id=ctx.request_id,
            model=ctx.model,
            version=ctx.version,
            user_id=ctx.user_id,
            result_ids=ids,
            scores=[r["score"] for r in results],
            query_tokens=scored.query_tokens,
            k=len(results),
            request=body,
            shadows=ctx.extra.get("shadows", ()),
        )
    )
    return json_response(
        {"request_id": ctx.request_id, "model": ctx.model, "version": ctx.version, "results": results}
    )


def _require_products(state: ServingState, ids: Sequence[str], field_of) -> None:
    catalog = state.catalog
    if catalog is None:
        raise state.not_ready_error()
    for i, product_id in enumerate(ids):
        if product_id is not None and catalog.get(product_id) is None:
            raise ApiError.unknown_product(product_id, field_of(i))


async def _serve(request: web.Request, endpoint: str, products_of=None) -> web.Response:
    """Validate the body, check the catalog products it names, route, score on the chosen version, answer.

    `products_of(body)` -> (product ids or None, field of the i-th id) for bodies naming catalog products.
    """
    app = request.app
    ctx, state = request[REQUEST_CONTEXT], app[SERVING_STATE]
    body = await read_json_body(request, getattr(app[SCHEMAS], endpoint), app[CONFIG].server.max_body_bytes)
    ctx.user_id = body.get("user_id")
    ctx.query = body.get("query")
    if products_of is not None:
        _require_products(state, *products_of(body))
    mv = _route(state, ctx, endpoint)
    with mv.in_use():
        await state.run_request_hooks(mv)
        scored = await score_endpoint(mv, endpoint, body, deadline=ctx.deadline, request_id=ctx.request_id)
    return _answer(state, ctx, body, scored)


async def search(request: web.Request) -> web.Response:
    """Top-k catalog products for a query."""
    return await _serve(request, "search")


async def rank(request: web.Request) -> web.Response:
    """Re-rank the given items for a query; items without a title must be catalog products."""
    return await _serve(request, "rank", lambda body: (
        [None if "title" in it else it["id"] for it in body["items"]], lambda i: f"items[{i}].id"))


async def recommend(request: web.Request) -> web.Response:
    """Products similar to a shopper's history (mean of the history's vectors), history excluded."""
    return await _serve(request, "recommend", lambda body: (body["history"], lambda i: f"history[{i}]"))


async def list_models(request: web.Request) -> web.Response:
    """What is loaded, with state, placement, traffic share and health per version."""
    state = request.app[SERVING_STATE]
    catalog = state.catalog
    return json_response(
        {
            "models": [mv.describe() for mv in state.versions()],
            "default_model": state.default_model,
            "catalog": None if catalog is None else {"name": catalog.name, "products": len(catalog)},
        }
    )


_RESULT = {
    "type": "object",
    "required": ["id", "title", "score", "position"],
    "properties": {
        "id": {"type": "string"},
        "title": {"type": ["string", "null"]},
        "score": {"type": "number", "description": "cosine similarity"},
        "position": {"type": "integer", "minimum": 1},
    },
}
RESULTS_RESPONSE = {
    "type": "object",
    "required": ["request_id", "model", "version", "results"],
    "properties": {
        "request_id": {"type": "string"},
        "model": {"type": "string"},
        "version": {"type": "string", "description": "the model version that served the request"},
        "results": {"type": "array", "items": _RESULT},
    },
}
MODELS_RESPONSE = {
    "type": "object",
    "required": ["models"],
    "properties": {
        "models": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "version", "state", "backend", "device", "dtype", "traffic_weight",
                             "shadow", "health"],
                "properties": {
                    "name": {"type": "string"},
                    "version": {"type": "string"},
                    "state": {"enum": ["loading", "ready", "failed", "unloaded"]},
                    "backend": {"type": "string"},
                    "device": {"type": "string"},
                    "dtype": {"type": "string"},
                    "traffic_weight": {"type": "number"},
                    "shadow": {"type": "boolean"},
                    "health": {"type": "object"},
                    "error": {"type": ["string", "null"]},
                },
            },
        },
        "default_model": {"type": "string"},
        "catalog": {"type": ["object", "null"]},
    },
}


def add_serving_routes(app: web.Application) -> None:
    """The /v1 serving routes (request schemas from `app[SCHEMAS]`)."""
    schemas = app[SCHEMAS]
    add_route(app, RouteSpec("POST", "/v1/search", search, "search", "Search the catalog",
                             request_schema=schemas.search, response_schema=RESULTS_RESPONSE,
                             error_statuses=_BODY_ERRORS + _MODEL_ERRORS))
    add_route(app, RouteSpec("POST", "/v1/rank", rank, "rank", "Re-rank candidate items for a query",
                             request_schema=schemas.rank, response_schema=RESULTS_RESPONSE,
                             error_statuses=_BODY_ERRORS + (422,) + _MODEL_ERRORS))
    add_route(app, RouteSpec("POST", "/v1/recommend", recommend, "recommend",
                             "Recommend products similar to a shopper's history",
                             request_schema=schemas.recommend, response_schema=RESULTS_RESPONSE,
                             error_statuses=_BODY_ERRORS + (422,) + _MODEL_ERRORS))
    add_route(app, RouteSpec("GET", "/v1/models", list_models, "models", "Loaded model versions",
                             response_schema=MODELS_RESPONSE))
