"""The whole monitoring loop on localhost: config rendering and process supervision.

The project's Prometheus, Alertmanager and Grafana files are written for docker-compose (hostnames
such as `inference-server:8000`, secrets under `/run/secrets/`). `render_*` writes copies into a run
directory with those hostnames mapped to 127.0.0.1 ports, secret paths mapped to local files and
relative paths made absolute; `scripts/run_stack.py` and the end-to-end test both use them, so the
configs they exercise are the project's own. `Supervisor` starts each component in its own process
group and stops them all (TERM, then KILL) so nothing outlives the stack.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import secrets as pysecrets
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import yaml

from devstack.processes import REPO_ROOT, ManagedProcess, spawn

# Hostnames used in the compose network (docker-compose.yml), by the service they name.
COMPOSE_HOSTS = ("inference-server", "exporter", "loadgen", "prometheus", "alertmanager", "grafana", "mailpit",
                 "alert-sinks", "localhost", "127.0.0.1", "0.0.0.0")
SECRET_NAMES = ("admin_token", "alerts_token", "feedback_token", "slack_webhook_url", "smtp_password")
CONTAINER_SECRETS_DIR = "/run/secrets"
# Where docker-compose.yml mounts the Grafana dashboards; the local stack maps it back to the repo.
CONTAINER_DASHBOARDS_DIR = "/var/lib/grafana/dashboards"


@dataclass
class Ports:
    """TCP ports of every component; defaults are the documented ones (docs/architecture.md)."""

    server: int = 8000
    exporter: int = 9400
    loadgen: int = 9500
    prometheus: int = 9090
    alertmanager: int = 9093
    grafana: int = 3000
    smtp: int = 1025
    sinks: int = 8025

    @classmethod
    def free(cls) -> "Ports":
        """Ports that were free when asked (for tests and a stack beside another one)."""
        return cls(**{f.name: free_port() for f in dataclasses.fields(cls)})

    def by_default_port(self) -> dict[int, int]:
        defaults = Ports()
        return {getattr(defaults, f.name): getattr(self, f.name) for f in dataclasses.fields(self)}

    def busy(self) -> list[str]:
        """Ports something listens on. SO_REUSEADDR, as the servers themselves bind: sockets left in
        TIME_WAIT by a stack stopped seconds ago do not count (restart after Ctrl-C works)."""
        out = []
        for f in dataclasses.fields(self):
            port = getattr(self, f.name)
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    sock.bind(("127.0.0.1", port))
                except OSError:
                    out.append(f"{f.name}:{port}")
        return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_SECRET_PATH = re.compile(r"(?:.*/)?secrets/([A-Za-z0-9_]+)")
_HOSTPORT = re.compile(r"\b(" + "|".join(re.escape(h) for h in COMPOSE_HOSTS) + r"):(\d{2,5})\b")


def rewrite_hosts(text: str, ports: Ports) -> str:
    """Map `<compose host>:<default port>` to `127.0.0.1:<local port>`; other host:ports stay as they are."""
    mapping = ports.by_default_port()

    def sub(m: re.Match) -> str:
        port = int(m.group(2))
        if port not in mapping:
            return m.group(0)
        return f"127.0.0.1:{mapping[port]}"

    return _HOSTPORT.sub(sub, text)


def _map_strings(node: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(node, str):
        return fn(node)
    if isinstance(node, list):
        return [_map_strings(v, fn) for v in node]
    if isinstance(node, dict):
        return {k: _map_strings(v, fn) for k, v in node.items()}
    return node


def _absolute(path: str, base: Path) -> str:
    return path if os.path.isabs(path) else str((base / path).resolve())


def render_prometheus(
    out_dir: Path,
    ports: Ports,
    *,
    source: Path = REPO_ROOT / "prometheus" / "prometheus.yml",
    global_overrides: Optional[Mapping[str, Any]] = None,
    scrape_interval: Optional[str] = None,
    rule_transform: Optional[Callable[[dict], dict]] = None,
    drop_jobs: Iterable[str] = (),
    runbook_base_url: Optional[str] = None,
) -> Path:
    """Write out_dir/prometheus.yml (and rules/) from the project's config, for 127.0.0.1 ports.

    `rule_transform` receives each parsed rule file and returns the one to write (the e2e test uses it
    to shorten `for:` durations); `scrape_interval` overrides every job's interval; `runbook_base_url`
    replaces the directory part of every `runbook_url` annotation (e.g. the local docs the alert sinks
    serve), keeping the `<alertname>.md` page.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(source.read_text()) or {}
    cfg = _map_strings(cfg, lambda s: rewrite_hosts(s, ports))
    if global_overrides:
        cfg.setdefault("global", {}).update(global_overrides)
    rules_dir = out_dir / "rules"
    if rules_dir.exists():
        shutil.rmtree(rules_dir)
    rules_dir.mkdir()
    rule_paths: list[str] = []
    seen: set[str] = set()
    for pattern in cfg.get("rule_files") or []:
        matches = sorted(source.parent.glob(pattern)) if not os.path.isabs(pattern) else sorted(Path("/").glob(pattern.lstrip("/")))
        for src in matches:
            rel = src.relative_to(source.parent) if src.is_relative_to(source.parent) else Path(src.name)
            dst = rules_dir / rel.as_posix().replace("/", "__")
            if dst.name in seen:
                continue
            seen.add(dst.name)
            data = yaml.safe_load(src.read_text()) or {}
            if rule_transform is not None:
                data = rule_transform(copy.deepcopy(data))
            if runbook_base_url is not None:
                _rebase_runbooks(data, runbook_base_url)
            dst.write_text(yaml.safe_dump(data, sort_keys=False))
            rule_paths.append(str(dst))
    cfg["rule_files"] = rule_paths
    drop = set(drop_jobs)
    jobs = []
    for job in cfg.get("scrape_configs") or []:
        if job.get("job_name") in drop:
            continue
        if scrape_interval is not None:
            job["scrape_interval"] = scrape_interval
            if "scrape_timeout" in job:
                job["scrape_timeout"] = scrape_interval
        for key in ("bearer_token_file", "credentials_file", "password_file"):
            _absolutize_key(job, key, source.parent)
        jobs.append(job)
    cfg["scrape_configs"] = jobs
    path = out_dir / "prometheus.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _rebase_runbooks(rule_file: dict, base_url: str) -> None:
    for group in rule_file.get("groups") or []:
        for rule in group.get("rules") or []:
            annotations = rule.get("annotations") or {}
            if "runbook_url" in annotations:
                annotations["runbook_url"] = base_url.rstrip("/") + "/" + annotations["runbook_url"].rsplit("/", 1)[-1]


