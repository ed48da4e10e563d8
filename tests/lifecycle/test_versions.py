"""Versions over HTTP: load/unload/reload under traffic, weighted and sticky routing, shadow, health."""
from __future__ import annotations

import asyncio
import logging
import math
import shutil

from tests.lifecycle.conftest import sample

SEARCH = {"query": "cordless drill", "k": 5}


async def admin(client, method: str, path: str, body=None, status: int = 200):
    resp = await client.request(method, path, json=body, headers=client.auth)
    data = await resp.json()
    assert resp.status == status, (path, resp.status, data)
    return data


async def search(client, user_id=None, **body):
    payload = {**SEARCH, **body}
    if user_id is not None:
        payload["user_id"] = user_id
    resp = await client.post("/v1/search", json=payload)
    data = await resp.json()
    assert resp.status == 200, data
    return data


async def test_load_split_sticky_promote_rollback(lifecycle_client):
    client = await lifecycle_client()
    assert (await search(client))["version"] == "1"
    loaded = await admin(client, "POST", "/v1/admin/models/minilm/versions/2/load")
    assert loaded["state"] == "ready" and loaded["health"]["golden_set"]["ok"]
    # Loaded but without weight: no traffic yet.
    assert {(await search(client, user_id=f"u{i}"))["version"] for i in range(10)} == {"1"}

    split = await admin(client, "PUT", "/v1/admin/models/minilm/traffic", {"weights": {"1": 50, "2": 50}})
    assert split["weights"] == {"1": 50.0, "2": 50.0}
    n = 80
    versions = {}
    for i in range(n):
        versions[f"user-{i}"] = (await search(client, user_id=f"user-{i}"))["version"]
    share = sum(v == "2" for v in versions.values())
    assert abs(share - n / 2) <= 5 * math.sqrt(n / 4), share          # 5-sigma binomial band
    for user in list(versions)[:15]:                                  # sticky
        assert (await search(client, user_id=user))["version"] == versions[user]

    models = {m["version"]: m for m in (await (await client.get("/v1/models")).json())["models"]}
    assert models["2"]["traffic_weight"] == 0.5 and models["2"]["state"] == "ready"
    assert sample(client.registry, "inference_model_traffic_weight_ratio", model="minilm", version="2") == 0.5

    await admin(client, "POST", "/v1/admin/models/minilm/promote", {"version": "2"})
    assert {(await search(client, user_id=f"x{i}"))["version"] for i in range(5)} == {"2"}
    rolled = await admin(client, "POST", "/v1/admin/models/minilm/rollback")
    assert rolled["weights"] == {"1": 100.0}
    assert {(await search(client, user_id=f"x{i}"))["version"] for i in range(5)} == {"1"}


async def test_load_unload_reload_under_concurrent_traffic_has_zero_failures(lifecycle_client):
    client = await lifecycle_client()
    stop = asyncio.Event()
    outcomes: list[tuple[int, str]] = []
    first, second = (p.id for p in client.state.catalog.products[:2])
    bodies = [("/v1/search", {"query": "red hammer", "k": 5}),
              ("/v1/rank", {"query": "steel screws", "items": [{"id": first}, {"id": "x", "title": "box of screws"}]}),
              ("/v1/recommend", {"history": [second], "k": 4})]

    async def shopper(n: int) -> None:
        i = 0
        while not stop.is_set():
            path, body = bodies[(n + i) % len(bodies)]
            resp = await client.post(path, json={**body, "user_id": f"s{n}-{i % 7}"})
            data = await resp.json()
            outcomes.append((resp.status, data.get("version", data.get("error", {}).get("code"))))
            i += 1

    shoppers = [asyncio.create_task(shopper(n)) for n in range(4)]
    try:
        await admin(client, "POST", "/v1/admin/models/minilm/versions/2/load")
        await admin(client, "PUT", "/v1/admin/models/minilm/traffic", {"weights": {"1": 50, "2": 50}})
        await admin(client, "POST", "/v1/admin/models/minilm/versions/1/reload")
        await asyncio.sleep(0.3)
        await admin(client, "POST", "/v1/admin/models/minilm/versions/2/reload")
        await admin(client, "PUT", "/v1/admin/models/minilm/traffic", {"weights": {"2": 100}})
        await admin(client, "POST", "/v1/admin/models/minilm/versions/1/unload")
        await asyncio.sleep(0.3)
        await admin(client, "POST", "/v1/admin/models/minilm/versions/1/load")
        await admin(client, "POST", "/v1/admin/models/minilm/promote", {"version": "1"})
        await admin(client, "POST", "/v1/admin/models/minilm/versions/2/unload")
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await asyncio.gather(*shoppers)
    failures = [o for o in outcomes if o[0] != 200]
    assert not failures, failures[:5]
    assert len(outcomes) >= 20
    assert {v for _, v in outcomes} == {"1", "2"}
    assert [m["version"] for m in (await (await client.get("/v1/models")).json())["models"]] == ["1"]
    assert sample(client.registry, "inference_model_state", model="minilm", version="2", state="unloaded") == 1


