"""Start the project's own components as child processes on 127.0.0.1: the inference server with a small
synthetic catalog, and the exporter. Used by the tests, the benchmarks and the bundle's live checks.

On a machine without an NVIDIA driver the exporter reports `nvidia_gpu_nvml_up 0` with
`reason="library_not_found"` and keeps serving; that is its correct behaviour, not a failure.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import yaml

from devstack.processes import REPO_ROOT, ManagedProcess, free_port, launch

__all__ = ["base_server_config", "start_exporter", "start_inference_server"]


def base_server_config(workdir: Path, port: int) -> dict[str, Any]:
    """The test config: small synthetic catalog, everything written under `workdir`."""
    return {
        "server": {"host": "127.0.0.1", "port": port, "request_timeout_ms": 10000},
        "model": {"num_threads": 1},
        "catalog": {
            "source": "synthetic",
            "num_products": 300,
            "num_queries": 50,
            "cache_dir": str(workdir / "cache"),
        },
        "batching": {"max_batch_size": 32, "max_queue_delay_ms": 2.0, "max_queue_size": 512},
        "request_log": {"enabled": True, "path": str(workdir / "requests.jsonl")},
    }


def _merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def register_versions(config_path: Path, *, env: Optional[dict[str, str]] = None, timeout: float = 600.0) -> None:
    """Register every version of the config's repository that has no artefacts yet for its catalog (the
    server refuses unregistered versions and never registers them itself; drills load version 2 later)."""
    proc = subprocess.run([sys.executable, "-m", "inference_server.lifecycle.registration", "--config", str(config_path),
                           "register", "--all", "--missing-only", "--no-progress"],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"registering the model versions of {config_path} failed:\n{proc.stdout}{proc.stderr}")


def start_inference_server(
    workdir: Path,
    overrides: Optional[dict[str, Any]] = None,
    port: Optional[int] = None,
    *,
    timeout: float = 120.0,
    env: Optional[dict[str, str]] = None,
    command: Optional[list[str]] = None,
) -> ManagedProcess:
    """Start the server with the test config deep-merged with `overrides`; wait for /readyz.

    `command` replaces `python -m inference_server` (a launcher taking `--config FILE` too, e.g. the
    serving benchmark's null-model server). The returned ManagedProcess has `url`
    (http://127.0.0.1:<port>) and `extra["config_path"]`.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = _merge(base_server_config(workdir, port), overrides or {})
    config_path = workdir / "inference_server.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    child_env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "INFERENCE_SERVER_USER_ID_SALT": "test-salt",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    register_versions(config_path, env=child_env, timeout=timeout)
    command = command or [sys.executable, "-m", "inference_server"]
    return launch("inference_server", [*command, "--config", str(config_path)],
                  workdir=workdir, url=f"http://127.0.0.1:{config['server']['port']}", ready_path="/readyz",
                  timeout=timeout, env=child_env, cwd=REPO_ROOT,
                  extra={"config_path": config_path, "config": config})


def start_exporter(
    workdir: Path,
    config: dict | None = None,
    port: int | None = None,
    *,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> ManagedProcess:
    """Run the exporter on 127.0.0.1:`port` (a free one by default) with `config` written to
    workdir/exporter.yaml (the `server` section is filled in), and wait for /healthz.

    Returns a ManagedProcess: `.url` is the base URL, `.log()` the combined output, `.stop()` ends it.
    Use `devstack.processes.running(proc)` as a context manager to always stop it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cfg = dict(config or {})
    server = dict(cfg.get("server") or {})
    server.update(host="127.0.0.1", port=port)
    cfg["server"] = server
    cfg_path = workdir / "exporter.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER__")}
    child_env.update(env or {})
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    return launch("exporter", [sys.executable, "-m", "exporter", "--config", str(cfg_path)], workdir=workdir,
                  url=f"http://127.0.0.1:{port}", ready_path="/healthz", timeout=timeout, env=child_env,
                  cwd=REPO_ROOT)
