"""POST /v1/alerts: a real Alertmanager delivering a rollback alert (and its resolution) to the server,
plus idempotency and the ignored cases on a literal v4 payload."""
from __future__ import annotations

import asyncio
import datetime as dt

import aiohttp

from tests.lifecycle.conftest import sample
from devstack.processes import start_alertmanager


def _now(offset_s: float = 0.0) -> str:
    return (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=offset_s)).isoformat().replace("+00:00", "Z")


def payload(status: str, labels: dict) -> dict:
    """A webhook body exactly as Alertmanager 0.25 sends it (version 4)."""
    return {
        "receiver": "rollback", "status": status, "version": "4", "truncatedAlerts": 0,
        "groupKey": '{}:{alertname="CanaryClickThroughRegression", model="minilm", version="2"}',
        "groupLabels": {"alertname": labels["alertname"]}, "commonLabels": labels, "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [{"status": status, "labels": labels, "annotations": {"summary": "canary CTR regression"},
                    "startsAt": _now(-60), "endsAt": "0001-01-01T00:00:00Z" if status == "firing" else _now(),
                    "generatorURL": "http://127.0.0.1:9090/graph", "fingerprint": "a1b2c3d4e5f60718"}],
    }


ROLLBACK = {"alertname": "CanaryClickThroughRegression", "action": "rollback", "model": "minilm", "version": "2",
            "severity": "warning"}


async def _canary(client) -> None:
    resp = await client.post("/v1/admin/models/minilm/versions/2/load", headers=client.auth)
    assert resp.status == 200, await resp.json()
    resp = await client.put("/v1/admin/models/minilm/traffic", json={"weights": {"1": 80, "2": 20}}, headers=client.auth)
    assert resp.status == 200


async def test_webhook_rollback_is_idempotent_and_ignores_resolved_and_other_alerts(lifecycle_client):
    client = await lifecycle_client()
    await _canary(client)
    resolved = await client.post("/v1/alerts", json=payload("resolved", ROLLBACK), headers=client.alerts_auth)
    assert resolved.status == 200 and (await resolved.json())["results"][0]["outcome"] == "resolved"
    other = await client.post("/v1/alerts", json=payload("firing", {"alertname": "HighLatency", "severity": "page"}),
                              headers=client.alerts_auth)
    result = (await other.json())["results"][0]
    assert (result["action"], result["outcome"]) == ("ignored", "no_action")
    assert client.lifecycle.router.split.weight("2") == 0.2
    first = await (await client.post("/v1/alerts", json=payload("firing", ROLLBACK), headers=client.alerts_auth)).json()
    assert first["results"][0]["outcome"] == "ok" and first["traffic"]["weights"] == {"1": 100.0}
    again = await (await client.post("/v1/alerts", json=payload("firing", ROLLBACK), headers=client.alerts_auth)).json()
    assert again["results"][0]["outcome"] == "noop" and again["traffic"]["weights"] == {"1": 100.0}
    missing = await (await client.post("/v1/alerts", json=payload("firing", {**ROLLBACK, "version": ""}),
                                       headers=client.alerts_auth)).json()
    assert missing["results"][0]["outcome"] == "invalid"
    assert sample(client.registry, "inference_alert_webhook_actions_total", action="rollback", outcome="ok") == 1
    assert sample(client.registry, "inference_alert_webhook_actions_total", action="rollback", outcome="noop") == 1
    assert sample(client.registry, "inference_alert_webhook_actions_total", action="ignored", outcome="resolved") == 1
    models = {m["version"]: m for m in (await (await client.get("/v1/models")).json())["models"]}
    assert models["2"]["traffic_weight"] == 0 and models["2"]["state"] == "ready"


async def test_real_alertmanager_rolls_back_the_canary(lifecycle_client, lifecycle_dirs, tmp_path):
    client = await lifecycle_client()
    await _canary(client)
    config = {
        "route": {"receiver": "rollback", "group_by": ["alertname", "model", "version"], "group_wait": "0s",
                  "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "rollback", "webhook_configs": [{
            "url": f"http://127.0.0.1:{client.server.port}/v1/alerts", "send_resolved": True,
            "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(lifecycle_dirs["alerts_token"])}},
        }]}],
    }
    am = start_alertmanager(tmp_path / "am", config)
    try:
        async with aiohttp.ClientSession() as http:
            async def post_alert(ends_at: str | None) -> None:
                alert = {"labels": ROLLBACK, "annotations": {"summary": "canary CTR regression"}, "startsAt": _now(-5)}
                if ends_at:
                    alert["endsAt"] = ends_at
                async with http.post(f"{am.url}/api/v2/alerts", json=[alert]) as resp:
                    assert resp.status == 200, await resp.text()

            await post_alert(None)
            for _ in range(300):
                if client.lifecycle.router.split.weight("2") == 0:
                    break
                await asyncio.sleep(0.1)
            assert client.lifecycle.router.split.weights == {"1": 1.0}, am.log()[-2000:]
            assert sample(client.registry, "inference_alert_webhook_actions_total", action="rollback", outcome="ok") == 1

            await post_alert(_now(-1))                    # resolved: delivered, changes nothing
            for _ in range(300):
                if sample(client.registry, "inference_alert_webhook_actions_total", action="ignored",
                          outcome="resolved") >= 1:
                    break
                await asyncio.sleep(0.1)
            assert sample(client.registry, "inference_alert_webhook_actions_total", action="ignored",
                          outcome="resolved") >= 1, am.log()[-2000:]
            assert client.lifecycle.router.split.weights == {"1": 1.0}
    finally:
        am.stop()