def _absolutize_key(node: Any, key: str, base: Path) -> None:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key and isinstance(v, str):
                node[k] = _absolute(v, base)
            else:
                _absolutize_key(v, key, base)
    elif isinstance(node, list):
        for v in node:
            _absolutize_key(v, key, base)


def write_local_secrets(secrets_dir: Path, ports: Ports, *, admin_token: Optional[str] = None,
                        real_secrets_dir: Optional[Path] = None) -> dict[str, Path]:
    """Secret files for the local stack: fresh admin, alerts and feedback tokens, the local Slack sink as the webhook URL,
    a placeholder SMTP password. With `real_secrets_dir`, files present there are used instead (real
    Slack / SMTP delivery, see docs/alert-delivery.md)."""
    secrets_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(secrets_dir, 0o700)
    values = {
        "admin_token": admin_token or pysecrets.token_urlsafe(32),
        "alerts_token": pysecrets.token_urlsafe(32),
        "feedback_token": pysecrets.token_urlsafe(32),
        "slack_webhook_url": f"http://127.0.0.1:{ports.sinks}/slack/alerts",
        "smtp_password": "local-mail-catcher",
    }
    out: dict[str, Path] = {}
    for name, value in values.items():
        real = real_secrets_dir / name if real_secrets_dir is not None else None
        if real is not None and real.is_file() and real.read_text().strip():
            out[name] = real.resolve()
            continue
        path = secrets_dir / name
        path.write_text(value + "\n")
        os.chmod(path, 0o600)
        out[name] = path
    return out


