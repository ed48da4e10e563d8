"""Faults handled cleanly: an unwritable request log stops start-up with exit 2 naming the key, and a log
that fails later is counted with one rate-limited warning; tokens that could steer more than their
own API are refused at start."""
from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
import yaml

from devstack.processes import REPO_ROOT
from inference_server.api.app import create_app
from inference_server.config import ConfigError, RequestLogConfig
from inference_server.serving.request_log import RequestLog


def test_unwritable_request_log_at_start_is_exit_2_naming_the_key(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log directory should be")
    config = tmp_path / "server.yaml"
    config.write_text(yaml.safe_dump({"server": {"port": 0},
                                      "request_log": {"path": str(blocker / "requests.jsonl")}}))
    proc = subprocess.run([sys.executable, "-m", "inference_server", "--config", str(config)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "config error: request_log.path" in proc.stderr and "Traceback" not in proc.stderr


def test_log_failing_at_run_time_is_counted_and_warned_once(tmp_path, caplog, capsys):
    failures = []
    log = RequestLog(RequestLogConfig(path=str(tmp_path / "requests.jsonl")), salt=b"s",
                     on_error=lambda: failures.append(1))
    handler = log._listener.handlers[0]
    handler.stream = open("/dev/full", "w", encoding="utf-8")   # every write now fails: disk full
    for i in range(5):
        log.write(request_id=f"r{i}", method="POST", path="/v1/search", endpoint="search", status=200,
                  total_seconds=0.01)
    log.close()
    assert len(failures) >= 5          # every record, and the final flush
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "write failed" in r.getMessage()]
    assert len(warnings) == 1 and "inference_request_log_errors_total" in warnings[0].getMessage()
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("sections, key", [
    ({"admin": {"alerts_token_env": "T_ADMIN"}}, "admin.alerts_token_file"),
    ({"feedback": {"token_env": "T_ADMIN"}}, "feedback.token_file"),
    ({"feedback": {"token_env": "T_ALERTS"}, "admin": {"alerts_token_env": "T_ALERTS"}}, "feedback.token_file"),
])
def test_a_token_shared_with_a_stronger_api_is_refused(server_config, monkeypatch, sections, key):
    monkeypatch.setenv("T_ADMIN", "same-token-1234567890")
    monkeypatch.setenv("T_ALERTS", "alerts-token-1234567890")
    admin = {"token_env": "T_ADMIN", **sections.get("admin", {})}
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        create_app(server_config(admin=admin, **{k: v for k, v in sections.items() if k != "admin"}),
                   load_on_startup=False)
