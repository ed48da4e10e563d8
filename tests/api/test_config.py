"""Config: every section declared in `AppConfig`; errors name the dotted key; env overrides; CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from inference_server.config import AppConfig, ConfigError, apply_env_overrides, load_config, parse_config
from devstack.processes import REPO_ROOT


def test_shipped_config_matches_the_defaults():
    shipped = load_config(REPO_ROOT / "config" / "inference_server.yaml", environ={})
    assert shipped == parse_config({})
    assert shipped.server.host == "127.0.0.1" and shipped.batching.max_batch_size == 32


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"batching": {"max_batch_size": "x"}}, "batching.max_batch_size: Input should be a valid integer, got 'x'"),
        ({"batching": {"max_batch_size": True}}, "batching.max_batch_size: Input should be a valid integer, got True"),
        ({"batching": {"max_batch_sise": 3}}, "batching.max_batch_sise: unknown key (known keys: enabled, max_batch_size"),
        ({"server": {"limits": {"max_k": "many"}}}, "server.limits.max_k: Input should be a valid integer, got 'many'"),
        ({"server": {"limits": {"max_k": 0}}}, "server.limits.max_k: Input should be greater than or equal to 1, got 0"),
        ({"server": {"port": 70000}}, "server.port: Input should be less than or equal to 65535"),
        ({"model": {"dtype": "float8"}}, "model.dtype: Input should be 'auto', 'float32', 'float16' or 'bfloat16'"),
        ({"model": {"num_threads": "two"}}, "model.num_threads: Input should be a valid integer, got 'two'"),
        ({"model": {"max_seq_length": 1}}, "model.max_seq_length: Input should be greater than or equal to 2"),
        ({"catalog": {"source": "mysql"}}, "catalog.source: Input should be 'synthetic', 'homedepot' or 'csv'"),
        ({"request_log": {"enabled": "yes"}}, "request_log.enabled: Input should be a valid boolean, got 'yes'"),
        ({"batching": []}, "batching: expected a mapping, got list"),
        ({"modles": {}}, "modles: unknown key (known keys: server, model, catalog, batching"),
        ({"batching": {"max_queue_delay_ms": -1}}, "batching.max_queue_delay_ms: Input should be greater than or equal to 0"),
        ({"traffic": {"weights": {"1": 50, "2": -1}}}, "traffic.weights.2: Input should be greater than or equal to 0"),
        ({"traffic": {"weights": {"1": 0}}}, "traffic.weights: at least one version needs a weight > 0"),
        ({"traffic": {"shadow": ["2", 3]}}, "traffic.shadow[1]: Input should be a valid string, got 3"),
        ({"model_repository": {"version_policy": {"versions": ["01"]}}},
         "model_repository.version_policy.versions[0]: String should match pattern"),
        ({"model_repository": {"version_policy": {"kind": "specific", "versions": []}}},
         "model_repository.version_policy.versions: list the versions to load when kind is 'specific'"),
        ({"drift": {"window_size": 10, "min_samples": 20}}, "drift.min_samples: expected 1..window_size (10), got 20"),
        ({"feedback": {"rates": {"eur": 1.1}}}, "feedback.rates.eur: not an ISO 4217 code like 'EUR'"),
        ({"health": {"golden_min_cosine": 2}}, "health.golden_min_cosine: Input should be less than or equal to 1"),
        ({"admin": {"token_env": ""}}, "admin.token_env: String should have at least 1 character"),
    ],
)
def test_invalid_config_names_the_key(raw, message):
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    assert message in str(info.value)


def test_float_accepts_int_and_yaml_file_loads(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"batching": {"max_queue_delay_ms": 5}, "model": {"version": "7"}}))
    config = load_config(path, environ={})
    assert config.batching.max_queue_delay_ms == 5.0 and config.model.version == "7"


def test_unreadable_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "absent.yaml", environ={})
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(bad, environ={})


def test_env_overrides_parse_yaml_scalars():
    env = {
        "INFERENCE_SERVER__BATCHING__MAX_BATCH_SIZE": "16",
        "INFERENCE_SERVER__BATCHING__ENABLED": "false",
        "INFERENCE_SERVER__SERVER__LIMITS__MAX_K": "50",
        "INFERENCE_SERVER__MODEL__VERSION": "'2'",
        "UNRELATED": "x",
    }
    config = parse_config(apply_env_overrides({"batching": {"max_batch_size": 8}}, env))
    assert config.batching.max_batch_size == 16 and config.batching.enabled is False
    assert config.server.limits.max_k == 50 and config.model.version == "2"


def test_env_override_errors_name_the_key():
    with pytest.raises(ConfigError, match="batching.max_batch_size: Input should be a valid integer, got 'lots'"):
        parse_config(apply_env_overrides({}, {"INFERENCE_SERVER__BATCHING__MAX_BATCH_SIZE": "lots"}))
    with pytest.raises(ConfigError, match="batching.nope: unknown key"):
        parse_config(apply_env_overrides({}, {"INFERENCE_SERVER__BATCHING__NOPE": "1"}))
    with pytest.raises(ConfigError, match="traffic.weights.2: Input should be greater than or equal to 0"):
        parse_config(apply_env_overrides({}, {"INFERENCE_SERVER__TRAFFIC__WEIGHTS__2": "-5"}))


def test_every_section_is_declared_on_the_app_config():
    sections = set(AppConfig.model_fields)
    assert sections == {"server", "model", "catalog", "batching", "request_log", "model_repository", "traffic",
                        "health", "drift", "feedback", "admin", "index", "ab_test"}
    config = parse_config({"traffic": {"weights": {"1": 90, "2": 10}}, "admin": {"token_env": "T"}})
    assert config.traffic.weights == {"1": 90.0, "2": 10.0} and config.admin.token_env == "T"
    assert config.drift.window_size == 2000 and config.model_repository.version_policy.versions == ["1"]


def test_config_parses_in_a_fresh_interpreter_without_other_imports():
    """No section is registered by importing another module: the schema does not depend on import order."""
    code = (
        "import json, sys\n"
        "from inference_server.config import parse_config\n"
        "c = parse_config({'model_repository': {'root': 'elsewhere', 'version_policy': {'kind': 'all'}},"
        " 'traffic': {'weights': {'1': 3}}, 'health': {'interval_s': 0}, 'feedback': {'currency': 'EUR'},"
        " 'drift': {'min_samples': 5}, 'admin': {'token_file': 't'}})\n"
        "lifecycle = sorted(m for m in sys.modules if m.startswith(('inference_server.lifecycle', 'inference_server.api')))\n"
        "print(json.dumps([c.model_repository.root, c.model_repository.version_policy.kind, c.traffic.weights,"
        " c.feedback.currency, lifecycle]))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == ["elsewhere", "all", {"1": 3.0}, "EUR", []]


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "inference_server", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_cli_help_and_check_config(tmp_path):
    help_ = _cli("--help")
    assert help_.returncode == 0
    for flag in ("--config", "--host", "--port", "--check-config"):
        assert flag in help_.stdout
    path = tmp_path / "c.yaml"
    path.write_text("batching:\n  max_batch_size: 8\n")
    checked = _cli("--config", str(path), "--check-config", "--port", "9001",
                   env={"INFERENCE_SERVER__SERVER__LIMITS__MAX_ITEMS": "20"})
    assert checked.returncode == 0, checked.stderr
    resolved = yaml.safe_load(checked.stdout)
    assert resolved["batching"]["max_batch_size"] == 8 and resolved["server"]["port"] == 9001
    assert resolved["server"]["limits"]["max_items"] == 20
    path.write_text("batching:\n  max_batch_size: x\n")
    failed = _cli("--config", str(path), "--check-config")
    assert failed.returncode == 2
    assert "config error: batching.max_batch_size: Input should be a valid integer, got 'x'" in failed.stderr
    absent = _cli("--config", str(tmp_path / "absent.yaml"), "--check-config")
    assert absent.returncode == 2 and "config error: cannot read config file" in absent.stderr
    path.write_text("traffic:\n  weights: {'1': 1}\n")
    flag = _cli("--config", str(path), "--check-config", "--port", "70000")
    assert flag.returncode == 2 and "config error: server.port:" in flag.stderr


def test_event_loop_choice(monkeypatch):
    import uvloop

    from inference_server.api.app import event_loop_factory

    assert event_loop_factory("auto") is uvloop.new_event_loop
    assert event_loop_factory("uvloop") is uvloop.new_event_loop
    assert event_loop_factory("asyncio") is None
    monkeypatch.setitem(sys.modules, "uvloop", None)   # not installed: importing it raises ImportError
    assert event_loop_factory("auto") is None
    with pytest.raises(RuntimeError, match="server.event_loop is 'uvloop' but uvloop is not installed"):
        event_loop_factory("uvloop")


@pytest.mark.parametrize("loop, module", [("uvloop", "uvloop"), ("asyncio", "asyncio.unix_events")])
def test_serve_runs_on_the_configured_loop_with_the_gil_switch_interval(monkeypatch, loop, module):
    import asyncio

    from inference_server.api import app as app_module

    seen = {}

    async def fake_run_server(app, config, access_log=None):
        seen["loop"] = type(asyncio.get_running_loop()).__module__
        seen["switch"] = sys.getswitchinterval()

    monkeypatch.setattr(app_module, "run_server", fake_run_server)
    monkeypatch.setattr(app_module, "create_app", lambda config, backend_factory=None: None)
    before = sys.getswitchinterval()
    try:
        app_module.serve(parse_config({"server": {"event_loop": loop, "gil_switch_interval_ms": 0.25}}))
    finally:
        sys.setswitchinterval(before)
    assert seen == {"loop": module, "switch": pytest.approx(0.00025)}
    with pytest.raises(ConfigError, match="server.gil_switch_interval_ms: Input should be greater than 0"):
        parse_config({"server": {"gil_switch_interval_ms": 0}})
