"""The one process supervisor: start child processes with their logs, wait until they answer, stop them.

`make run` (devstack.localstack), the tests and the benchmarks all start processes through here, so
the details (own process group, SIGTERM when the parent dies, free ports, readiness polling, group
teardown) behave the same everywhere. Also: Prometheus and Alertmanager launchers for throwaway
instances on 127.0.0.1.
"""
from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Mapping, Optional

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


class MissingBinary(RuntimeError):
    """None of the named programs is on PATH."""


def require_binary(*names: str) -> str:
    """The first of `names` found on PATH; `MissingBinary` naming them all otherwise."""
    path = find_binary(*names)
    if path is None:
        raise MissingBinary(f"none of {names} on PATH; run `make tools`")
    return path


_PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    """In the child: SIGTERM when the parent dies (Linux), so no component outlives a killed supervisor."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def spawn(argv: list[str], log_path: Path, *, cwd: Path, env: Optional[Mapping[str, str]] = None) -> subprocess.Popen:
    """Start `argv` as the leader of its own process group, output to `log_path`, no stdin."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd,
                                env=dict(env) if env is not None else None, start_new_session=True,
                                preexec_fn=_child_setup)


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    """Send `sig` to the process group `proc` leads (it and whatever it started)."""
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def wait_http(url: str, timeout: float, child: Optional["ManagedProcess"] = None, ok: Callable[[int], bool] = lambda s: s == 200,
              tick: Optional[Callable[[], None]] = None) -> None:
    """Poll `url` until it answers with an accepted status; fail early if `child` exits. `tick` runs
    before every attempt (e.g. to show the child's progress)."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if tick is not None:
            tick()
        if child is not None and not child.alive():
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode} before {url} answered:\n"
                               f"{child.log_tail()}")
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if ok(resp.status):
                    return
                last = resp.status
        except urllib.error.HTTPError as exc:
            last = exc.code
        except (urllib.error.URLError, ConnectionError, OSError) as exc:
            last = exc
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not become ready within {timeout:.0f}s (last: {last})")


def http_json(url: str, data: dict | None = None, timeout: float = 10.0) -> dict:
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


@dataclass
class ManagedProcess:
    """A child process (leader of its own process group) with its log; stop() ends the whole group."""

    proc: subprocess.Popen
    url: str
    workdir: Path
    log_path: Path
    extra: dict = field(default_factory=dict)
    name: str = ""
    ready_url: Optional[str] = None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log().splitlines()[-n:])

    def terminate(self) -> None:
        signal_group(self.proc, signal.SIGTERM)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, wait up to `timeout`, then SIGKILL whatever of the group is left."""
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self) -> None:
        # The leader may be gone while a grandchild lingers in its group: KILL the group regardless.
        signal_group(self.proc, signal.SIGKILL)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


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
    workdir.mkdir(parents=True, exist_ok=True)
    log_path = workdir / f"{what.lower().replace(' ', '_')}.log"
    proc = spawn(args, log_path, cwd=cwd or workdir, env=env)
    managed = cls(proc=proc, url=url, workdir=workdir, log_path=log_path, extra=extra or {}, name=what)
    try:
        wait_http(f"{url}{ready_path}", timeout, managed)
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
