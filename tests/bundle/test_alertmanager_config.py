"""Alertmanager routing, inhibition, secrets and notification templates, checked with amtool and a real
Alertmanager that delivers to a local Slack-compatible sink, an SMTP sink and a webhook sink."""
from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
import yaml

from tests.bundle import bundle
from tests.bundle.sinks import start_http_sink, start_smtp_sink
from devstack.processes import free_port, running, start_alertmanager
from tests.support.binaries import require_binary

LOCAL = bundle.ALERTMANAGER_DIR / "alertmanager.yml"
DOCKER = bundle.ALERTMANAGER_DIR / "alertmanager.docker.yml"
SECRET_NAMES = {"slack_webhook_url", "smtp_password", "alerts_token"}


def amtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([require_binary("amtool"), *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("path", [LOCAL, DOCKER], ids=lambda p: p.name)
def test_amtool_check_config(path):
    res = amtool("check-config", str(path))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "1 templates" in res.stdout


def test_docker_config_is_the_local_one_with_compose_hosts_and_secret_paths():
    text = DOCKER.read_text()
    for docker, local in [("/run/secrets/", "../secrets/"), ("mailpit:1025", "127.0.0.1:1025"),
                          ("http://inference-server:8000/", "http://127.0.0.1:8000/")]:
        text = text.replace(docker, local)
    assert yaml.safe_load(text) == yaml.safe_load(LOCAL.read_text())


def _walk(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{path}.{key}" if path else key)
            yield path + "." + key if path else key, key, value
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{path}[{i}]")


@pytest.mark.parametrize("path", [LOCAL, DOCKER], ids=lambda p: p.name)
def test_secrets_come_only_from_files(path):
    cfg = yaml.safe_load(path.read_text())
    inline_secret_keys = {"api_url", "slack_api_url", "auth_password", "smtp_auth_password", "credentials",
                          "password", "bearer_token", "auth_secret"}
    files = set()
    for where, key, value in _walk(cfg):
        assert key not in inline_secret_keys, f"{path.name}: inline secret at {where}"
        if key.endswith("_file"):
            prefix = "../secrets/" if path == LOCAL else "/run/secrets/"
            assert value.startswith(prefix), (where, value)
            files.add(value.removeprefix(prefix))
    assert files == SECRET_NAMES


def test_every_integration_sends_resolved_and_watchdog_heartbeat_is_a_no_op_by_default():
    cfg = yaml.safe_load(LOCAL.read_text())
    integrations = 0
    for receiver in cfg["receivers"]:
        for kind in ("slack_configs", "email_configs", "webhook_configs"):
            for integration in receiver.get(kind, []):
                assert integration.get("send_resolved") is True, (receiver["name"], kind)
                integrations += 1
    assert integrations == 5  # rollback: webhook + Slack; oncall: Slack + email; slack-alerts: Slack
    heartbeat = next(r for r in cfg["receivers"] if r["name"] == "heartbeat")
    assert set(heartbeat) == {"name"}


# (labels of an alert, receivers it must reach). Together these cover every route of the tree.
ROUTE_CASES = [
    ({"alertname": "Watchdog", "severity": "info", "service": "monitoring"}, "heartbeat"),
    ({"alertname": "CanaryErrorRatioRegression", "severity": "warning", "service": "inference-server",
      "action": "rollback", "model": "minilm", "version": "2"}, "rollback"),
    ({"alertname": "CanaryClickThroughRegression", "severity": "critical", "service": "inference-server",
      "action": "rollback", "model": "minilm", "version": "2"}, "rollback"),
    ({"alertname": "InferenceErrorBudgetBurn", "severity": "critical", "service": "inference-server"}, "oncall"),
    ({"alertname": "GPULost", "severity": "critical", "service": "gpu"}, "oncall"),
    ({"alertname": "InferenceErrorBudgetBurn", "severity": "warning", "service": "inference-server"}, "slack-alerts"),
    ({"alertname": "ModelDriftHigh", "severity": "warning", "service": "model-quality"}, "slack-alerts"),
    ({"alertname": "InferenceClientErrorsHigh", "severity": "info", "service": "inference-server"}, "null"),
    ({"alertname": "SomethingNew", "service": "inference-server"}, "slack-alerts"),
]


@pytest.mark.parametrize("labels,receiver", ROUTE_CASES, ids=[c[0]["alertname"] + "-" + c[1] for c in ROUTE_CASES])
def test_route(labels, receiver):
    args = [f"{k}={v}" for k, v in labels.items()]
    res = amtool("config", "routes", "test", f"--config.file={LOCAL}", f"--verify.receivers={receiver}", *args)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == receiver


def test_route_verification_detects_a_wrong_receiver():
    res = amtool("config", "routes", "test", f"--config.file={LOCAL}", "--verify.receivers=oncall",
                 "severity=warning", "alertname=X")
    assert res.returncode != 0


def test_route_cases_cover_every_route_and_receiver():
    cfg = yaml.safe_load(LOCAL.read_text())
    route_receivers = {cfg["route"]["receiver"]} | {r["receiver"] for r in cfg["route"]["routes"]}
    assert {receiver for _, receiver in ROUTE_CASES} == route_receivers == {r["name"] for r in cfg["receivers"]}


def _render_config(tmp_path, *, slack_url: str, smarthost: str, webhook_url: str, token: str) -> str:
    """The shipped config with local secrets, sinks instead of Slack/SMTP/server, and short group waits."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "slack_webhook_url").write_text(slack_url + "\n")
    (secrets / "alerts_token").write_text(token + "\n")
    (secrets / "smtp_password").write_text("unused\n")
    text = LOCAL.read_text().replace("../secrets/", f"{secrets}/")
    text = text.replace("127.0.0.1:1025", smarthost).replace("http://127.0.0.1:8000/v1/alerts", webhook_url)
    cfg = yaml.safe_load(text)
    cfg["templates"] = [str(bundle.ALERTMANAGER_DIR / "templates" / "*.tmpl")]
    for route in [cfg["route"], *cfg["route"]["routes"]]:
        route.update(group_wait="1s", group_interval="2s")
    return yaml.safe_dump(cfg, sort_keys=False)


def _post_alerts(am_url: str, alerts: list[dict]) -> None:
    now = datetime.now(timezone.utc)
    body = []
    for alert in alerts:
        body.append({
            "labels": alert["labels"],
            "annotations": alert.get("annotations", {}),
            "startsAt": (now - timedelta(minutes=1)).isoformat(),
            "endsAt": alert.get("endsAt", (now + timedelta(minutes=10)).isoformat()),
            "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
        })
    req = urllib.request.Request(f"{am_url}/api/v2/alerts", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    urllib.request.urlopen(req, timeout=10).read()


def _annotations(name: str) -> dict:
    return {"summary": f"{name} summary text", "description": f"{name} description with 12.5%",
            "runbook_url": f"{bundle.RUNBOOK_BASE_URL}{name}.md"}


@pytest.fixture
def live_alertmanager(tmp_path):
    slack, webhook = start_http_sink(), start_http_sink()
    smtp = start_smtp_sink(free_port())
    token = "test-alerts-token"
    config = _render_config(tmp_path, slack_url=f"{slack.url}/slack", smarthost=smtp.smarthost,
                            webhook_url=f"{webhook.url}/v1/alerts", token=token)
    try:
        # A short gossip interval lets the single-node cluster settle (and notify) in well under 1s.
        with running(start_alertmanager(tmp_path / "am", config, extra_args=["--cluster.gossip-interval=10ms"])) as am:
            yield am, slack, smtp, webhook, token
    finally:
        slack.close()
        webhook.close()
        smtp.close()


def test_critical_alert_reaches_oncall_slack_and_email_with_links(live_alertmanager):
    am, slack, smtp, _, _ = live_alertmanager
    labels = {"alertname": "InferenceErrorBudgetBurn", "severity": "critical", "service": "inference-server",
              "job": "inference-server", "long_window": "1h", "short_window": "5m"}
    _post_alerts(am.url, [{"labels": labels, "annotations": _annotations("InferenceErrorBudgetBurn")}])

    msg = slack.wait_for(lambda r: r.body.get("channel") == "#ml-oncall")
    attachment = msg.body["attachments"][0]
    assert attachment["title"] == "[FIRING:1] InferenceErrorBudgetBurn (inference-server, critical)"
    assert attachment["title_link"] == "http://127.0.0.1:3000/d/service-overview"
    assert attachment["color"] == "danger"
    assert "InferenceErrorBudgetBurn summary text" in attachment["text"]
    assert "description with 12.5%" in attachment["text"]
    assert f"<{bundle.RUNBOOK_BASE_URL}InferenceErrorBudgetBurn.md|Runbook>" in attachment["text"]
    assert {a["text"]: a["url"] for a in attachment["actions"]} == {
        "Runbook": f"{bundle.RUNBOOK_BASE_URL}InferenceErrorBudgetBurn.md",
        "Dashboard": "http://127.0.0.1:3000/d/service-overview"}

    mail = smtp.wait_for(lambda m: "InferenceErrorBudgetBurn" in m["Subject"])
    assert mail["Subject"] == "[FIRING:1] InferenceErrorBudgetBurn (inference-server, critical)"
    assert mail["To"] == "ml-oncall@ecommerce-model-monitoring.local"
    html = mail.get_body(("html",)).get_content()
    text = mail.get_body(("plain",)).get_content()
    for part in (html, text):
        assert "InferenceErrorBudgetBurn summary text" in part
        assert f"{bundle.RUNBOOK_BASE_URL}InferenceErrorBudgetBurn.md" in part
        assert "http://127.0.0.1:3000/d/service-overview" in part


def test_rollback_alert_calls_the_server_webhook_with_bearer_token_and_tells_slack(live_alertmanager):
    am, slack, _, webhook, token = live_alertmanager
    labels = {"alertname": "CanaryClickThroughRegression", "severity": "warning", "service": "inference-server",
              "action": "rollback", "job": "inference-server", "model": "minilm", "version": "2"}
    _post_alerts(am.url, [{"labels": labels, "annotations": _annotations("CanaryClickThroughRegression")}])

    call = webhook.wait_for(lambda r: r.path == "/v1/alerts")
    assert call.headers["Authorization"] == f"Bearer {token}"
    assert call.body["version"] == "4" and call.body["status"] == "firing"
    assert call.body["alerts"][0]["labels"] | labels == call.body["alerts"][0]["labels"]

    msg = slack.wait_for(lambda r: "CanaryClickThroughRegression" in r.body["attachments"][0]["title"])
    assert msg.body["channel"] == "#ml-alerts"
    assert "roll the version back" in msg.body["attachments"][0]["text"]
    assert "model `minilm` version `2`" in msg.body["attachments"][0]["text"]


def test_resolved_notification_is_sent(live_alertmanager):
    am, slack, _, _, _ = live_alertmanager
    labels = {"alertname": "ModelDriftHigh", "severity": "warning", "service": "model-quality",
              "job": "inference-server", "model": "minilm", "version": "1", "feature": "top1_score"}
    _post_alerts(am.url, [{"labels": labels, "annotations": _annotations("ModelDriftHigh")}])
    slack.wait_for(lambda r: r.body["attachments"][0]["title"].startswith("[FIRING:1] ModelDriftHigh"))
    resolved_at = (datetime.now(timezone.utc) - timedelta(seconds=1)).isoformat()
    _post_alerts(am.url, [{"labels": labels, "annotations": _annotations("ModelDriftHigh"), "endsAt": resolved_at}])
    msg = slack.wait_for(lambda r: r.body["attachments"][0]["title"].startswith("[RESOLVED] ModelDriftHigh"))
    assert msg.body["attachments"][0]["color"] == "good"
    assert msg.body["attachments"][0]["title_link"] == "http://127.0.0.1:3000/d/model-health"


def _inhibited(am_url: str) -> dict[str, bool]:
    with urllib.request.urlopen(f"{am_url}/api/v2/alerts", timeout=10) as resp:
        alerts = json.loads(resp.read())
    return {
        ",".join(f"{k}={v}" for k, v in sorted(a["labels"].items()) if k in ("alertname", "severity", "uuid", "long_window")):
        bool(a["status"]["inhibitedBy"]) for a in alerts
    }


def test_inhibition_rules(live_alertmanager):
    am = live_alertmanager[0]
    srv = {"service": "inference-server", "job": "inference-server"}
    other = {"service": "inference-server", "job": "inference-server-eu"}
    gpu = {"service": "gpu", "job": "exporter", "instance": "node:9400"}
    _post_alerts(am.url, [
        # critical burn mutes the warning burn of the same alert (another job: no server-down here)
        {"labels": {"alertname": "InferenceErrorBudgetBurn", "severity": "critical", "long_window": "1h", **other}},
        {"labels": {"alertname": "InferenceErrorBudgetBurn", "severity": "warning", "long_window": "1d", **other}},
        # the server being down mutes its latency and business alerts, not other services
        {"labels": {"alertname": "InferenceServerDown", "severity": "critical", "instance": "a:8000", **srv}},
        {"labels": {"alertname": "InferenceLatencyBudgetBurn", "severity": "critical", "long_window": "1h", **srv}},
        {"labels": {"alertname": "BusinessClickThroughRateDrop", "severity": "warning", "service": "business",
                    "job": "inference-server", "endpoint": "search"}},
        {"labels": {"alertname": "ExporterDown", "severity": "warning", "service": "exporter", "job": "exporter"}},
        # a lost GPU mutes that GPU's other alerts, not another GPU's
        {"labels": {"alertname": "GPULost", "severity": "critical", "gpu": "0", "uuid": "GPU-a", **gpu}},
        {"labels": {"alertname": "GPUTemperatureHigh", "severity": "warning", "gpu": "0", "uuid": "GPU-a", **gpu}},
        {"labels": {"alertname": "GPUTemperatureHigh", "severity": "warning", "gpu": "1", "uuid": "GPU-b", **gpu}},
    ])
    deadline = time.monotonic() + 10
    while True:
        state = _inhibited(am.url)
        if len(state) == 9 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert state == {
        "alertname=InferenceErrorBudgetBurn,long_window=1h,severity=critical": False,
        "alertname=InferenceErrorBudgetBurn,long_window=1d,severity=warning": True,
        "alertname=InferenceServerDown,severity=critical": False,
        "alertname=InferenceLatencyBudgetBurn,long_window=1h,severity=critical": True,
        "alertname=BusinessClickThroughRateDrop,severity=warning": True,
        "alertname=ExporterDown,severity=warning": False,
        "alertname=GPULost,severity=critical,uuid=GPU-a": False,
        "alertname=GPUTemperatureHigh,severity=warning,uuid=GPU-a": True,
        "alertname=GPUTemperatureHigh,severity=warning,uuid=GPU-b": False,
    }
