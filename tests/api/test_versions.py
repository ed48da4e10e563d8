"""Several versions side by side: routing hook, observers, unload and atomic reload under traffic."""
from __future__ import annotations

import asyncio

from inference_server.serving.state import RoutingDecision

from .conftest import sample_value


async def test_versions_route_reload_and_unload(make_client):
    # The core's default router; the model lifecycle (docs/lifecycle.md) would install its traffic policy.
    client = await make_client(model_repository={"enabled": False})
    state = client.state
    v1 = state.get("minilm", "1")
    await state.load_version(v1.spec.model_copy(update={"version": "2"}))
    # Default router: largest weight, newest on ties.
    assert (await (await client.post("/v1/search", json={"query": "mirror"})).json())["version"] == "2"
    v1.traffic_weight, state.get("minilm", "2").traffic_weight = 1.0, 0.0
    assert (await (await client.post("/v1/search", json={"query": "mirror"})).json())["version"] == "1"
    models = await (await client.get("/v1/models")).json()
    assert [(m["version"], m["state"]) for m in models["models"]] == [("1", "ready"), ("2", "ready")]

    # A replacement router (what the traffic policy installs) and an observer see every request.
    seen = []
    state.router = lambda ctx, st: RoutingDecision(st.get("minilm", "2") if ctx.user_id == "b" else st.get("minilm", "1"))
    state.response_observers.append(lambda served: seen.append((served.version, served.endpoint, len(served.result_ids))))
    a = await (await client.post("/v1/search", json={"query": "mirror", "k": 3, "user_id": "a"})).json()
    b = await (await client.post("/v1/search", json={"query": "mirror", "k": 3, "user_id": "b"})).json()
    assert (a["version"], b["version"]) == ("1", "2")
    assert seen == [("1", "search", 3), ("2", "search", 3)]

    # Reload v1 while requests run: none fails, the swap is visible, the old copy is closed.
    old = state.get("minilm", "1")
    traffic = [client.post("/v1/search", json={"query": f"lamp {i}", "user_id": "a"}) for i in range(20)]
    results = await asyncio.gather(state.reload_version(old.spec), *traffic)
    assert all(r.status == 200 for r in results[1:])
    assert state.get("minilm", "1") is not old and old.state == "unloaded" and old.batcher is None

    await state.unload_version("minilm", "2")
    assert state.get("minilm", "2") is None
    resp = await client.post("/v1/search", json={"query": "mirror", "user_id": "b"})
    assert resp.status == 503  # this test router still points "b" at the unloaded version
    assert sample_value(client.metrics.registry, "inference_model_ready", {"model": "minilm", "version": "2"}) == 0


async def test_request_hooks_and_install_version(make_client):
    from inference_server.serving.batching import DynamicBatcher
    from inference_server.errors import ApiError
    from inference_server.serving.state import ModelVersion

    client = await make_client()
    state = client.state
    calls = []

    async def drill(mv):
        calls.append(mv.version)
        if len(calls) == 2:
            raise ApiError(503, "injected_fault", "fault drill", retry_after=1)

    state.request_hooks.append(drill)
    assert (await client.post("/v1/search", json={"query": "rug"})).status == 200
    failed = await client.post("/v1/recommend", json={"history": [state.catalog.products[0].id]})
    assert failed.status == 503 and (await failed.json())["error"]["code"] == "injected_fault"
    assert calls == ["1", "1"]
    state.request_hooks.clear()

    # A version built off to the side (its batcher without a searcher) swapped in atomically.
    old = state.get("minilm", "1")
    new = ModelVersion(old.spec, old.batching)
    new.backend, new.index = old.backend, old.index
    new.batcher = DynamicBatcher(old.backend, old.batching, client.metrics, model="minilm", version="1")
    new.batcher.start()
    new.state = "ready"
    assert state.install_version(new) is old
    await old.close()
    body = await (await client.post("/v1/search", json={"query": "rug", "k": 4})).json()
    assert len(body["results"]) == 4 and body["version"] == "1"
    assert state.get("minilm", "1") is new
