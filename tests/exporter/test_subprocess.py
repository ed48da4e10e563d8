"""The real `python -m exporter` process on this machine (no NVIDIA driver): serves, reports why."""
from __future__ import annotations

import subprocess
import sys
import urllib.error
import urllib.request

from tests.exporter.conftest import promtool_check, samples, value
from devstack.components import start_exporter
from devstack.processes import REPO_ROOT, running


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_help_lists_the_options():
    out = subprocess.run([sys.executable, "-m", "exporter", "--help"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 0
    for option in ("--config", "--host", "--port"):
        assert option in out.stdout


def test_real_process_without_nvml_serves_metrics_and_stays_up(tmp_path):
    with running(start_exporter(tmp_path, {"nvml": {"reinit_backoff_initial_seconds": 0.1}})) as exporter:
        for _ in range(3):
            status, text = _get(f"{exporter.url}/metrics")
            assert status == 200
        parsed = samples(text)
        assert value(parsed, "nvidia_gpu_nvml_up") in (0.0, 1.0)
        if value(parsed, "nvidia_gpu_nvml_up") == 0:  # the normal case here: no libnvidia-ml.so.1
            assert value(parsed, "nvidia_gpu_nvml_status", reason="library_not_found") == 1
            assert value(parsed, "exporter_collector_errors_total", collector="nvml", function="nvmlInit", error="library_not_found") >= 1
        assert value(parsed, "exporter_build_info") == 1
        assert not any(name.endswith("_created") for name in parsed)  # disabled in the process
        assert promtool_check(text) == ""
        assert _get(f"{exporter.url}/healthz")[0] == 200
        status, body = _get(f"{exporter.url}/missing")
        assert status == 404 and '"not_found"' in body
        assert exporter.proc.poll() is None
