"""Config: YAML validated into dataclasses; errors name the dotted key; env overrides; CLI."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import yaml

from inference_server import config as config_module
from inference_server.config import ConfigError, apply_env_overrides, load_config, parse_config, register_section
from devstack.processes import REPO_ROOT


def test_shipped_config_matches_the_defaults():
    shipped = load_config(REPO_ROOT / "config" / "inference_server.yaml", environ={})
    assert shipped == parse_config({})
    assert shipped.server.host == "127.0.0.1" and shipped.batching.max_batch_size == 32


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"batching": {"max_batch_size": "x"}}, "batching.max_batch_size: expected int, got 'x'"),
        ({"batching": {"max_batch_size": True}}, "batching.max_batch_size: expected int, got True"),
        ({"batching": {"max_batch_sise": 3}}, "batching.max_batch_sise: unknown key"),
        ({"server": {"limits": {"max_k": "many"}}}, "server.limits.max_k: expected int, got 'many'"),
        ({"server": {"limits": {"max_k": 0}}}, "server.limits.max_k: expected >= 1, got 0"),
        ({"server": {"port": 70000}}, "server.port: expected 0..65535"),
        ({"model": {"dtype": "float8"}}, "model.dtype: expected one of"),
        ({"model": {"num_threads": "two"}}, "model.num_threads: expected int, got 'two'"),
        ({"catalog": {"source": "mysql"}}, "catalog.source: expected one of"),
        ({"request_log": {"enabled": "yes"}}, "request_log.enabled: expected bool, got 'yes'"),
        ({"batching": []}, "batching: expected a mapping"),
        ({"modles": {}}, "modles: unknown key"),
        ({"batching": {"max_queue_delay_ms": -1}}, "batching.max_queue_delay_ms: expected >= 0"),
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
    with pytest.raises(ConfigError, match="batching.max_batch_size: expected int, got 'lots'"):
        parse_config(apply_env_overrides({}, {"INFERENCE_SERVER__BATCHING__MAX_BATCH_SIZE": "lots"}))
    with pytest.raises(ConfigError, match="batching.nope: unknown key"):
        parse_config(apply_env_overrides({}, {"INFERENCE_SERVER__BATCHING__NOPE": "1"}))


def test_registered_sections_are_validated(monkeypatch):
    @dataclasses.dataclass
    class Repo:
        root: str = "models"
        keep: int = 2

    monkeypatch.setattr(config_module, "_EXTRA_SECTIONS", {})
    register_section("models", Repo)
    assert parse_config({}).section("models") == Repo()
    assert parse_config({"models": {"keep": 3}}).section("models").keep == 3
    with pytest.raises(ConfigError, match="models.keep: expected int, got 'x'"):
        parse_config({"models": {"keep": "x"}})
    with pytest.raises(ValueError):
        register_section("batching", Repo)


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

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
    assert "batching.max_batch_size: expected int, got 'x'" in failed.stderr
