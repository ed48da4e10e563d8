"""Admin API: auth on every route, bad input on every new route (4xx JSON, never 500), fault drills,
and a promtool-clean /metrics with the lifecycle metrics present."""
from __future__ import annotations

import subprocess

from tests.lifecycle.conftest import ADMIN_TOKEN, sample
from tests.support.binaries import require_binary

ADMIN_ROUTES = [
    ("GET", "/v1/admin/models", None),
    ("POST", "/v1/admin/models/minilm/versions/2/load", None),
    ("POST", "/v1/admin/models/minilm/versions/2/unload", None),
    ("POST", "/v1/admin/models/minilm/versions/1/reload", None),
    ("PUT", "/v1/admin/models/minilm/traffic", {"weights": {"1": 100}}),
    ("POST", "/v1/admin/models/minilm/promote", {"version": "1"}),
    ("POST", "/v1/admin/models/minilm/rollback", None),
    ("GET", "/v1/admin/faults", None),
    ("POST", "/v1/admin/faults", {"latency_ms": 5, "duration_s": 1}),
    ("DELETE", "/v1/admin/faults", None),
    ("POST", "/v1/alerts", {"version": "4", "status": "firing", "alerts": []}),
]


async def test_every_admin_route_needs_the_token(lifecycle_client):
    client = await lifecycle_client()
    cases = [({}, 401), ({"Authorization": "Basic dXNlcjpwYXNz"}, 401), ({"Authorization": "Bearer"}, 401),
             ({"Authorization": "Bearer a b"}, 401), ({"Authorization": "Bearer wrong-token"}, 403),
             ({"Authorization": f"Bearer {ADMIN_TOKEN}x"}, 403)]
    for method, path, body in ADMIN_ROUTES:
        for headers, status in cases:
            resp = await client.request(method, path, json=body, headers=headers)
            data = await resp.json()
            assert resp.status == status, (method, path, headers, data)
            assert data["error"]["code"] == ("unauthorized" if status == 401 else "forbidden")
            if status == 401:
                assert resp.headers["WWW-Authenticate"].startswith("Bearer")
    # nothing changed, and every refusal was counted and nothing passed
    assert client.lifecycle.router.split.weights == {"1": 1.0}
    assert client.state.get("minilm", "2") is None
    assert sample(client.registry, "inference_admin_actions_total", action="load", outcome="unauthorized") == 4
    assert sample(client.registry, "inference_admin_actions_total", action="load", outcome="forbidden") == 2
    assert sample(client.registry, "inference_admin_actions_total", action="load", outcome="ok") == 0
    assert sample(client.registry, "inference_alert_webhook_actions_total", action="ignored", outcome="forbidden") == 2
    resp = await client.get("/v1/admin/models", headers=client.auth)
    assert resp.status == 200
    assert sample(client.registry, "inference_admin_actions_total", action="list", outcome="ok") == 1


