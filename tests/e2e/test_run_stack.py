"""`scripts/run_stack.py` (what `make run` runs): the smoke mode brings the whole stack up, verifies it
and takes it down; a signal during start-up stops every component it had started."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from devstack.processes import REPO_ROOT
from tests.support.binaries import require_binary

pytestmark = pytest.mark.slow
RUN_STACK = REPO_ROOT / "scripts" / "run_stack.py"


def small_server_config(tmp_path: Path) -> Path:
    """The shipped server config with a small catalog, so the test does not embed 5,000 products."""
    cfg = yaml.safe_load((REPO_ROOT / "config" / "inference_server.yaml").read_text())
    cfg["catalog"].update(num_products=300, num_queries=50, cache_dir=str(tmp_path / "cache"))
    cfg.setdefault("model", {})["num_threads"] = 1
    if "model_repository" in cfg:
        cfg["model_repository"]["state_dir"] = str(tmp_path / "model-repository")
    path = tmp_path / "inference_server.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def assert_all_gone(run_dir: Path) -> None:
    pids = json.loads((run_dir / "pids.json").read_text())
    assert pids, "no component was recorded"
    deadline = time.monotonic() + 10
    alive = dict(pids)
    while alive and time.monotonic() < deadline:
        for name, pid in list(alive.items()):
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                alive.pop(name)
        time.sleep(0.2)
    assert not alive, f"left running: {alive}"


def test_smoke_mode_verifies_the_quick_start(tmp_path):
    require_binary("prometheus")
    run_dir = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, str(RUN_STACK), "--smoke", "--run-dir", str(run_dir), "--no-grafana",
         "--server-config", str(small_server_config(tmp_path)), "--smoke-timeout", "90", "--rate", "5"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=400)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-6000:]
    assert "SMOKE OK" in out
    for job in ("inference-server", "exporter", "prometheus", "alertmanager"):
        assert any(line.strip().startswith(f"target {job}") and line.rstrip().endswith("up")
                   for line in out.splitlines()), f"{job} target not up:\n{out[-4000:]}"
    assert "The stack is up:" in out and "Alertmanager" in out and "stack stopped." in out
    # A first start (empty embedding cache) is not silent: registration (which embeds the catalog
    # first, issue 12) is announced, and the server's load steps are shown.
    assert "registering model versions" in out, out[:4000]
    assert "inference-server  loading model minilm version 1" in out, out[:4000]
    assert_all_gone(run_dir)
    # Runbook links point at the docs the stack serves (the alert sinks' /docs/).
    rules = "".join(p.read_text() for p in (run_dir / "prometheus" / "rules").glob("*.yml"))
    assert "runbook_url: http://127.0.0.1:" in rules and "/docs/runbooks/InferenceErrorBudgetBurn.md" in rules
    assert "github.com" not in rules
    # The rendered configs are the project's, pointed at the local ports and secrets.
    am = yaml.safe_load((run_dir / "alertmanager" / "alertmanager.yml").read_text())
    assert am["global"]["slack_api_url_file"] == str(run_dir / "secrets" / "slack_webhook_url")
    assert (run_dir / "secrets" / "admin_token").stat().st_mode & 0o077 == 0


def test_sigterm_during_start_up_stops_what_was_started(tmp_path):
    require_binary("prometheus")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, str(RUN_STACK), "--free-ports", "--run-dir", str(run_dir), "--no-grafana",
         "--server-config", str(small_server_config(tmp_path))],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if line.strip().startswith("exporter") and "ready" in line:
                break
        proc.send_signal(signal.SIGTERM)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "".join(lines) + rest
    assert proc.returncode == 130, out
    assert "SIGTERM: stopping the stack" in out and "stack stopped." in out
    assert_all_gone(run_dir)
