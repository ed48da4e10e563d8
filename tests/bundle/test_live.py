"""The bundle against the real stack: a real Prometheus with the project's rules (1 s scrape and
evaluation) scrapes the real inference server, the exporter (real app, fake NVML: no GPU here),
Alertmanager and itself while traffic is driven; then every recording rule and every dashboard query
(variables at their "All" default) must return data, and no rule may fail to evaluate.
"""
from __future__ import annotations

import json
import sys
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml

from tests.bundle import bundle
from tests.bundle.dashboards import queries, substitute
from tests.bundle.sinks import start_http_sink
from devstack.processes import (
    REPO_ROOT,
    ManagedProcess,
    free_port,
    http_json,
    launch,
    running,
    start_alertmanager,
    start_prometheus,
)

server_support = pytest.importorskip("devstack.components", reason="serving-core's test helper is missing")

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "bundle-live-test-token"
ALERTS_TOKEN = "bundle-live-alerts-token"
FEEDBACK_TOKEN = "bundle-live-feedback-token"
RATE_INTERVAL = "10s"  # what Grafana's $__rate_interval is with a 1 s scrape (4 scrapes), with slack
RANGE = "10m"

# The exporter's anomaly job in this test: per-endpoint serving rate, a short robust z-score.
ANOMALY_QUERY = 'sum by (endpoint) (rate(inference_requests_total{endpoint=~"search|rank|recommend"}[5s]))'

# Dashboard queries that cannot return data in a test that lasts minutes, with the reason.
# Keys: (dashboard uid, panel title, refId).
EXCLUDED_PANEL_QUERIES = {
    ("business-kpis", "Click-through rate against last week", "B"):
        "`offset 1w` needs a week of history; the same expression without the offset (ref A) is checked",
}


