"""Catalog updates without a restart: the admin endpoint under concurrent search traffic (no 5xx,
removed products never returned once removed, added ones found), bad input, the catalog-file
watcher, the embedding cache written for the new catalog, and the index metrics."""
from __future__ import annotations

import asyncio
import csv
import subprocess

import pytest

from inference_server.api.context import CATALOG_UPDATER
from inference_server.catalog.index import cache_paths
from tests.lifecycle.conftest import sample
from tests.support.binaries import require_binary

NEW = {"id": "NEW-1", "title": "Zephyr Quantum Teapot With Copper Whistle", "brand": "Zephyr",
       "attributes": {"colour": "teal"}}


async def _search(client, query: str, k: int = 10) -> tuple[int, list[str]]:
    resp = await client.post("/v1/search", json={"query": query, "k": k})
    data = await resp.json()
    return resp.status, [hit["id"] for hit in data.get("results", [])] if resp.status == 200 else []


@pytest.mark.parametrize("kind", ["ivf", "exact"])
async def test_add_update_remove_under_concurrent_search(lifecycle_client, kind):
    client = await lifecycle_client(index={"kind": kind, "nprobe": 64})
    catalog = client.state.catalog
    victims = [p for p in catalog.products[:3]]
    statuses: list[int] = []
    removed_seen_after_ack: list[str] = []
    removed_acked: set[str] = set()
    stop = asyncio.Event()

    async def traffic(worker: int) -> None:
        queries = [p.title for p in victims] + ["teapot", "sofa"]
        i = worker
        while not stop.is_set():
            acked_before = set(removed_acked)
            status, ids = await _search(client, queries[i % len(queries)])
            statuses.append(status)
            removed_seen_after_ack.extend(set(ids) & acked_before)
            resp = await client.post("/v1/recommend", json={"history": [catalog.products[10].id], "k": 5})
            statuses.append(resp.status)
            i += 1

    workers = [asyncio.create_task(traffic(w)) for w in range(4)]
    await asyncio.sleep(0.3)
    resp = await client.post("/v1/admin/catalog/changes", headers=client.auth,
                             json={"upsert": [NEW], "remove": [victims[0].id]})
    body = await resp.json()
    assert resp.status == 200, body
    assert body["upserted"] == 1 and body["removed"] == 1 and body["catalog_products"] == len(catalog)
    removed_acked.add(victims[0].id)
    # an update: the second victim gets a new title, the third goes too
    updated = {"id": victims[1].id, "title": "Aurora Levitating Bonsai Planter"}
    resp = await client.post("/v1/admin/catalog/changes", headers=client.auth,
                             json={"upsert": [updated], "remove": [victims[2].id]})
    assert resp.status == 200, await resp.json()
    removed_acked.add(victims[2].id)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.gather(*workers)

    assert statuses and all(s == 200 for s in statuses), sorted(set(statuses))
    assert not removed_seen_after_ack
    status, ids = await _search(client, NEW["title"], k=3)
    assert ids[0] == "NEW-1"
    status, ids = await _search(client, "levitating bonsai planter", k=3)
    assert ids[0] == victims[1].id
    for victim in (victims[0], victims[2]):
        status, ids = await _search(client, victim.title, k=50)
        assert victim.id not in ids
    # removed products are unknown to rank/recommend; the served catalog and the index agree
    resp = await client.post("/v1/recommend", json={"history": [victims[0].id], "k": 5})
    assert resp.status == 422
    mv = client.state.ready_versions()[0]
    assert len(mv.index) == len(client.state.catalog) == len(catalog) - 1
    assert client.state.catalog.get(victims[1].id).title == updated["title"]
    assert sample(client.registry, "inference_index_products", model=mv.name, version=mv.version, kind=kind) \
        == len(catalog) - 1
    assert sample(client.registry, "inference_index_memory_bytes", model=mv.name, version=mv.version,
                  kind=kind) > 0
    assert sample(client.registry, "inference_admin_actions_total", action="catalog_changes", outcome="ok") == 2
    # the new catalog's vectors were written to the embedding cache (a restart loads, not re-embeds)
    await client.app[CATALOG_UPDATER].close()   # waits for the write that follows an applied change
    npy, ids_json = cache_paths(client.state.config.catalog.cache_dir, mv.backend.fingerprint(),
                                client.state.catalog.fingerprint())
    assert npy.is_file() and ids_json.is_file()


async def test_catalog_changes_need_the_token_and_valid_bodies(lifecycle_client):
    client = await lifecycle_client()
    resp = await client.post("/v1/admin/catalog/changes", json={"remove": ["x"]})
    assert resp.status == 401
    bad = [({}, "upsert"), ({"upsert": [{"id": "a"}]}, "upsert[0].title"),
           ({"upsert": [{"id": "a", "title": "t", "price": -1}]}, "upsert[0].price"),
           ({"upsert": [{"id": "a", "title": "t"}], "remove": ["a"]}, "remove"),
           ({"remove": ["a", "a"]}, "remove[1]"), ({"upsert": [{"id": "a", "title": " "}]}, "upsert[0].title")]
    for body, field in bad:
        resp = await client.post("/v1/admin/catalog/changes", headers=client.auth, json=body)
        data = await resp.json()
        assert resp.status == 400, (body, data)
        assert data["error"]["code"] == "validation" and data["error"].get("field") == field, (body, data)
    # removing an unknown id is harmless
    resp = await client.post("/v1/admin/catalog/changes", headers=client.auth, json={"remove": ["NOPE"]})
    assert resp.status == 200 and (await resp.json())["catalog_products"] == len(client.state.catalog)


async def test_watched_catalog_file_is_applied(lifecycle_client, tmp_path):
    path = tmp_path / "products.csv"
    rows = [{"id": f"SKU-{i}", "title": title} for i, title in
            enumerate(["Oak Dining Table", "Velvet Sofa", "Cast Iron Skillet", "Garden Hose 50 ft"])]

    def write(products):
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=["id", "title"])
            writer.writeheader()
            writer.writerows(products)

    write(rows)
    client = await lifecycle_client(catalog={"source": "csv", "path": str(path), "watch": True,
                                             "watch_interval_s": 0.1})
    write(rows[1:] + [{"id": "SKU-9", "title": "Bamboo Bath Mat"}])
    for _ in range(300):
        if "SKU-9" in client.state.catalog and "SKU-0" not in client.state.catalog:
            break
        await asyncio.sleep(0.1)
    assert "SKU-9" in client.state.catalog and "SKU-0" not in client.state.catalog
    status, ids = await _search(client, "bamboo bath mat", k=2)
    assert ids[0] == "SKU-9" and "SKU-0" not in ids
    # a broken file is refused and the last good catalog keeps serving
    path.write_text("id,title\n,missing id\n", encoding="utf-8")
    await asyncio.sleep(0.5)
    assert len(client.state.catalog) == 4
    status, _ = await _search(client, "sofa")
    assert status == 200


async def test_index_metrics_pass_promtool(lifecycle_client):
    promtool = require_binary("promtool")
    client = await lifecycle_client(index={"kind": "ivf"})
    text = await (await client.get("/metrics")).text()
    assert "inference_index_memory_bytes{" in text and "inference_catalog_pending_changes" in text
    result = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
