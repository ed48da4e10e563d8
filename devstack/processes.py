"""Start and stop real Prometheus and Alertmanager processes on 127.0.0.1 for tests.

One place owns the details (free ports, data dirs, readiness polling, teardown) so every test that
needs a live Prometheus or Alertmanager gets the same, reliable behaviour.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free when asked."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def find_binary(*names: str) -> str | None:
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    return None


def require_binary(*names: str) -> str:
    """The first binary found, or a skip (outside CI) / failure (in CI) naming what is missing."""
    import os

    path = find_binary(*names)
    if path is None:
        msg = f"none of {names} on PATH; run `make tools`"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def wait_http_ok(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not answer 200 within {timeout}s: {last}")


def http_json(url: str, data: dict | None = None, timeout: float = 10.0) -> dict:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class ManagedProcess:
    """A child process with its log file; stop() terminates it and waits."""

    proc: subprocess.Popen
    url: str
    workdir: Path
    log_path: Path
    extra: dict = field(default_factory=dict)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class Prometheus(ManagedProcess):
    def query(self, promql: str, time_s: float | None = None) -> list[dict]:
        from urllib.parse import urlencode

        params = {"query": promql}
        if time_s is not None:
            params["time"] = str(time_s)
        res = http_json(f"{self.url}/api/v1/query?{urlencode(params)}")
        assert res["status"] == "success", res
        return res["data"]["result"]

    def reload(self) -> None:
        req = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        urllib.request.urlopen(req, timeout=10).read()


def _prepare_workdir(workdir: Path, copy_files: dict[str, Path] | None, name: str, config: dict | str) -> Path:
    """Create workdir, copy the files the config refers to, write the config; return its path."""
    import yaml

    workdir.mkdir(parents=True, exist_ok=True)
    for rel, src in (copy_files or {}).items():
        dst = workdir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, dst)
    cfg_path = workdir / name
    cfg_path.write_text(config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False))
    return cfg_path


def launch(
    what: str,
    args: list[str],
    *,
    workdir: Path,
    url: str,
    ready_path: str,
    timeout: float,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    cls: type[ManagedProcess] = ManagedProcess,
    extra: dict | None = None,
) -> ManagedProcess:
    """Start `args` with its output in workdir/<what>.log; return once GET url+ready_path is 200.

    If it does not answer in time it is stopped and the error carries the end of its log.
    """
    log_path = workdir / f"{what.lower().replace(' ', '_')}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=cwd or workdir, env=env)
    managed = cls(proc=proc, url=url, workdir=workdir, log_path=log_path, extra=extra or {})
    try:
        wait_http_ok(f"{url}{ready_path}", timeout=timeout, proc=proc)
    except Exception:
        managed.stop()
        raise RuntimeError(f"{what} did not become ready:\n{managed.log()[-4000:]}")
    return managed


def start_prometheus(
    workdir: Path,
    config: dict | str,
    *,
    port: int | None = None,
    extra_args: list[str] | None = None,
    copy_files: dict[str, Path] | None = None,
    timeout: float = 30.0,
) -> Prometheus:
    """Start Prometheus with `config` (a dict or YAML text) written to workdir/prometheus.yml.

    copy_files maps names inside workdir to files copied there first (e.g. rule files), so relative
    paths in the config resolve against workdir.
    """
    binary = require_binary("prometheus")
    cfg_path = _prepare_workdir(workdir, copy_files, "prometheus.yml", config)
    port = port or free_port()
    args = [
        binary,
        f"--config.file={cfg_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--web.enable-lifecycle",
        "--web.enable-admin-api",
        *(extra_args or []),
    ]
    return launch("Prometheus", args, workdir=workdir, url=f"http://127.0.0.1:{port}", ready_path="/-/ready",
                  timeout=timeout, cls=Prometheus)


def start_alertmanager(
    workdir: Path,
    config: dict | str,
    *,
    port: int | None = None,
    extra_args: list[str] | None = None,
    copy_files: dict[str, Path] | None = None,
    timeout: float = 30.0,
) -> ManagedProcess:
    """Start Alertmanager (Debian's `prometheus-alertmanager`) with `config` in workdir."""
    binary = require_binary("prometheus-alertmanager", "alertmanager")
    cfg_path = _prepare_workdir(workdir, copy_files, "alertmanager.yml", config)
    port = port or free_port()
    cluster_port = free_port()
    args = [
        binary,
        f"--config.file={cfg_path}",
        f"--storage.path={workdir / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--cluster.listen-address=127.0.0.1:{cluster_port}",
        f"--cluster.advertise-address=127.0.0.1:{cluster_port}",
        *(extra_args or []),
    ]
    return launch("Alertmanager", args, workdir=workdir, url=f"http://127.0.0.1:{port}", ready_path="/-/ready",
                  timeout=timeout)


@contextlib.contextmanager
def running(process: ManagedProcess) -> Iterator[ManagedProcess]:
    try:
        yield process
    finally:
        process.stop()
