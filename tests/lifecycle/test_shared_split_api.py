"""Two server apps ("replicas") sharing one split file, through their HTTP APIs: an admin change on one
and a rollback webhook on the other reach both; a store that cannot be written is a 503 JSON error."""
from __future__ import annotations

import asyncio
import subprocess

from tests.lifecycle.conftest import sample
from tests.support.binaries import require_binary


async def _replica(lifecycle_client, path):
    client = await lifecycle_client(traffic={"store": {"kind": "file", "path": str(path), "poll_interval_s": 0.05}})
    resp = await client.post("/v1/admin/models/minilm/versions/2/load", headers=client.auth)
    assert resp.status == 200, await resp.text()
    return client


async def _weights(client) -> dict[str, float]:
    resp = await client.get("/v1/admin/models", headers=client.auth)
    return (await resp.json())["traffic"]["weights"]


async def _until(probe, timeout=5.0):
    for _ in range(int(timeout / 0.05)):
        if await probe():
            return True
        await asyncio.sleep(0.05)
    return False


async def test_changes_on_either_replica_reach_both(lifecycle_client, tmp_path):
    path = tmp_path / "split.json"
    a = await _replica(lifecycle_client, path)
    b = await _replica(lifecycle_client, path)
    resp = await a.put("/v1/admin/models/minilm/traffic", json={"weights": {"1": 80, "2": 20}}, headers=a.auth)
    assert resp.status == 200, await resp.text()
    assert await _until(lambda: _coro_eq(_weights(b), {"1": 80.0, "2": 20.0}))
    alert = {"version": "4", "status": "firing", "receiver": "rollback", "groupKey": "g", "alerts": [
        {"status": "firing", "fingerprint": "f1",
         "labels": {"alertname": "CanaryErrorRatioRegression", "action": "rollback", "model": "minilm", "version": "2"}}]}
    resp = await b.post("/v1/alerts", json=alert, headers=b.alerts_auth)
    assert resp.status == 200 and (await resp.json())["results"][0]["outcome"] == "ok"
    assert await _until(lambda: _coro_eq(_weights(a), {"1": 100.0}))
    assert sample(a.registry, "inference_traffic_split_updates_total", model="minilm", origin="remote") >= 1
    assert sample(a.registry, "inference_alert_webhook_actions_total", action="rollback", outcome="ok") == 0
    # The stable history travels with the split: promote on b, roll back on a, both back on version 1.
    resp = await b.post("/v1/admin/models/minilm/promote", json={"version": "2"}, headers=b.auth)
    assert resp.status == 200, await resp.text()
    assert await _until(lambda: _coro_eq(_weights(a), {"2": 100.0}))
    resp = await a.post("/v1/admin/models/minilm/rollback", headers=a.auth)
    assert resp.status == 200 and (await resp.json())["weights"] == {"1": 100.0}
    assert await _until(lambda: _coro_eq(_weights(b), {"1": 100.0}))
    # The split metrics of a shared replica pass promtool's lint like the rest.
    text = await (await a.get("/metrics")).text()
    assert "inference_traffic_split_last_sync_timestamp_seconds{" in text
    lint = subprocess.run([require_binary("promtool"), "check", "metrics"], input=text.encode(), capture_output=True,
                          timeout=60)
    assert lint.returncode == 0 and lint.stdout == b"" and lint.stderr == b"", lint


async def test_unwritable_store_is_a_503_json_error(lifecycle_client, tmp_path):
    path = tmp_path / "split.json"
    a = await _replica(lifecycle_client, path)
    path.with_name(path.name + ".lock").unlink()
    path.with_name(path.name + ".lock").mkdir()  # the lock file cannot be opened any more
    resp = await a.put("/v1/admin/models/minilm/traffic", json={"weights": {"1": 50, "2": 50}}, headers=a.auth)
    assert resp.status == 503, await resp.text()
    body = await resp.json()
    assert body["error"]["code"] == "split_store_unavailable" and "split.json" in body["error"]["message"]
    assert await _weights(a) == {"1": 100.0}  # nothing half-applied
    assert sample(a.registry, "inference_traffic_split_store_errors_total", model="minilm") == 1


async def _coro_eq(coro, expected) -> bool:
    return (await coro) == expected
