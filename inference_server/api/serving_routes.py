"""Serving endpoints: search, rank, recommend and the model listing.

Handlers stay thin: validate the body, route to a model version, run the vector work, shape the
answer. Timing and outcome go into the request context; the middleware reports them.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from aiohttp import web

from inference_server.api.context import CONFIG, REQUEST_CONTEXT, SCHEMAS, SERVING_STATE, RequestContext, RouteSpec, add_route
from inference_server.errors import ApiError
from inference_server.serving.state import ModelVersion, RoutingContext, ServedResponse, ServingState, normalise
from inference_server.api.schemas import read_json_body

__all__ = ["add_serving_routes"]

_BODY_ERRORS = (400, 413, 415)
_MODEL_ERRORS = (429, 503, 504)


def _route(state: ServingState, ctx: RequestContext, endpoint: str) -> ModelVersion:
    decision = state.route(RoutingContext(endpoint=endpoint, request_id=ctx.request_id, user_id=ctx.user_id))
    ctx.model, ctx.version = decision.primary.name, decision.primary.version
    ctx.extra["shadows"] = decision.shadows
    return decision.primary


def _results(state: ServingState, ids: Sequence[str], scores: Sequence[float],
             titles: Optional[dict[str, str]] = None) -> list[dict]:
    catalog = state.catalog
    out = []
    for position, (product_id, score) in enumerate(zip(ids, scores), start=1):
        title = titles.get(product_id) if titles else None
        if title is None:
            product = catalog.get(product_id)
            title = product.title if product is not None else None
        out.append({"id": product_id, "title": title, "score": round(float(score), 6), "position": position})
    return out


def _answer(state: ServingState, ctx: RequestContext, body: dict, results: list[dict],
            query_tokens: Optional[int]) -> web.Response:
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
            query_tokens=query_tokens,
            k=len(results),
            request=body,
            shadows=ctx.extra.get("shadows", ()),
        )
    )
    return web.json_response(
        {"request_id": ctx.request_id, "model": ctx.model, "version": ctx.version, "results": results}
    )


def _require_products(state: ServingState, ids: Sequence[str], field_of) -> None:
    catalog = state.catalog
    if catalog is None:
        raise state.not_ready_error()
    for i, product_id in enumerate(ids):
        if product_id is not None and catalog.get(product_id) is None:
            raise ApiError.unknown_product(product_id, field_of(i))


async def search(request: web.Request) -> web.Response:
    """Top-k catalog products for a query."""
    app = request.app
    ctx, state = request[REQUEST_CONTEXT], app[SERVING_STATE]
    body = await read_json_body(request, app[SCHEMAS].search, app[CONFIG].server.max_body_bytes)
    ctx.user_id = body.get("user_id")
    mv = _route(state, ctx, "search")
    with mv.in_use():
        await state.run_request_hooks(mv)
        encoded = await mv.encode([body["query"]], deadline=ctx.deadline, request_id=ctx.request_id,
                                  top_k=body["k"])
        ctx.queue_seconds, ctx.compute_seconds = encoded.queue_seconds, encoded.compute_seconds
        ids = [mv.index.ids[r] for r in encoded.rows]
    return _answer(state, ctx, body, _results(state, ids, encoded.scores), encoded.tokens[0])


async def rank(request: web.Request) -> web.Response:
    """Re-rank the given items for a query; items without a title must be catalog products."""
    app = request.app
    ctx, state = request[REQUEST_CONTEXT], app[SERVING_STATE]
    body = await read_json_body(request, app[SCHEMAS].rank, app[CONFIG].server.max_body_bytes)
    ctx.user_id = body.get("user_id")
    items = body["items"]
    _require_products(state, [None if "title" in it else it["id"] for it in items], lambda i: f"items[{i}].id")
    titled = [i for i, it in enumerate(items) if "title" in it]
    mv = _route(state, ctx, "rank")
    with mv.in_use():
        await state.run_request_hooks(mv)
        texts = [body["query"]] + [items[i]["title"] for i in titled]
        encoded = await mv.encode(texts, deadline=ctx.deadline, request_id=ctx.request_id)
        ctx.queue_seconds, ctx.compute_seconds = encoded.queue_seconds, encoded.compute_seconds
        vectors = np.empty((len(items), encoded.vectors.shape[1]), dtype=np.float32)
        if titled:
            vectors[titled] = encoded.vectors[1:]
        from_catalog = [i for i, it in enumerate(items) if "title" not in it]
        if from_catalog:
            rows = [mv.index.row(items[i]["id"]) for i in from_catalog]
            vectors[from_catalog] = mv.index.vectors(rows)
        scores = vectors @ encoded.vectors[0]
    k = min(body.get("k") or len(items), len(items))
    order = np.argsort(-scores, kind="stable")[:k]
    titles = {it["id"]: it["title"] for it in items if "title" in it}
    ids = [items[i]["id"] for i in order]
    return _answer(state, ctx, body, _results(state, ids, scores[order], titles), encoded.tokens[0])


async def recommend(request: web.Request) -> web.Response:
    """Products similar to a shopper's history (mean of the history's vectors), history excluded."""
    app = request.app
    ctx, state = request[REQUEST_CONTEXT], app[SERVING_STATE]
    body = await read_json_body(request, app[SCHEMAS].recommend, app[CONFIG].server.max_body_bytes)
    ctx.user_id = body.get("user_id")
    history = body["history"]
    _require_products(state, history, lambda i: f"history[{i}]")
    mv = _route(state, ctx, "recommend")
    with mv.in_use():
        await state.run_request_hooks(mv)
        rows = [mv.index.row(product_id) for product_id in history]
        profile = normalise(mv.index.vectors(rows).mean(axis=0)).astype(np.float32)
        k = min(body["k"], len(mv.index.ids) - len(set(rows)))
        if k > 0:
            scores, found = mv.index.search(profile[None, :], k, exclude=[set(rows)])
            ids, scores = [mv.index.ids[r] for r in found[0]], scores[0]
        else:
            ids, scores = [], []
    return _answer(state, ctx, body, _results(state, ids, scores), None)


async def list_models(request: web.Request) -> web.Response:
    """What is loaded, with state, placement, traffic share and health per version."""
    state = request.app[SERVING_STATE]
    catalog = state.catalog
    return web.json_response(
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