async def test_nan_weights_never_get_traffic(lifecycle_client, caplog):
    client = await lifecycle_client()
    caplog.set_level(logging.ERROR, logger="inference_server.lifecycle.manager")
    data = await admin(client, "POST", "/v1/admin/models/minilm/versions/3/load", status=422)
    assert data["error"]["code"] == "health_check_failed" and "finite_weights" in data["error"]["message"]
    models = {m["version"]: m for m in (await (await client.get("/v1/models")).json())["models"]}
    assert models["3"]["state"] == "failed"
    assert models["3"]["health"]["finite_weights"]["ok"] is False
    assert sample(client.registry, "inference_model_health_check_failures_total", model="minilm", version="3",
                  check="finite_weights") == 1
    assert sample(client.registry, "inference_model_health_check_ok", model="minilm", version="3",
                  check="finite_weights") == 0
    assert sample(client.registry, "inference_model_state", model="minilm", version="3", state="failed") == 1
    assert any("version 3" in r.getMessage() and "finite_weights" in r.getMessage() for r in caplog.records)
    refused = await admin(client, "PUT", "/v1/admin/models/minilm/traffic", {"weights": {"1": 50, "3": 50}}, status=409)
    assert refused["error"]["code"] == "conflict"
    assert {(await search(client, user_id=f"n{i}"))["version"] for i in range(8)} == {"1"}


async def test_golden_set_mismatch_never_gets_traffic(lifecycle_client, lifecycle_dirs):
    client = await lifecycle_client()
    lc = client.lifecycle
    # Version 4 was "registered" with the base model's outputs; it now serves different ones.
    source = lc.artifacts["1"].path
    target = lc.repository.artifact_dirs("minilm", "4", client.state.catalog)[1]
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(source, target)
    data = await admin(client, "POST", "/v1/admin/models/minilm/versions/4/load", status=422)
    assert "golden_set" in data["error"]["message"]
    listing = await admin(client, "GET", "/v1/admin/models")
    v4 = next(v for v in listing["versions"] if v["version"] == "4")
    assert v4["state"] == "failed" and v4["health"]["golden_set"]["ok"] is False
    assert v4["health"]["finite_weights"]["ok"] is True
    assert sample(client.registry, "inference_model_health_check_failures_total", model="minilm", version="4",
                  check="golden_set") == 1
    await admin(client, "POST", "/v1/admin/models/minilm/promote", {"version": "4"}, status=409)
    assert (await search(client))["version"] == "1"


async def test_failed_reload_keeps_the_serving_instance(lifecycle_client, tmp_path):
    client = await lifecycle_client()
    lc = client.lifecycle
    registered = lc.artifacts["1"]
    backup = tmp_path / "artifacts-backup"
    shutil.copytree(registered.path, backup)
    serving = client.state.get("minilm", "1")
    golden = registered.golden
    golden.embeddings = golden.embeddings[::-1].copy()       # the registered reference no longer matches
    lc.repository.write_artifacts("minilm", "1", client.state.catalog, golden, registered.drift_reference,
                                  registered.evaluation, model_fingerprint="tampered")
    try:
        await admin(client, "POST", "/v1/admin/models/minilm/versions/1/reload", status=422)
    finally:
        shutil.rmtree(registered.path)
        shutil.copytree(backup, registered.path)
    assert client.state.get("minilm", "1") is serving and serving.state == "ready"
    assert serving.health["reload"]["ok"] is False
    assert (await search(client))["version"] == "1"


async def test_periodic_golden_check_takes_a_drifting_version_out(lifecycle_client):
    client = await lifecycle_client()
    lc = client.lifecycle
    await admin(client, "POST", "/v1/admin/models/minilm/versions/2/load")
    mv2 = client.state.get("minilm", "2")
    assert (await lc.golden_check(mv2)).ok
    assert sample(client.registry, "inference_model_health_check_last_run_timestamp_seconds",
                  model="minilm", version="2") > 0
    golden = lc.artifacts["2"].golden
    golden.topk_ids[:] = [list(reversed(ids))[:1] + ["nope"] * (len(ids) - 1) for ids in golden.topk_ids]
    result = await lc.golden_check(mv2)
    assert not result.ok and mv2.state == "failed"
    assert sample(client.registry, "inference_model_health_check_ok", model="minilm", version="2",
                  check="golden_set") == 0
    # The only other version still serves; the failed one gets nothing even with weight.
    assert {(await search(client, user_id=f"p{i}"))["version"] for i in range(6)} == {"1"}


async def test_shadow_traffic_is_scored_but_never_returned(lifecycle_client):
    client = await lifecycle_client()
    await admin(client, "POST", "/v1/admin/models/minilm/versions/2/load")
    await admin(client, "PUT", "/v1/admin/models/minilm/traffic", {"weights": {"1": 100}, "shadow": ["2"]})
    queries = ["red drill", "oak table", "blue paint", "steel hammer", "garden hose", "wood screws"]
    for i, q in enumerate(queries):
        data = await search(client, user_id=f"s{i}", query=q)
        assert data["version"] == "1"
    await asyncio.sleep(0)
    for _ in range(200):
        if sample(client.registry, "inference_shadow_topk_overlap_ratio_count", model="minilm", version="2") >= 6:
            break
        await asyncio.sleep(0.05)
    assert sample(client.registry, "inference_shadow_requests_total", model="minilm", version="2") == 6
    assert sample(client.registry, "inference_shadow_topk_overlap_ratio_count", model="minilm", version="2") == 6
    assert sample(client.registry, "inference_model_shadow", model="minilm", version="2") == 1
    labels = {"model": "minilm", "version": "2", "feature": "top1_score"}
    assert sample(client.registry, "inference_drift_window_samples", **labels) == 6
    assert client.registry.get_sample_value("inference_drift_psi", labels) is not None
    assert sample(client.registry, "business_requests_served_total", endpoint="search", model="minilm",
                  version="2") == 0   # shadow answers are not shown, so not joinable
