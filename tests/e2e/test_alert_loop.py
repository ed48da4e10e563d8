"""The closed loop, end to end, with real components: shoppers (the loadgen) -> inference server ->
Prometheus (the project's rules) -> Alertmanager (the project's routes and templates) -> a
Slack-compatible webhook sink, an SMTP sink, and the server's own rollback webhook.

Real processes: inference server, exporter, Prometheus, Alertmanager, the loadgen and the alert sinks
(aiohttp + aiosmtpd). Only timing is shortened in copies of the configs (tests/e2e/shorten.py says
exactly what). Faults are injected through the loadgen's drill API, which drives the server's admin API.
"""
from __future__ import annotations

import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest
import yaml

from devstack.localstack import Ports, render_alertmanager, render_prometheus, write_local_secrets
from tests.e2e.polling import eventually
from tests.e2e.shorten import ALERTMANAGER_ROUTE_TIMING, PROMETHEUS_FLAGS, PROMETHEUS_GLOBAL, shorten_rules
from devstack.components import start_exporter
from devstack.processes import REPO_ROOT, ManagedProcess, launch, start_alertmanager, start_prometheus
from devstack.components import start_inference_server
from tests.support.binaries import require_binary

pytestmark = pytest.mark.slow

PAGE = "InferenceErrorBudgetBurn"
PAGE_SUBJECT = re.compile(r"^\[FIRING:\d+\] InferenceErrorBudgetBurn \(inference-server, critical\)$")
RESOLVED_SUBJECT = "[RESOLVED] InferenceErrorBudgetBurn (inference-server, critical)"


def get_json(url: str, headers: Optional[dict] = None) -> Any:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: Any, token: str) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@dataclass
class Stack:
    ports: Ports
    token: str
    server: ManagedProcess
    prometheus: Any
    alertmanager: ManagedProcess
    exporter: ManagedProcess
    sinks: ManagedProcess
    loadgen: ManagedProcess
    t0: float = field(default_factory=time.monotonic)

    @property
    def sinks_url(self) -> str:
        return f"http://127.0.0.1:{self.ports.sinks}"

    def mails(self) -> list[dict]:
        return get_json(f"{self.sinks_url}/api/mails")

    def slack(self) -> list[dict]:
        return get_json(f"{self.sinks_url}/api/slack")

    def webhooks(self) -> list[dict]:
        return get_json(f"{self.sinks_url}/api/webhooks")

    def models(self) -> dict[str, dict]:
        return {m["version"]: m for m in get_json(f"{self.server.url}/v1/models")["models"]}

    def drill(self, body: dict) -> None:
        status, answer = post_json(f"http://127.0.0.1:{self.ports.loadgen}/v1/scenarios", body, self.token)
        assert status == 202, (status, answer)

    def scenario_outcomes(self) -> dict[str, str]:
        runs = get_json(f"http://127.0.0.1:{self.ports.loadgen}/v1/scenarios")["scenarios"]
        return {r["name"]: r["outcome"] for r in runs}

    def diagnostics(self) -> str:
        parts = [f"t={time.monotonic() - self.t0:.0f}s"]
        for name, fetch in (
            ("prometheus alerts", lambda: [(a["labels"]["alertname"], a["state"])
                                           for a in get_json(f"{self.prometheus.url}/api/v1/alerts")["data"]["alerts"]]),
            ("alertmanager alerts", lambda: [(a["labels"]["alertname"], a["status"]["state"])
                                             for a in get_json(f"{self.alertmanager.url}/api/v2/alerts")]),
            ("mail subjects", lambda: [m["subject"] for m in self.mails()]),
            ("slack titles", lambda: [(s["payload"].get("channel"), s["payload"]["attachments"][0].get("title"))
                                      for s in self.slack()]),
            ("webhooks", lambda: [w["name"] for w in self.webhooks()]),
            ("models", lambda: {v: (m.get("state"), m.get("traffic_weight")) for v, m in self.models().items()}),
            ("loadgen", lambda: get_json(f"http://127.0.0.1:{self.ports.loadgen}/status")),
        ):
            try:
                parts.append(f"{name}: {fetch()}")
            except Exception as exc:  # noqa: BLE001 - diagnostics must not mask the real failure
                parts.append(f"{name}: unavailable ({exc})")
        for proc in (self.server, self.alertmanager, self.loadgen):
            parts.append(f"--- {proc.log_path.name} (tail)\n{proc.log()[-2500:]}")
        return "\n".join(parts)

    def eventually(self, what: str, probe: Callable[[], Any], timeout: float, interval: float = 1.0) -> Any:
        """Poll `probe` until it returns something truthy; fail with the whole loop's state otherwise."""
        return eventually(what, probe, timeout, self.diagnostics, interval)


