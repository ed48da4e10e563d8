"""/metrics: names, types and labels of docs/metrics.md; promtool-clean; OpenMetrics exemplars."""
from __future__ import annotations

import subprocess

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from tests.support.binaries import require_binary
from inference_server.models.torch_backend import cpu_has_native_bf16  # noqa: E402

# dtype auto on CPU: bfloat16 where the CPU computes it natively, else float32.
CPU_AUTO_DTYPE = "bfloat16" if cpu_has_native_bf16() else "float32"


EXPECTED = {
    # name: (type, label names)
    "inference_requests": ("counter", {"endpoint", "model", "version", "status"}),
    "inference_request_duration_seconds": ("histogram", {"endpoint", "model", "version"}),
    "inference_queue_duration_seconds": ("histogram", {"model", "version"}),
    "inference_compute_duration_seconds": ("histogram", {"model", "version"}),
    "inference_batch_size": ("histogram", {"model", "version"}),
    "inference_request_tokens": ("histogram", {"model", "version"}),
    "inference_queue_depth": ("gauge", {"model", "version"}),
    "inference_queue_capacity": ("gauge", {"model", "version"}),
    "inference_requests_in_flight": ("gauge", {"endpoint"}),
    "inference_rejected_requests": ("counter", {"endpoint", "reason"}),
    "inference_model_errors": ("counter", {"model", "version", "reason"}),
    "inference_model_info": ("gauge", {"model", "version", "backend", "device", "dtype"}),
    "inference_model_ready": ("gauge", {"model", "version"}),
    "inference_model_load_duration_seconds": ("gauge", {"model", "version"}),
    "inference_model_warmup_duration_seconds": ("gauge", {"model", "version"}),
    "inference_catalog_products": ("gauge", {"catalog"}),
    "inference_index_build_duration_seconds": ("gauge", {"catalog"}),
}
LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3,
                   0.5, 0.75, 1.0, 2.5, 5.0, 10.0, float("inf")]


async def _traffic(client) -> None:
    product = client.state.catalog.products[0].id
    await client.post("/v1/search", json={"query": "oak dining table", "k": 3, "user_id": "secret-user"})
    await client.post("/v1/rank", json={"query": "table", "items": [{"id": product}, {"id": "n", "title": "chair"}]})
    await client.post("/v1/recommend", json={"history": [product], "k": 2})
    await client.post("/v1/search", json={"query": ""})
    await client.post("/v1/search", data=b"{", headers={"Content-Type": "application/json"})
    await client.post("/v1/recommend", json={"history": ["missing"]})
    await client.get("/nowhere")
    await client.delete("/v1/search")


async def test_metrics_match_the_contract(make_client):
    client = await make_client()
    await _traffic(client)
    resp = await client.get("/metrics")
    assert resp.status == 200 and resp.content_type == "text/plain"
    text = await resp.text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name, (kind, labels) in EXPECTED.items():
        assert name in families, name
        family = families[name]
        assert family.type == kind, (name, family.type)
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        assert samples, f"{name} has no samples"
        for sample in samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)
    info = families["inference_model_info"].samples[0].labels
    assert info == {"model": "minilm", "version": "1", "backend": "torch", "device": "cpu", "dtype": CPU_AUTO_DTYPE}
    products = families["inference_catalog_products"].samples[0]
    assert products.labels == {"catalog": "synthetic"} and products.value == 300
    ready = families["inference_model_ready"].samples[0]
    assert ready.value == 1
    buckets = [float(s.labels["le"]) for s in families["inference_request_duration_seconds"].samples
               if s.name.endswith("_bucket") and s.labels["endpoint"] == "search" and s.labels["version"] == "1"]
    assert buckets == LATENCY_BUCKETS
    reasons = {s.labels["reason"] for s in families["inference_rejected_requests"].samples
               if s.name.endswith("_total")}
    assert {"validation", "invalid_json", "unknown_product", "not_found", "method_not_allowed"} <= reasons
    # Nothing user-provided leaks into labels.
    assert "secret-user" not in text and "oak dining table" not in text


async def test_promtool_check_metrics_is_clean(make_client):
    promtool = require_binary("promtool")
    client = await make_client()
    await _traffic(client)
    text = await (await client.get("/metrics")).text()
    result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60)
    assert result.returncode == 0 and result.stdout == b"" and result.stderr == b"", result


async def test_openmetrics_carries_request_id_exemplars(make_client):
    client = await make_client()
    resp = await client.post("/v1/search", json={"query": "brass door knob"}, headers={"X-Request-ID": "trace-42"})
    assert resp.status == 200
    plain = await (await client.get("/metrics")).text()
    assert "trace-42" not in plain  # exemplars only in OpenMetrics
    om = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.headers["Content-Type"].startswith("application/openmetrics-text")
    families = {f.name: f for f in parse_openmetrics(await om.text())}
    for name in ("inference_request_duration_seconds", "inference_queue_duration_seconds"):
        exemplars = [s.exemplar for s in families[name].samples if s.exemplar is not None]
        assert any(e.labels == {"request_id": "trace-42"} for e in exemplars), name


def test_remembered_children_are_the_registered_series():
    from inference_server.serving.metrics import ServerMetrics

    metrics = ServerMetrics(process_metrics=False)
    first = metrics.child(metrics.requests, "search", "minilm", "1", "200")
    assert metrics.child(metrics.requests, "search", "minilm", "1", "200") is first
    first.inc()
    metrics.child(metrics.requests, "search", "minilm", "1", "503").inc(2)
    get = metrics.registry.get_sample_value
    labels = {"endpoint": "search", "model": "minilm", "version": "1"}
    assert get("inference_requests_total", {**labels, "status": "200"}) == 1.0
    assert get("inference_requests_total", {**labels, "status": "503"}) == 2.0
