"""Every serving and ops endpoint on the real model with a small synthetic catalog."""
from __future__ import annotations

import json

from inference_server.api.context import SCHEMAS
from inference_server.api.openapi import body_schema

from .conftest import sample_value
from inference_server.models.torch_backend import cpu_has_native_bf16  # noqa: E402

# dtype auto on CPU: bfloat16 where the CPU computes it natively, else float32.
CPU_AUTO_DTYPE = "bfloat16" if cpu_has_native_bf16() else "float32"


def _catalog(client):
    return client.state.catalog


async def test_search_returns_ranked_catalog_products(make_client):
    client = await make_client()
    drill = next(p for p in _catalog(client) if "Drill" in p.title)
    resp = await client.post("/v1/search", json={"query": drill.title, "k": 5, "user_id": "shopper-1"})
    assert resp.status == 200
    body = await resp.json()
    assert body["model"] == "minilm" and body["version"] == "1"
    assert resp.headers["X-Request-ID"] == body["request_id"]
    results = body["results"]
    assert [r["position"] for r in results] == [1, 2, 3, 4, 5]
    assert results[0]["id"] == drill.id and results[0]["title"] == drill.title
    scores = [r["score"] for r in results]
    assert scores == sorted(scores, reverse=True) and scores[0] > 0.9
    assert all(_catalog(client).get(r["id"]) is not None for r in results)


async def test_search_default_k_and_client_request_id(make_client):
    client = await make_client()
    resp = await client.post("/v1/search", json={"query": "blue paint"}, headers={"X-Request-ID": "abc.DEF-1_2"})
    body = await resp.json()
    assert len(body["results"]) == 10
    assert body["request_id"] == "abc.DEF-1_2" == resp.headers["X-Request-ID"]
    # A malformed client id is replaced, not echoed.
    resp = await client.post("/v1/search", json={"query": "blue paint"}, headers={"X-Request-ID": "bad id!"})
    body = await resp.json()
    assert body["request_id"] != "bad id!" and len(body["request_id"]) == 32


async def test_rank_orders_mixed_catalog_and_titled_items(make_client):
    client = await make_client()
    products = _catalog(client).products
    target = next(p for p in products if "Drill" in p.title)
    other = next(p for p in products if "Drill" not in p.title)
    items = [
        {"id": other.id},
        {"id": "ext-shirt", "title": "red cotton t-shirt for men"},
        {"id": target.id},
        {"id": "ext-drill", "title": target.title},
    ]
    resp = await client.post("/v1/rank", json={"query": target.title, "items": items})
    assert resp.status == 200
    body = await resp.json()
    ids = [r["id"] for r in body["results"]]
    assert sorted(ids) == sorted(i["id"] for i in items)
    assert set(ids[:2]) == {target.id, "ext-drill"}
    assert body["results"][ids.index("ext-shirt")]["title"] == "red cotton t-shirt for men"
    resp = await client.post("/v1/rank", json={"query": target.title, "items": items, "k": 1})
    assert [r["id"] for r in (await resp.json())["results"]] in ([target.id], ["ext-drill"])


async def test_recommend_excludes_history(make_client):
    client = await make_client()
    history = [p.id for p in _catalog(client).products[:3]]
    resp = await client.post("/v1/recommend", json={"history": history, "k": 7, "user_id": "u"})
    assert resp.status == 200
    body = await resp.json()
    ids = [r["id"] for r in body["results"]]
    assert len(ids) == 7 and not set(ids) & set(history)
    assert body["version"] == "1"


async def test_models_health_ready_and_openapi(make_client):
    client = await make_client()
    body = await (await client.get("/v1/models")).json()
    (entry,) = body["models"]
    assert entry["name"] == "minilm" and entry["version"] == "1" and entry["state"] == "ready"
    assert entry["backend"] == "torch" and entry["device"] == "cpu" and entry["dtype"] == CPU_AUTO_DTYPE
    assert entry["traffic_weight"] == 1.0 and entry["shadow"] is False and "warmup" in entry["health"]
    assert body["catalog"] == {"name": "synthetic", "products": 300}
    assert (await (await client.get("/healthz")).json()) == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["status"] == "ready"

    doc = await (await client.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    for path in ("/v1/search", "/v1/rank", "/v1/recommend", "/v1/models", "/healthz", "/readyz", "/metrics"):
        assert path in doc["paths"], path
    search_schema = doc["components"]["schemas"]["SearchRequest"]
    # Generated from the very schema the server validates with.
    assert search_schema == json.loads(json.dumps(body_schema(client.app[SCHEMAS].search)))
    assert search_schema["properties"]["k"]["maximum"] == 100
    assert search_schema["required"] == ["query"] and search_schema["additionalProperties"] is False
    assert doc["paths"]["/v1/search"]["post"]["responses"]["429"]["content"]["application/json"]


async def test_limits_from_config_drive_validation_and_openapi(make_client):
    client = await make_client(server={"limits": {"max_k": 5}})
    resp = await client.post("/v1/search", json={"query": "hammer", "k": 6})
    assert resp.status == 400 and (await resp.json())["error"]["field"] == "k"
    doc = await (await client.get("/openapi.json")).json()
    assert doc["components"]["schemas"]["SearchRequest"]["properties"]["k"]["maximum"] == 5


async def test_requests_counted_with_version(make_client):
    client = await make_client()
    await client.post("/v1/search", json={"query": "lamp"})
    await client.post("/v1/recommend", json={"history": [_catalog(client).products[0].id]})
    reg = client.metrics.registry
    assert sample_value(reg, "inference_requests_total",
                        {"endpoint": "search", "model": "minilm", "version": "1", "status": "200"}) == 1
    assert sample_value(reg, "inference_requests_total",
                        {"endpoint": "recommend", "model": "minilm", "version": "1", "status": "200"}) == 1
    assert sample_value(reg, "inference_request_duration_seconds_count",
                        {"endpoint": "search", "model": "minilm", "version": "1"}) == 1
    assert sample_value(reg, "inference_queue_duration_seconds_count", {"model": "minilm", "version": "1"}) == 1
    assert sample_value(reg, "inference_request_tokens_count", {"model": "minilm", "version": "1"}) >= 1