def render_alertmanager(
    out_dir: Path,
    ports: Ports,
    secret_files: Mapping[str, Path],
    *,
    source: Path = REPO_ROOT / "alertmanager" / "alertmanager.yml",
    route_overrides: Optional[Mapping[str, Any]] = None,
    heartbeat_url: Optional[str] = None,
    transform: Optional[Callable[[dict], dict]] = None,
) -> Path:
    """Write out_dir/alertmanager.yml for localhost: hosts -> 127.0.0.1 ports, secret paths -> local
    files, template globs absolute. `route_overrides` replaces timing keys (group_wait, ...) on every
    route node that sets them (and on the root); `heartbeat_url` gives the `heartbeat` receiver (the
    Watchdog's) a webhook; `transform` edits the parsed config last."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg = yaml.safe_load(source.read_text()) or {}

    def fix(s: str) -> str:
        # `/run/secrets/<name>` (compose) or `../secrets/<name>` (the repo's secrets/ folder).
        m = _SECRET_PATH.fullmatch(s)
        if m and m.group(1) in secret_files:
            return str(secret_files[m.group(1)])
        return rewrite_hosts(s, ports)

    cfg = _map_strings(cfg, fix)
    cfg["templates"] = [_absolute(t, source.parent) for t in cfg.get("templates") or []]
    for key in ("api_url_file", "auth_password_file", "smtp_auth_password_file", "credentials_file",
                "password_file", "bearer_token_file", "routing_key_file", "service_key_file"):
        _absolutize_key(cfg, key, source.parent)
    if route_overrides:
        def apply(route: dict) -> None:
            for key, value in route_overrides.items():
                if key in route or route is cfg.get("route"):
                    route[key] = value
            for child in route.get("routes") or []:
                apply(child)

        apply(cfg.get("route") or {})
    if heartbeat_url is not None:
        for receiver in cfg.get("receivers") or []:
            if receiver.get("name") == "heartbeat":
                receiver["webhook_configs"] = [{"url": heartbeat_url, "send_resolved": False}]
    if transform is not None:
        cfg = transform(cfg)
    path = out_dir / "alertmanager.yml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def render_grafana_provisioning(out_dir: Path, ports: Ports, *, source: Path = REPO_ROOT / "grafana") -> Path:
    """Copy grafana/provisioning with datasource URLs and the dashboards path made local."""
    src = source / "provisioning"
    dst = out_dir / "provisioning"
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)
    dashboards = str((source / "dashboards").resolve())
    for path in dst.rglob("*.y*ml"):
        text = rewrite_hosts(path.read_text(), ports).replace(CONTAINER_DASHBOARDS_DIR, dashboards)
        path.write_text(text)
    return dst


# -- processes -----------------------------------------------------------------------------------


@dataclass
class Supervisor:
    """Starts components as process-group leaders with logs under `log_dir`; `stop()` ends them all."""

    log_dir: Path
    pid_file: Optional[Path] = None  # {name: pid} of the running components, for operators and tests
    children: list[ManagedProcess] = field(default_factory=list)

    def start(self, name: str, argv: list[str], *, env: Optional[Mapping[str, str]] = None,
              cwd: Path = REPO_ROOT, url: Optional[str] = None, ready_url: Optional[str] = None) -> ManagedProcess:
        log_path = self.log_dir / f"{name}.log"
        proc = spawn(argv, log_path, cwd=cwd, env={**os.environ, **(env or {})})
        child = ManagedProcess(proc=proc, url=url or "", workdir=self.log_dir, log_path=log_path, name=name,
                               ready_url=ready_url)
        self.children.append(child)
        if self.pid_file is not None:
            self.pid_file.write_text(json.dumps({c.name: c.proc.pid for c in self.children}, indent=1) + "\n")
        return child

    def exited(self) -> list[ManagedProcess]:
        return [c for c in self.children if not c.alive()]

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM every process group (newest first), wait, then SIGKILL what is left."""
        for child in reversed(self.children):
            child.terminate()
        deadline = time.monotonic() + timeout
        for child in reversed(self.children):
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        for child in self.children:
            child.kill()