def _request(url: str, body: dict | bytes | None = None, *, method: str | None = None,
             token: str | None = None) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def _start_fake_gpu_exporter(workdir: Path, prometheus_url: str) -> ManagedProcess:
    """The exporter app with a fake NVML, plus one anomaly job reading the test's Prometheus."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port},
        "nvml": {"enabled": True},
        "anomaly": {
            "prometheus_url": prometheus_url,
            "jobs": [{
                "name": "serving_rate",
                "query": ANOMALY_QUERY,
                "detector": "robust_zscore", "params": {"window": 10}, "step": 1.0, "fit_window": 120.0, "fit_every": 5.0, "infer_every": 1.0,
                "min_fit_points": 5,
            }],
        },
    }
    cfg_path = workdir / "exporter.yaml"
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False))
    exporter = launch("exporter", [sys.executable, "-m", "tests.bundle.fake_gpu_exporter", "--config", str(cfg_path),
                                   "--port", str(port)],
                      workdir=workdir, url=f"http://127.0.0.1:{port}", ready_path="/healthz", timeout=60, cwd=REPO_ROOT)
    return exporter


def _prometheus_config(ports: dict[str, int]) -> str:
    cfg = yaml.safe_load((bundle.PROMETHEUS_DIR / "prometheus.yml").read_text())
    cfg["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    targets = {"inference-server": ports["server"], "exporter": ports["exporter"],
               "prometheus": ports["prometheus"], "alertmanager": ports["alertmanager"]}
    for job in cfg["scrape_configs"]:
        job["scrape_interval"] = "1s"
        job["static_configs"] = [{"targets": [f"127.0.0.1:{targets[job['job_name']]}"]}]
    cfg["alerting"]["alertmanagers"] = [{"static_configs": [{"targets": [f"127.0.0.1:{ports['alertmanager']}"]}]}]
    return yaml.safe_dump(cfg, sort_keys=False)


def _alertmanager_config(tmp_path: Path, slack_url: str, server_url: str) -> str:
    secrets = tmp_path / "secrets"
    secrets.mkdir(parents=True, exist_ok=True)
    (secrets / "slack_webhook_url").write_text(slack_url)
    (secrets / "alerts_token").write_text(ALERTS_TOKEN)
    (secrets / "smtp_password").write_text("unused")
    text = (bundle.ALERTMANAGER_DIR / "alertmanager.yml").read_text()
    text = text.replace("../secrets/", f"{secrets}/").replace("http://127.0.0.1:8000", server_url)
    cfg = yaml.safe_load(text)
    cfg["templates"] = [str(bundle.ALERTMANAGER_DIR / "templates" / "*.tmpl")]
    return yaml.safe_dump(cfg, sort_keys=False)


class Shopper:
    """Drives the server like the storefront: searches, re-ranks, recommendations and the shoppers'
    clicks, carts and purchases joined to them; plus the bad requests real clients send."""

    QUERIES = ["cordless drill", "led light bulb", "garden hose", "paint roller", "shower head",
               "ceiling fan", "door handle", "wood screws", "kitchen faucet", "extension cord"]

    def __init__(self, url: str) -> None:
        self.url = url
        self.events: list[dict] = []

    def _feedback(self, response: dict) -> None:
        results = response.get("results") or []
        if not results:
            return
        rid = response["request_id"]
        top = results[0]
        self.events.append({"request_id": rid, "event_id": uuid.uuid4().hex, "type": "click",
                            "product_id": top["id"], "position": top["position"]})
        if len(self.events) % 2 == 0:
            self.events.append({"request_id": rid, "event_id": uuid.uuid4().hex, "type": "add_to_cart",
                                "product_id": top["id"], "position": top["position"]})
        if len(self.events) % 3 == 0:
            self.events.append({"request_id": rid, "event_id": uuid.uuid4().hex, "type": "purchase",
                                "product_id": top["id"], "position": top["position"]})   # priced from the catalog

    def shop(self, i: int, allowed: tuple[int, ...] = (200,)) -> None:
        """One shopper visit: a search, a re-rank of its results and recommendations from them."""
        status, found = _request(f"{self.url}/v1/search", {"query": self.QUERIES[i % len(self.QUERIES)], "k": 10})
        assert status in allowed, found
        if status != 200:
            return
        self._feedback(found)
        ids = [r["id"] for r in found["results"]]
        status, ranked = _request(f"{self.url}/v1/rank", {"query": self.QUERIES[(i + 3) % len(self.QUERIES)],
                                                          "items": [{"id": x} for x in ids]})
        assert status in allowed, ranked
        if status == 200:
            self._feedback(ranked)
        status, recs = _request(f"{self.url}/v1/recommend", {"history": ids[:2], "k": 5})
        assert status in allowed, recs
        if status == 200:
            self._feedback(recs)

    def send_feedback(self) -> None:
        events, self.events = self.events, []
        for start in range(0, len(events), 100):
            status, body = _request(f"{self.url}/v1/feedback", {"events": events[start:start + 100]},
                                    token=FEEDBACK_TOKEN)
            assert status == 200, body

    def bad_requests(self) -> None:
        assert _request(f"{self.url}/v1/search", b"{not json")[0] == 400
        assert _request(f"{self.url}/v1/search", {"query": "drill", "k": 0})[0] == 400
        assert _request(f"{self.url}/v1/recommend", {"history": ["NO-SUCH-PRODUCT"], "k": 5})[0] in (400, 404, 422)
        assert _request(f"{self.url}/v1/feedback", {"request_id": "unknown", "event_id": "e1", "type": "click",
                                                   "product_id": "x"}, token=FEEDBACK_TOKEN)[0] in (200, 400, 404)

    def burst(self, n: int) -> list[int]:
        """n concurrent searches with long queries: more texts than a small queue holds -> some 429s."""
        def one(j: int) -> int:
            return _request(f"{self.url}/v1/search", {"query": f"{self.QUERIES[j % 10]} " * 20, "k": 5})[0]
        with ThreadPoolExecutor(max_workers=n) as pool:
            return list(pool.map(one, range(n)))


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bundle-live")
    ports = {"prometheus": free_port(), "server": free_port(), "alertmanager": free_port()}
    slack = start_http_sink()
    with running(_start_fake_gpu_exporter(tmp / "exporter", f"http://127.0.0.1:{ports['prometheus']}")) as exporter:
        ports["exporter"] = int(exporter.url.rsplit(":", 1)[1])
        am_config = _alertmanager_config(tmp / "am", f"{slack.url}/slack", f"http://127.0.0.1:{ports['server']}")
        with running(start_alertmanager(tmp / "am", am_config, port=ports["alertmanager"],
                                        extra_args=["--cluster.gossip-interval=10ms"])):
            rule_files = {f"rules/{p.name}": p for p in bundle.rule_files()}
            with running(start_prometheus(tmp / "prom", _prometheus_config(ports), port=ports["prometheus"],
                                          copy_files=rule_files)) as prom:
                overrides = {
                    # a small queue so a burst overflows it; short joins so NDCG is observed in the test
                    "batching": {"max_queue_size": 16},
                    "feedback": {"ttl_s": 2.0, "sweep_interval_s": 0.5},
                    "drift": {"min_samples": 10},
                    "model_repository": {"state_dir": str(tmp / "model-repository")},
                    # a shared split store, so the split's sync gauge (TrafficSplitStoreStale) is exported too
                    "traffic": {"store": {"kind": "file", "path": str(tmp / "split.json")}},
                }
                server = server_support.start_inference_server(
                    tmp / "server", overrides, port=ports["server"], timeout=150,
                    env={"INFERENCE_ADMIN_TOKEN": ADMIN_TOKEN, "INFERENCE_ALERTS_TOKEN": ALERTS_TOKEN,
                         "INFERENCE_FEEDBACK_TOKEN": FEEDBACK_TOKEN})
                with running(server):
                    _drive(server.url)
                    _wait_for_rule_data(prom)
                    yield prom
    slack.close()


def _drive(url: str) -> None:
    shopper = Shopper(url)
    admin = f"{url}/v1/admin/models/minilm"
    # a second version: shadow first (shadow metrics), then a 90/10 canary split
    status, body = _request(f"{admin}/versions/2/load", {}, method="POST", token=ADMIN_TOKEN)
    assert status == 200, body
    status, body = _request(f"{admin}/traffic", {"weights": {"1": 100}, "shadow": ["2"]}, method="PUT",
                            token=ADMIN_TOKEN)
    assert status == 200, body
    for i in range(4):
        shopper.shop(i)
    status, body = _request(f"{admin}/traffic", {"weights": {"1": 90, "2": 10}, "shadow": []}, method="PUT",
                            token=ADMIN_TOKEN)
    assert status == 200, body
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(shopper.shop, range(60)))
    shopper.send_feedback()
    shopper.bad_requests()
    statuses = shopper.burst(48)
    assert 429 in statuses, statuses
    # a short fault drill: injected 503s and latency, then cleared
    status, body = _request(f"{url}/v1/admin/faults", {"error_rate": 0.3, "latency_ms": 5, "duration_s": 30},
                            token=ADMIN_TOKEN)
    assert status == 200, body
    for i in range(10):
        shopper.shop(i, allowed=(200, 503))
    status, body = _request(f"{url}/v1/admin/faults", method="DELETE", token=ADMIN_TOKEN)
    assert status == 200, body
    # Alertmanager's webhook: an alert the server does not act on (no action=rollback)
    status, body = _request(f"{url}/v1/alerts", {
        "version": "4", "status": "firing", "receiver": "rollback", "groupLabels": {}, "commonLabels": {},
        "commonAnnotations": {}, "externalURL": "http://127.0.0.1:9093", "groupKey": "{}:{}", "truncatedAlerts": 0,
        "alerts": [{"status": "firing", "labels": {"alertname": "Test"}, "annotations": {},
                    "startsAt": "2026-01-01T00:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
                    "generatorURL": "", "fingerprint": "0"}]}, token=ALERTS_TOKEN)
    assert status == 200, body
    # keep traffic flowing while the rules catch up: rates need two scrapes of every counter
    for i in range(20):
        shopper.shop(i)
    shopper.send_feedback()


def _record_names() -> list[str]:
    return sorted({r.name for r in bundle.recording_rules()})


def _wait_for_rule_data(prom, timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(prom.query(name) for name in _record_names()):
            return
        time.sleep(2)


def test_every_recording_rule_returns_data(live):
    empty = [name for name in _record_names() if not live.query(name)]
    assert not empty, f"recording rules without data: {empty}"


def test_no_rule_fails_to_evaluate(live):
    groups = http_json(f"{live.url}/api/v1/rules")["data"]["groups"]
    assert {g["file"].rsplit("/", 1)[-1] for g in groups} == {p.name for p in bundle.rule_files()}
    broken = [(g["name"], r["name"], r.get("lastError")) for g in groups for r in g["rules"] if r["health"] != "ok"]
    assert not broken, broken


def test_watchdog_fires_and_reaches_alertmanager(live):
    alerts = http_json(f"{live.url}/api/v1/alerts")["data"]["alerts"]
    assert any(a["labels"]["alertname"] == "Watchdog" and a["state"] == "firing" for a in alerts)


def test_every_dashboard_query_returns_data(live):
    checked, empty = 0, []
    for query in queries():
        if (query.dashboard, query.panel_title, query.ref_id) in EXCLUDED_PANEL_QUERIES:
            continue
        expr = substitute(query.expr, rate_interval=RATE_INTERVAL, range_=RANGE)
        if not live.query(expr):
            empty.append(f"{query.key}: {expr}")
        checked += 1
    assert checked >= 100
    assert not empty, "dashboard queries without data:\n" + "\n".join(empty)


def test_exclusions_name_existing_queries(live):
    keys = {(q.dashboard, q.panel_title, q.ref_id) for q in queries()}
    assert set(EXCLUDED_PANEL_QUERIES) <= keys


def test_dashboard_variables_have_values(live):
    """The label_values() queries behind the model, version, instance, gpu and anomaly_job pickers."""
    for label, metric in [("model", "inference_model_info"), ("version", "inference_model_info"),
                          ("instance", "nvidia_gpu_nvml_up"), ("gpu", "nvidia_gpu_info"),
                          ("anomaly_job", "anomaly_score")]:
        values = http_json(f"{live.url}/api/v1/label/{label}/values?{urlencode({'match[]': metric})}")["data"]
        assert values, f"no values of {label} on {metric}"
    versions = http_json(f"{live.url}/api/v1/label/version/values?{urlencode({'match[]': 'inference_model_info'})}")
    assert {"1", "2"} <= set(versions["data"])


def test_every_metric_the_rules_use_is_exported(live):
    """Alerts on metrics that never appear would never fire: every component metric a rule reads
    must exist in the running stack (docs/metrics.md says which component owns it)."""
    contract = bundle.contract_metric_names()
    used = set()
    for rule in bundle.all_rules():
        used |= {bundle.base_metric(name, contract) for name in bundle.source_metrics_in(rule.body["expr"])}
    missing = sorted(name for name in used if not live.query(f'count({{__name__=~"{name}(_bucket|_total)?"}})'))
    assert not missing, f"metrics used by rules but not exported: {missing}"
