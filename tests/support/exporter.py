"""Start the real exporter (`python -m exporter`) as a subprocess for integration tests.

On a machine without an NVIDIA driver the exporter reports `nvidia_gpu_nvml_up 0` with
`reason="library_not_found"` and keeps serving; that is its correct behaviour, not a failure.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.support.processes import REPO_ROOT, ManagedProcess, free_port, wait_http_ok


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
    Use `tests.support.processes.running(proc)` as a context manager to always stop it.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cfg = dict(config or {})
    server = dict(cfg.get("server") or {})
    server.update(host="127.0.0.1", port=port)
    cfg["server"] = server
    cfg_path = workdir / "exporter.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    log_path = workdir / "exporter.log"
    child_env = {k: v for k, v in os.environ.items() if not k.startswith("EXPORTER__")}
    child_env.update(env or {})
    child_env.setdefault("PYTHONUNBUFFERED", "1")
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "exporter", "--config", str(cfg_path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=REPO_ROOT,
        env=child_env,
    )
    log.close()
    exporter = ManagedProcess(proc=proc, url=f"http://127.0.0.1:{port}", workdir=workdir, log_path=log_path)
    try:
        wait_http_ok(f"{exporter.url}/healthz", timeout=timeout, proc=proc)
    except Exception:
        exporter.stop()
        raise RuntimeError(f"exporter did not start:\n{exporter.log()[-4000:]}")
    return exporter
