"""Start the real exporter (`python -m exporter`) as a subprocess for integration tests.

On a machine without an NVIDIA driver the exporter reports `nvidia_gpu_nvml_up 0` with
`reason="library_not_found"` and keeps serving; that is its correct behaviour, not a failure.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import yaml

from devstack.processes import REPO_ROOT, ManagedProcess, free_port, launch


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