async def test_admin_api_is_off_without_a_token(lifecycle_client, monkeypatch):
    monkeypatch.delenv("INFERENCE_ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("INFERENCE_ALERTS_TOKEN", raising=False)
    client = await lifecycle_client(admin={"token_file": None})
    resp = await client.get("/v1/admin/models", headers=client.auth)
    assert resp.status == 403 and "no token" in (await resp.json())["error"]["message"]


BAD = [
    # (method, path, raw body or json, content type, expected status, expected code)
    ("POST", "/v1/feedback", b"{not json", "application/json", 400, "invalid_json"),
    ("POST", "/v1/feedback", b"\xff\xfe", "application/json", 400, "invalid_encoding"),
    ("POST", "/v1/feedback", b"[]", "application/json", 400, "validation"),
    ("POST", "/v1/feedback", b'{"events": []}', "application/json", 400, "validation"),
    ("POST", "/v1/feedback", b'{"events": "x"}', "application/json", 400, "validation"),
    ("POST", "/v1/feedback", b'{"events": [{}], "extra": 1}', "application/json", 400, "validation"),
    ("POST", "/v1/feedback", b'{"request_id": 5}', "application/json", 400, "validation"),
    ("POST", "/v1/feedback", b'{"request_id": "r", "event_id": "e", "type": "view", "product_id": "p"}',
     "application/json", 400, "validation"),
    ("POST", "/v1/feedback", b"x", "text/plain", 415, "unsupported_media_type"),
    ("POST", "/v1/feedback", b'{"events": [' + b",".join([b"{}"] * 1001) + b"]}", "application/json", 400, "validation"),
    ("GET", "/v1/feedback", None, None, 405, "method_not_allowed"),
    ("PUT", "/v1/admin/models/minilm/traffic", b"{", "application/json", 400, "invalid_json"),
    ("PUT", "/v1/admin/models/minilm/traffic", b"{}", "application/json", 400, "validation"),
    ("PUT", "/v1/admin/models/minilm/traffic", b'{"weights": {"1": -5}}', "application/json", 400, "validation"),
    ("PUT", "/v1/admin/models/minilm/traffic", b'{"weights": {"1": "x"}}', "application/json", 400, "validation"),
    ("PUT", "/v1/admin/models/minilm/traffic", b'{"weights": {"1": 0}}', "application/json", 400, "validation"),
    ("PUT", "/v1/admin/models/minilm/traffic", b'{"weights": {"abc": 1}}', "application/json", 400, "validation"),
    ("PUT", "/v1/admin/models/minilm/traffic", b'{"weights": {"9": 100}}', "application/json", 404, "not_found"),
    ("PUT", "/v1/admin/models/minilm/traffic", b'{"weights": {"2": 100}}', "application/json", 409, "conflict"),
    ("PUT", "/v1/admin/models/minilm/traffic", b'{"weights": {"1": 1}, "shadow": ["1"]}', "application/json", 400, "validation"),
    ("PUT", "/v1/admin/models/minilm/traffic", b'{"weights": {"1": 1}, "shadow": "2"}', "application/json", 400, "validation"),
    ("PUT", "/v1/admin/models/other/traffic", b'{"weights": {"1": 1}}', "application/json", 404, "not_found"),
    ("POST", "/v1/admin/models/minilm/promote", b'{"version": 2}', "application/json", 400, "validation"),
    ("POST", "/v1/admin/models/minilm/promote", b'{}', "application/json", 400, "validation"),
    ("POST", "/v1/admin/models/minilm/promote", b'{"version": "2"}', "application/json", 409, "conflict"),
    ("POST", "/v1/admin/models/minilm/rollback", None, None, 409, "conflict"),
    ("POST", "/v1/admin/models/minilm/versions/abc/load", None, None, 400, "validation"),
    ("POST", "/v1/admin/models/minilm/versions/0/load", None, None, 400, "validation"),
    ("POST", "/v1/admin/models/minilm/versions/99/load", None, None, 404, "not_found"),
    ("POST", "/v1/admin/models/minilm/versions/1/load", None, None, 409, "conflict"),
    ("POST", "/v1/admin/models/minilm/versions/2/unload", None, None, 409, "conflict"),
    ("POST", "/v1/admin/models/minilm/versions/1/unload", None, None, 409, "conflict"),
    ("POST", "/v1/admin/models/minilm/versions/2/reload", None, None, 409, "conflict"),
    ("POST", "/v1/admin/models/minilm/versions/1/delete", None, None, 404, "not_found"),
    ("POST", "/v1/admin/faults", b'{"latency_ms": 10}', "application/json", 400, "validation"),
    ("POST", "/v1/admin/faults", b'{"error_rate": 2, "duration_s": 1}', "application/json", 400, "validation"),
    ("POST", "/v1/admin/faults", b'{"duration_s": 1}', "application/json", 400, "validation"),
    ("POST", "/v1/admin/faults", b'{"latency_ms": 5, "duration_s": 1, "version": "77"}', "application/json", 404, "not_found"),
    ("POST", "/v1/admin/faults", b'{"latency_ms": 5, "duration_s": 1, "x": 1}', "application/json", 400, "validation"),
    ("POST", "/v1/alerts", b"{", "application/json", 400, "invalid_json"),
    ("POST", "/v1/alerts", b'{"version": "3", "status": "firing", "alerts": []}', "application/json", 400, "validation"),
    ("POST", "/v1/alerts", b'{"version": "4", "status": "weird", "alerts": []}', "application/json", 400, "validation"),
    ("POST", "/v1/alerts", b'{"version": "4", "status": "firing", "alerts": {}}', "application/json", 400, "validation"),
    ("POST", "/v1/alerts", b'{"version": "4", "status": "firing", "alerts": [{"status": "firing", "labels": {"a": 1}}]}',
     "application/json", 400, "validation"),
    ("POST", "/v1/alerts", b'{"version": "4", "status": "firing", "alerts": [5]}', "application/json", 400, "validation"),
]


async def test_bad_input_on_new_routes_is_a_4xx_json_error(lifecycle_client):
    client = await lifecycle_client()
    for method, path, body, ctype, status, code in BAD:
        headers = dict({"/v1/feedback": client.feedback_auth, "/v1/alerts": client.alerts_auth}.get(path, client.auth))
        if ctype:
            headers["Content-Type"] = ctype
        resp = await client.request(method, path, data=body, headers=headers)
        data = await resp.json()
        assert (resp.status, data["error"]["code"]) == (status, code), (method, path, body, data)
        assert data["error"]["message"]
    assert sample(client.registry, "inference_requests_total", endpoint="admin", model="", version="", status="500") == 0
    assert (await client.post("/v1/search", json={"query": "drill"})).status == 200   # still serving


async def test_fault_drill_latency_and_errors_per_version(lifecycle_client):
    client = await lifecycle_client()
    resp = await client.post("/v1/admin/faults", json={"error_rate": 1.0, "version": "1", "duration_s": 60},
                             headers=client.auth)
    assert resp.status == 200 and (await resp.json())["fault"]["error_rate"] == 1.0
    failed = await client.post("/v1/search", json={"query": "drill"})
    body = await failed.json()
    assert failed.status == 503 and body["error"]["code"] == "injected_fault" and failed.headers["Retry-After"]
    assert sample(client.registry, "inference_injected_faults_total", kind="error", model="minilm", version="1") == 1
    assert sample(client.registry, "inference_rejected_requests_total", endpoint="search", reason="injected_fault") == 1
    assert sample(client.registry, "inference_fault_injection_active") == 1
    resp = await client.post("/v1/admin/faults", json={"latency_ms": 20, "duration_s": 60}, headers=client.auth)
    assert resp.status == 200
    assert (await client.post("/v1/search", json={"query": "drill"})).status == 200
    assert sample(client.registry, "inference_injected_faults_total", kind="latency", model="minilm", version="1") == 1
    resp = await client.delete("/v1/admin/faults", headers=client.auth)
    assert (await resp.json())["cleared"] is True
    assert sample(client.registry, "inference_fault_injection_active") == 0
    assert (await client.post("/v1/search", json={"query": "drill"})).status == 200


async def test_promtool_check_metrics_is_clean_with_lifecycle_metrics(lifecycle_client):
    promtool = require_binary("promtool")
    client = await lifecycle_client()
    served = await (await client.post("/v1/search", json={"query": "drill", "k": 3},
                                      headers={"X-Request-ID": "r-1"})).json()
    await client.post("/v1/feedback", json={"request_id": "r-1", "event_id": "e-1", "type": "purchase",
                                            "product_id": served["results"][0]["id"]},
                      headers=client.feedback_auth)
    await client.post("/v1/admin/faults", json={"latency_ms": 1, "duration_s": 5}, headers=client.auth)
    await client.post("/v1/search", json={"query": "hammer"})
    text = await (await client.get("/metrics")).text()
    for name in ("inference_model_traffic_weight_ratio", "inference_model_state", "inference_model_health_check_ok",
                 "inference_admin_actions_total", "business_revenue_total", "business_feedback_events_total",
                 "inference_drift_window_samples", "inference_injected_faults_total", "business_feedback_store_requests"):
        assert name in text, name
    out = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert out.returncode == 0 and out.stdout == "" and out.stderr == "", out.stdout + out.stderr


async def test_model_yaml_that_is_not_utf8_is_a_422_naming_the_file_and_the_list_keeps_working(lifecycle_client,
                                                                                                lifecycle_dirs):
    bad = lifecycle_dirs["root"] / "minilm" / "7"
    bad.mkdir(parents=True)
    (bad / "model.yaml").write_bytes(b"description: caf\xe9 \xff\xfe\n")
    client = await lifecycle_client()
    resp = await client.post("/v1/admin/models/minilm/versions/7/load", headers=client.auth)
    error = (await resp.json())["error"]
    assert resp.status == 422 and str(bad / "model.yaml") in error["message"], error
    listing = await client.get("/v1/admin/models", headers=client.auth)
    assert listing.status == 200
    entry = next(v for v in (await listing.json())["versions"] if v["version"] == "7")
    assert "model.yaml" in entry["config_error"]
