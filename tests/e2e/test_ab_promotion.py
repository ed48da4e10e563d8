"""A/B promotion by statistics through the real alert loop: simulated shoppers (who click, add to cart and
buy by true relevance) -> inference server's sequential A/B test -> Prometheus (ab-test rules) ->
Alertmanager -> the server's webhook, which promotes the better version and rolls back the worse one.

The better version is the base model (NDCG@10 0.83 on the synthetic catalog), the worse one the
deliberately degraded version 2 (0.26). Phase 1: version 2 holds the larger share and version 1 is the
canary -> promoted. Phase 2: version 2 is the canary -> rolled back. The threshold canary rules
(canary.yml) are left out of this Prometheus so that only the A/B test's alerts can act; only timing is
shortened (tests/e2e/shorten.py). Bounded: each phase waits at most 4 minutes.
"""
from __future__ import annotations

import sys
import time
import urllib.request
import json

import pytest
import yaml

from devstack.components import start_inference_server
from devstack.localstack import Ports, render_alertmanager, render_prometheus, write_local_secrets
from devstack.processes import ManagedProcess, start_alertmanager, start_prometheus
from tests.e2e.shorten import ALERTMANAGER_ROUTE_TIMING, PROMETHEUS_FLAGS, PROMETHEUS_GLOBAL, shorten_rules
from tests.e2e.test_alert_loop import _start_process, get_json
from tests.support.binaries import require_binary

pytestmark = pytest.mark.slow

PHASE_TIMEOUT_S = 240


def ab_rules_only(rule_file: dict) -> dict:
    """The project's rules, shortened, without the threshold canary group (so only A/B alerts act)."""
    rule_file = shorten_rules(rule_file)
    rule_file["groups"] = [g for g in rule_file.get("groups") or [] if g.get("name") != "canary.rules"]
    return rule_file


def put_json(url: str, body, token: str) -> dict:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="PUT",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_for(what: str, probe, timeout: float, diagnostics) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if probe():
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(1.0)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{diagnostics()}")