def _start_process(argv: list[str], workdir: Path, name: str, ready_url: str, timeout: float) -> ManagedProcess:
    base, _, path = ready_url.partition("://")
    host, _, rest = path.partition("/")
    return launch(name, argv, workdir=workdir, url=f"{base}://{host}", ready_path="/" + rest, timeout=timeout,
                  cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def server_overrides(wd: Path, secrets: dict[str, Path]) -> dict[str, Any]:
    """The test server (small synthetic catalog) with the admin token and version 1 taking all traffic."""
    return {"admin": {"token_file": str(secrets["admin_token"]), "alerts_token_file": str(secrets["alerts_token"])},
            "feedback": {"token_file": str(secrets["feedback_token"])},
            "model_repository": {"state_dir": str(wd / "server" / "model-repository")},
            "traffic": {"weights": {"1": 100}}}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Stack:
    require_binary("prometheus")
    require_binary("prometheus-alertmanager", "alertmanager")
    wd = tmp_path_factory.mktemp("e2e")
    ports = Ports.free()
    secrets = write_local_secrets(wd / "secrets", ports)
    token = secrets["admin_token"].read_text().strip()
    started: list[ManagedProcess] = []
    try:
        sinks = _start_process(
            [sys.executable, "-m", "devstack.alert_sinks", "--http", f"127.0.0.1:{ports.sinks}",
             "--smtp", f"127.0.0.1:{ports.smtp}"], wd / "sinks", "alert_sinks",
            f"http://127.0.0.1:{ports.sinks}/healthz", 30)
        started.append(sinks)
        am_cfg = render_alertmanager(wd / "am-config", ports, secrets, route_overrides=ALERTMANAGER_ROUTE_TIMING,
                                     heartbeat_url=f"http://127.0.0.1:{ports.sinks}/webhook/watchdog")
        alertmanager = start_alertmanager(wd / "alertmanager", am_cfg.read_text(), port=ports.alertmanager)
        started.append(alertmanager)
        prom_cfg = render_prometheus(wd / "prom-config", ports, global_overrides=PROMETHEUS_GLOBAL,
                                     scrape_interval="1s", rule_transform=shorten_rules)
        prometheus = start_prometheus(wd / "prometheus", prom_cfg.read_text(), port=ports.prometheus,
                                      extra_args=PROMETHEUS_FLAGS)
        started.append(prometheus)
        exporter = start_exporter(wd / "exporter", {"nvml": {"enabled": False}}, port=ports.exporter)
        started.append(exporter)
        server = start_inference_server(wd / "server", server_overrides(wd, secrets), port=ports.server, timeout=240)
        started.append(server)
        loadgen_cfg = wd / "loadgen.yaml"
        loadgen_cfg.write_text(yaml.safe_dump({
            "target": {"url": server.url, "admin_token_file": str(secrets["admin_token"]),
                       "feedback_token_file": str(secrets["feedback_token"]), "timeout_s": 10},
            "rate": {"requests_per_second": 8, "daily_amplitude": 0.0, "max_concurrency": 64},
            "relevance": {"server_config": str(server.extra["config_path"])},
            "report_interval_s": 5, "listen": f"127.0.0.1:{ports.loadgen}", "seed": 11,
        }))
        loadgen = _start_process([sys.executable, "-m", "loadgen", "--config", str(loadgen_cfg)],
                                 wd / "loadgen", "loadgen", f"http://127.0.0.1:{ports.loadgen}/status", 60)
        started.append(loadgen)
        yield Stack(ports, token, server, prometheus, alertmanager, exporter, sinks, loadgen)
    finally:
        for proc in reversed(started):
            proc.stop()


def test_every_target_is_scraped(stack):
    def all_up():
        targets = get_json(f"{stack.prometheus.url}/api/v1/targets")["data"]["activeTargets"]
        return len(targets) >= 4 and all(t["health"] == "up" for t in targets) and targets
    targets = stack.eventually("all Prometheus targets up", all_up, timeout=30)
    assert {t["labels"]["job"] for t in targets} >= {"inference-server", "exporter", "prometheus", "alertmanager"}


def test_watchdog_reaches_its_receiver(stack):
    def heartbeat():
        return [w for w in stack.webhooks() if w["name"] == "watchdog"
                and any(a["labels"].get("alertname") == "Watchdog" for a in w["payload"].get("alerts", []))]
    hooks = stack.eventually("the Watchdog heartbeat webhook", heartbeat, timeout=60)
    payload = hooks[0]["payload"]
    assert payload["version"] == "4" and payload["status"] == "firing"
    assert payload["receiver"] == "heartbeat"
    # The Watchdog is informational: it never pages.
    assert not [m for m in stack.mails() if "Watchdog" in m["subject"]]


def test_error_burst_pages_oncall_then_resolves(stack):
    stack.drill({"name": "error-burst", "duration_s": 20, "error_rate": 0.5})

    def page_mail():
        return [m for m in stack.mails() if PAGE_SUBJECT.match(m["subject"])]
    mail = stack.eventually("the critical page by email", page_mail, timeout=90)[0]
    assert mail["rcpt_tos"] == ["ml-oncall@ecommerce-model-monitoring.local"]
    assert "burns its availability error budget" in mail["text"]
    assert "docs/runbooks/InferenceErrorBudgetBurn.md" in mail["text"] + mail["html"]
    assert re.search(r"\d+(\.\d+)?%", mail["text"]), "the description carries the measured error ratio"

    def page_slack():
        return [s for s in stack.slack() if s["payload"].get("channel") == "#ml-oncall"
                and PAGE_SUBJECT.match(s["payload"]["attachments"][0]["title"])]
    slack = stack.eventually("the critical page on Slack #ml-oncall", page_slack, timeout=30)[0]
    attachment = slack["payload"]["attachments"][0]
    assert "burns its availability error budget" in attachment["text"]
    assert any(a.get("text") == "Runbook" for a in attachment.get("actions", []))

    # Recovery: the burst ends after 20 s; the page is one alert for both window pairs, so it resolves
    # once the slower pair's (shortened) 30m window is clean too, plus keep_firing_for, and both
    # channels are told once.
    def resolved_mail():
        return [m for m in stack.mails() if m["subject"] == RESOLVED_SUBJECT]
    stack.eventually("the resolved email", resolved_mail, timeout=240)
    pages = [m for m in stack.mails() if PAGE_SUBJECT.match(m["subject"])]
    assert len(pages) == 1, [m["subject"] for m in stack.mails()]  # one incident, one page

    def resolved_slack():
        return [s for s in stack.slack() if s["payload"].get("channel") == "#ml-oncall"
                and s["payload"]["attachments"][0]["title"] == RESOLVED_SUBJECT]
    stack.eventually("the resolved Slack message", resolved_slack, timeout=30)
    assert stack.scenario_outcomes().get("error-burst") == "done"


def test_degraded_canary_is_rolled_back_by_the_alert(stack):
    # A long drill: when the weight drops to 0 while the drill still runs, the rollback came from
    # the alert loop, not from the drill restoring the old split.
    stack.drill({"name": "degraded-canary", "duration_s": 600, "canary_weight": 40})
    stack.eventually("version 2 taking canary traffic",
                     lambda: (stack.models().get("2") or {}).get("traffic_weight", 0) > 0, timeout=150)

    def rolled_back():
        v2 = stack.models()["2"]
        return v2["traffic_weight"] == 0 and stack.scenario_outcomes().get("degraded-canary") == "running"
    stack.eventually("the rollback webhook setting version 2's weight to 0", rolled_back, timeout=150)
    models = stack.models()
    assert models["1"]["traffic_weight"] == pytest.approx(1.0) or models["1"]["traffic_weight"] == pytest.approx(100)
    assert models["2"]["state"] == "ready"  # rolled back, not unloaded: still there for investigation

    def rollback_counted():
        res = stack.prometheus.query('sum(inference_alert_webhook_actions_total{action="rollback"})')
        return res and float(res[0]["value"][1]) >= 1
    stack.eventually("the webhook's rollback action counted in Prometheus", rollback_counted, timeout=20)

    # The alert that rolled it back is the click-through one: shoppers click less on the degraded
    # version's rankings (the loadgen's cascade model over true relevance), nothing else is wrong.
    def canary_slack():
        return [s for s in stack.slack() if s["payload"].get("channel") == "#ml-alerts"
                and "CanaryClickThroughRegression" in s["payload"]["attachments"][0]["title"]]
    message = stack.eventually("the CTR canary alert on Slack #ml-alerts", canary_slack, timeout=30)[0]
    assert message["payload"]["attachments"][0]["title"].startswith("[FIRING:")
    assert "minilm version 2" in message["payload"]["attachments"][0]["text"]
    status = get_json(f"http://127.0.0.1:{stack.ports.loadgen}/status")
    ctr = {v: t["ctr"] for v, t in status["versions"].items()}
    assert ctr["2"] < ctr["1"], ctr  # what the shoppers experienced
