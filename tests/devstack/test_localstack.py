"""The local stack's config rendering (the project's files, pointed at localhost) and its process
supervision (process groups, nothing left behind)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import yaml

from devstack.localstack import (
    REPO_ROOT,
    Ports,
    Supervisor,
    render_alertmanager,
    render_grafana_provisioning,
    render_prometheus,
    rewrite_hosts,
    write_local_secrets,
)
from tests.support.binaries import require_binary

PORTS = Ports(server=18000, exporter=19400, loadgen=19500, prometheus=19090, alertmanager=19093,
              grafana=13000, smtp=11025, sinks=18025)


def test_rewrite_hosts_maps_known_services_only():
    text = "inference-server:8000 alertmanager:9093 localhost:9090 mailpit:1025 example.com:8000 exporter:1234"
    assert rewrite_hosts(text, PORTS) == (
        "127.0.0.1:18000 127.0.0.1:19093 127.0.0.1:19090 127.0.0.1:11025 example.com:8000 exporter:1234")


def test_prometheus_render_targets_rules_and_validity(tmp_path):
    path = render_prometheus(tmp_path, PORTS)
    cfg = yaml.safe_load(path.read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in cfg["scrape_configs"]}
    assert targets["inference-server"] == ["127.0.0.1:18000"] and targets["exporter"] == ["127.0.0.1:19400"]
    assert targets["prometheus"] == ["127.0.0.1:19090"] and targets["alertmanager"] == ["127.0.0.1:19093"]
    assert cfg["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == ["127.0.0.1:19093"]
    shipped = sorted(p.name for p in (REPO_ROOT / "prometheus" / "rules").glob("*.yml"))
    assert len(cfg["rule_files"]) == len(shipped) and all(os.path.isabs(f) for f in cfg["rule_files"])
    proc = subprocess.run([require_binary("promtool"), "check", "config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_render_points_runbooks_at_a_configured_base(tmp_path):
    path = render_prometheus(tmp_path, PORTS, runbook_base_url="http://127.0.0.1:18025/docs/runbooks/")
    urls = []
    for rule_file in yaml.safe_load(path.read_text())["rule_files"]:
        for group in yaml.safe_load(open(rule_file))["groups"]:
            urls += [r["annotations"]["runbook_url"] for r in group["rules"] if "alert" in r]
    assert urls and "http://127.0.0.1:18025/docs/runbooks/InferenceErrorBudgetBurn.md" in urls
    assert all(u.startswith("http://127.0.0.1:18025/docs/runbooks/") and u.endswith(".md") for u in urls)


def test_alertmanager_render_secrets_hosts_heartbeat_and_timing(tmp_path):
    secrets = write_local_secrets(tmp_path / "secrets", PORTS, admin_token="t0ken")
    assert secrets["admin_token"].read_text().strip() == "t0ken"
    assert secrets["slack_webhook_url"].read_text().strip() == "http://127.0.0.1:18025/slack/alerts"
    assert (tmp_path / "secrets").stat().st_mode & 0o077 == 0
    path = render_alertmanager(tmp_path / "am", PORTS, secrets, heartbeat_url="http://127.0.0.1:18025/webhook/watchdog",
                               route_overrides={"group_wait": "1s"})
    cfg = yaml.safe_load(path.read_text())
    g = cfg["global"]
    assert g["slack_api_url_file"] == str(secrets["slack_webhook_url"])
    assert g["smtp_auth_password_file"] == str(secrets["smtp_password"])
    assert g["smtp_smarthost"] == "127.0.0.1:11025"
    receivers = {r["name"]: r for r in cfg["receivers"]}
    hook = receivers["rollback"]["webhook_configs"][0]
    assert hook["url"] == "http://127.0.0.1:18000/v1/alerts"
    assert hook["http_config"]["authorization"]["credentials_file"] == str(secrets["alerts_token"])
    assert len({secrets[n].read_text() for n in ("admin_token", "alerts_token", "feedback_token")}) == 3
    assert receivers["heartbeat"]["webhook_configs"] == [{"url": "http://127.0.0.1:18025/webhook/watchdog",
                                                           "send_resolved": False}]
    assert all(os.path.isabs(t) for t in cfg["templates"])
    assert cfg["route"]["group_wait"] == "1s"
    proc = subprocess.run([require_binary("amtool"), "check-config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_real_secrets_dir_wins_when_present(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (real / "slack_webhook_url").write_text("https://hooks.slack.com/services/T/B/X\n")
    secrets = write_local_secrets(tmp_path / "local", PORTS, real_secrets_dir=real)
    assert secrets["slack_webhook_url"] == (real / "slack_webhook_url").resolve()
    assert secrets["admin_token"].parent == tmp_path / "local"  # absent in `real`: generated


def test_grafana_provisioning_points_at_local_ports_and_repo_dashboards(tmp_path):
    out = render_grafana_provisioning(tmp_path, PORTS)
    datasources = yaml.safe_load((out / "datasources" / "datasources.yml").read_text())["datasources"]
    urls = {d["uid"]: d["url"] for d in datasources}
    assert urls == {"prometheus": "http://127.0.0.1:19090", "alertmanager": "http://127.0.0.1:19093"}
    providers = yaml.safe_load((out / "dashboards" / "dashboards.yml").read_text())["providers"]
    assert {p["options"]["path"] for p in providers} == {str((REPO_ROOT / "grafana" / "dashboards").resolve())}


def test_supervisor_stops_whole_process_groups(tmp_path):
    sup = Supervisor(tmp_path / "logs", pid_file=tmp_path / "pids.json")
    # A child that forks a grandchild and ignores SIGTERM: only the group KILL ends them both.
    script = "import os, signal, subprocess, sys, time\n" \
             "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n" \
             "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; " \
             "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)'])\n" \
             "print(child.pid, flush=True)\n" \
             "time.sleep(120)\n"
    leader = sup.start("stubborn", [sys.executable, "-c", script])
    deadline = time.monotonic() + 20
    while not leader.log_path.read_text().strip() and time.monotonic() < deadline:
        time.sleep(0.1)
    grandchild = int(leader.log_path.read_text().split()[0])
    assert os.getpgid(grandchild) == leader.proc.pid
    assert '"stubborn"' in (tmp_path / "pids.json").read_text()
    sup.stop(timeout=1.0)
    assert leader.proc.poll() is not None
    deadline = time.monotonic() + 10
    while alive(grandchild):
        assert time.monotonic() < deadline, "grandchild survived the supervisor"
        time.sleep(0.1)


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper that may not exist in a container counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _time_wait_port() -> int:
    """A port whose only socket is in TIME_WAIT: the listener closed the connection first, then stopped
    (what a stack stopped with Ctrl-C leaves behind for ~60 s)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()  # the server side closes first -> its end goes to TIME_WAIT
    client.recv(1)
    client.close()
    listener.close()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as plain:  # the old check's bind fails
        with pytest.raises(OSError):
            plain.bind(("127.0.0.1", port))
    return port


def test_restart_within_a_minute_is_not_refused_by_time_wait_sockets():
    port = _time_wait_port()
    assert f"server:{port}" not in Ports(server=port).busy()


def test_a_listening_port_is_still_busy():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert f"server:{port}" in Ports(server=port).busy()