def test_better_version_is_promoted_and_worse_one_rolled_back(tmp_path):
    require_binary("prometheus")
    require_binary("prometheus-alertmanager", "alertmanager")
    ports = Ports.free()
    secrets = write_local_secrets(tmp_path / "secrets", ports)
    token = secrets["admin_token"].read_text().strip()
    started: list[ManagedProcess] = []
    try:
        sinks = _start_process([sys.executable, "-m", "devstack.alert_sinks", "--http", f"127.0.0.1:{ports.sinks}",
                                "--smtp", f"127.0.0.1:{ports.smtp}"], tmp_path / "sinks", "alert_sinks",
                               f"http://127.0.0.1:{ports.sinks}/healthz", 30)
        started.append(sinks)
        am_cfg = render_alertmanager(tmp_path / "am-config", ports, secrets, route_overrides=ALERTMANAGER_ROUTE_TIMING,
                                     heartbeat_url=f"http://127.0.0.1:{ports.sinks}/webhook/watchdog")
        alertmanager = start_alertmanager(tmp_path / "alertmanager", am_cfg.read_text(), port=ports.alertmanager)
        started.append(alertmanager)
        prom_cfg = render_prometheus(tmp_path / "prom-config", ports, global_overrides=PROMETHEUS_GLOBAL,
                                     scrape_interval="1s", rule_transform=ab_rules_only)
        prometheus = start_prometheus(tmp_path / "prometheus", prom_cfg.read_text(), port=ports.prometheus,
                                      extra_args=PROMETHEUS_FLAGS)
        started.append(prometheus)
        server = start_inference_server(tmp_path / "server", {
            "admin": {"token_file": str(secrets["admin_token"]), "alerts_token_file": str(secrets["alerts_token"])},
            "feedback": {"token_file": str(secrets["feedback_token"])},
            "model_repository": {"state_dir": str(tmp_path / "server" / "model-repository"),
                                 "version_policy": {"kind": "specific", "versions": ["1", "2"]}},
            "traffic": {"weights": {"2": 60, "1": 40}},
            # a large effect: a wider mixture and a smaller minimum sample keep the test short
            "ab_test": {"min_requests": 150, "mixture_sd": 0.1},
        }, port=ports.server, timeout=240)
        started.append(server)
        loadgen_cfg = tmp_path / "loadgen.yaml"
        loadgen_cfg.write_text(yaml.safe_dump({
            "target": {"url": server.url, "admin_token_file": str(secrets["admin_token"]),
                       "feedback_token_file": str(secrets["feedback_token"]), "timeout_s": 10},
            "rate": {"requests_per_second": 10, "daily_amplitude": 0.0, "max_concurrency": 64},
            "relevance": {"server_config": str(server.extra["config_path"])},
            "report_interval_s": 5, "listen": f"127.0.0.1:{ports.loadgen}", "seed": 5,
        }))
        loadgen = _start_process([sys.executable, "-m", "loadgen", "--config", str(loadgen_cfg)],
                                 tmp_path / "loadgen", "loadgen", f"http://127.0.0.1:{ports.loadgen}/status", 60)
        started.append(loadgen)

        def models() -> dict:
            return {m["version"]: m for m in get_json(f"{server.url}/v1/models")["models"]}

        def diagnostics() -> str:
            parts = []
            for name, fetch in (("models", lambda: {v: m["traffic_weight"] for v, m in models().items()}),
                                ("prometheus alerts", lambda: [(a["labels"]["alertname"], a["state"]) for a in
                                                               get_json(f"{prometheus.url}/api/v1/alerts")["data"]["alerts"]]),
                                ("ab", lambda: prometheus.query("inference_ab_test_decision == 1 or inference_ab_test_requests"))):
                try:
                    parts.append(f"{name}: {fetch()}")
                except Exception as exc:  # noqa: BLE001 - diagnostics must not mask the failure
                    parts.append(f"{name}: unavailable ({exc})")
            parts.append(server.log()[-3000:])
            return "\n".join(parts)

        def report(phase: str, seconds: float) -> None:
            """The A/B figures at decision time (last values Prometheus saw), printed for the record."""
            figures = {}
            for name in ("inference_ab_test_requests", "inference_ab_test_rate", "inference_ab_test_p_value"):
                for sample in prometheus.query(f'last_over_time({name}[10m])'):
                    labels = sample["metric"]
                    if labels.get("metric", "ctr") == "ctr":
                        figures[f"{name} v{labels['version']} {labels.get('role', '')}".strip()] = \
                            round(float(sample["value"][1]), 4)
            print(f"\n{phase}: decided and acted on in {seconds:.0f} s; {figures}")

        # Phase 1: the better version 1 is the canary against the degraded version 2 -> promoted.
        t0 = time.monotonic()
        wait_for("version 1 promoted by CanaryWinsABTest",
                 lambda: models()["1"]["traffic_weight"] == 1.0, PHASE_TIMEOUT_S, diagnostics)
        report("promotion of version 1", time.monotonic() - t0)
        log = server.log()
        assert "CanaryWinsABTest" in log and "promote ok" in log
        # Phase 2: the degraded version 2 as a canary -> rolled back.
        put_json(f"{server.url}/v1/admin/models/minilm/traffic", {"weights": {"1": 60, "2": 40}}, token)
        t0 = time.monotonic()
        wait_for("version 2 rolled back by CanaryLosesABTest",
                 lambda: models()["2"]["traffic_weight"] == 0.0, PHASE_TIMEOUT_S, diagnostics)
        report("rollback of version 2", time.monotonic() - t0)
        assert "CanaryLosesABTest" in server.log() and "rollback ok" in server.log()
        status = get_json(f"http://127.0.0.1:{ports.loadgen}/status")
        ctr = {v: t["ctr"] for v, t in status["versions"].items()}
        assert ctr["1"] > ctr["2"], ctr                     # what the shoppers experienced
        print(f"shoppers' CTR per version over the whole run (loadgen): {ctr}")
    finally:
        for proc in reversed(started):
            proc.stop()
