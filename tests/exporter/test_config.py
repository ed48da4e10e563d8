"""Config validation: every bad key is named; env overrides; the CLI exits 2 with the key."""
from __future__ import annotations

import subprocess
import sys

import pytest

from exporter.config import ConfigError, load_config, parse_config
from devstack.processes import REPO_ROOT


@pytest.mark.parametrize(
    "data, key",
    [
        ({"nvml": {"poll_intervall_seconds": 1}}, "nvml.poll_intervall_seconds"),
        ({"nvml": {"max_process_series": "many"}}, "nvml.max_process_series"),
        ({"nvml": {"process_memory": "yes"}}, "nvml.process_memory"),
        ({"nvml": {"mode": "sometimes"}}, "nvml.mode"),
        ({"nvml": {"scrape_timeout_seconds": 0}}, "nvml.scrape_timeout_seconds"),
        ({"nvml": {"reinit_backoff_initial_seconds": 10, "reinit_backoff_max_seconds": 1}}, "nvml.reinit_backoff_max_seconds"),
        ({"nvml": ["not", "a", "mapping"]}, "nvml"),
        ({"server": {"port": 70000}}, "server.port"),
        ({"server": {"port": 9400.5}}, "server.port"),
        ({"sever": {}}, "sever"),
    ],
)
def test_bad_keys_are_named(data, key):
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert info.value.key == key
    assert str(info.value).startswith(key)


def test_defaults_and_the_shipped_file_are_valid():
    default = parse_config({})
    assert (default.server.host, default.server.port, default.nvml.mode) == ("127.0.0.1", 9400, "on_scrape")
    shipped = load_config(REPO_ROOT / "config" / "exporter.yaml", environ={})
    assert shipped.nvml.process_memory is False
    # The shipped anomaly section is handed to the anomaly runtime, which validates it on its own.
    from exporter.anomaly.config import parse_anomaly_config

    anomaly = parse_anomaly_config(shipped.anomaly)
    assert anomaly.jobs and len({job.name for job in anomaly.jobs}) == len(anomaly.jobs)


def test_env_overrides_are_typed_and_validated(tmp_path):
    path = tmp_path / "exporter.yaml"
    path.write_text("nvml:\n  process_memory: false\n")
    cfg = load_config(path, environ={"EXPORTER__NVML__PROCESS_MEMORY": "true", "EXPORTER__SERVER__HOST": "0.0.0.0", "OTHER": "x"})
    assert cfg.nvml.process_memory is True and cfg.server.host == "0.0.0.0"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"EXPORTER__NVML__MAX_PROCESS_SERIES": "lots"})
    assert info.value.key == "nvml.max_process_series"
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={"EXPORTER__NVML__NOPE": "1"})
    assert info.value.key == "nvml.nope"


def test_an_anomaly_section_is_passed_through_raw():
    cfg = parse_config({"anomaly": {"jobs": []}})
    assert cfg.anomaly == {"jobs": []}


@pytest.mark.parametrize("section, key", [
    ({"jobs": [{"name": "a", "query": "up"}, {"query": "up"}]}, "anomaly.jobs[1].name"),
    ({"jobs": [{"name": "a", "query": "up", "extra": 1}]}, "anomaly.jobs[0].extra"),
    ({"jobs": [{"name": "a", "query": "up", "step": "1m"}]}, "anomaly.jobs[0].step"),
    ({"jobs": [{"name": "a", "query": "up", "direction": "up"}]}, "anomaly.jobs[0].direction"),
    ({"jobs": [{"name": "a", "query": "up", "max_series": 0}]}, "anomaly.jobs[0].max_series"),
    ({"jobs": [{"name": "a", "query": " "}]}, "anomaly.jobs[0].query"),
    ({"retries": -1}, "anomaly.retries"),
    ({"prometheus_url": "prom:9090"}, "anomaly.prometheus_url"),
])
def test_anomaly_section_errors_name_the_key(section, key):
    from exporter.anomaly.config import parse_anomaly_config

    with pytest.raises(ConfigError) as info:
        parse_anomaly_config(section)
    assert info.value.key == key


def test_cli_reports_the_bad_key_and_exits_2(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("nvml:\n  max_age_seconds: soon\n")
    proc = subprocess.run([sys.executable, "-m", "exporter", "--config", str(path)], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert proc.returncode == 2
    assert "config error: nvml.max_age_seconds: Input should be a valid number, got 'soon'" in proc.stderr
    flag = subprocess.run([sys.executable, "-m", "exporter", "--port", "70000"], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=60)
    assert flag.returncode == 2 and "config error: server.port: Input should be less than or equal to 65535" in flag.stderr
