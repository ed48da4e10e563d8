"""Readiness: /healthz answers at once, /readyz is 503 (JSON, Retry-After) until the model is warm."""
from __future__ import annotations

import threading

from inference_server.api.app import INITIAL_LOAD

from .conftest import DelegatingBackend, sample_value


async def test_readyz_503_while_loading_then_200(make_client, shared_backend):
    release = threading.Event()

    def slow_factory(spec):
        release.wait(timeout=60)
        return DelegatingBackend(shared_backend)

    client = await make_client(wait_ready=False, backend_factory=slow_factory)
    health = await client.get("/healthz")
    assert health.status == 200
    not_ready = await client.get("/readyz")
    assert not_ready.status == 503
    assert int(not_ready.headers["Retry-After"]) == 5
    assert (await not_ready.json())["error"]["code"] == "not_ready"
    search = await client.post("/v1/search", json={"query": "sofa"})
    assert search.status == 503 and (await search.json())["error"]["code"] == "not_ready"
    models = await (await client.get("/v1/models")).json()
    assert [m["state"] for m in models["models"]] in ([], ["loading"])
    reg = client.metrics.registry
    # The probe's 503 is not a rejected request (it made InferenceRequestsRejected{endpoint="other"}
    # fire after every fresh start); the search request's is.
    for _ in range(3):
        assert (await client.get("/readyz")).status == 503
    assert not sample_value(reg, "inference_rejected_requests_total", {"endpoint": "other", "reason": "not_ready"})
    assert sample_value(reg, "inference_rejected_requests_total", {"endpoint": "search", "reason": "not_ready"}) == 1
    release.set()
    await client.app[INITIAL_LOAD]["task"]
    ready = await client.get("/readyz")
    assert ready.status == 200
    assert (await ready.json())["models"] == [{"name": "minilm", "version": "1"}]
    assert (await client.post("/v1/search", json={"query": "sofa"})).status == 200


async def test_failed_load_keeps_readyz_503_with_reason(make_client):
    def broken_factory(spec):
        raise RuntimeError("weights are corrupt")

    client = await make_client(wait_ready=False, backend_factory=broken_factory)
    await client.app[INITIAL_LOAD]["task"]
    resp = await client.get("/readyz")
    assert resp.status == 503
    assert "weights are corrupt" in (await resp.json())["error"]["message"]
    models = await (await client.get("/v1/models")).json()
    assert models["models"][0]["state"] == "failed" and "corrupt" in models["models"][0]["error"]
    assert (await client.get("/healthz")).status == 200
