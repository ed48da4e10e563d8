"""Bring docker-compose.yml up with a real Docker engine, for tests/compose/test_compose_up.py.

- `engine_problem()` starts a Docker engine when none answers (docker/ensure_dockerd.sh) and says why
  when none can be had.
- `build_images()` builds the project image and the stand-ins for the upstream images Docker Hub
  would serve (docker/build_images.sh; cached layers make a second run take seconds).
- `render_run_dir()` writes, into a temporary directory, copies of the project's configs with the
  timing shortened exactly as the end-to-end test shortens it (tests/e2e/shorten.py), the test's
  secrets, and a second compose override that mounts them over the shipped files.
- `Compose` runs one compose CLI (Debian's docker-compose v1, or the v2 plugin) on the project's
  docker-compose.yml + docker/compose.standins.yml + that override, under a unique project name.

Grafana has no stand-in (Debian does not package it): `SERVICES` leaves it out of `up`.
"""
from __future__ import annotations

import json
import os
import secrets as pysecrets
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

from tests.e2e.shorten import (
    ALERTMANAGER_ROUTE_TIMING,
    PROMETHEUS_FLAGS,
    PROMETHEUS_GLOBAL,
    WINDOW_FACTOR,
    scale_windows,
    shorten_rules,
)
from devstack.processes import REPO_ROOT

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
STANDINS_FILE = REPO_ROOT / "docker" / "compose.standins.yml"
ENSURE_DOCKERD = REPO_ROOT / "docker" / "ensure_dockerd.sh"
BUILD_IMAGES = REPO_ROOT / "docker" / "build_images.sh"

# Every service of the default (cpu) profile but Grafana, whose image has no local stand-in.
SERVICES = ["inference-server", "exporter", "loadgen", "prometheus", "alertmanager", "mailpit", "alert-sinks"]
# The variable docker-compose.yml reads each published host port from.
HOST_PORT_VARS = {
    "inference-server": "SERVER_HOST_PORT",
    "exporter": "EXPORTER_HOST_PORT",
    "loadgen": "LOADGEN_HOST_PORT",
    "prometheus": "PROMETHEUS_HOST_PORT",
    "alertmanager": "ALERTMANAGER_HOST_PORT",
    "grafana": "GRAFANA_HOST_PORT",
    "mailpit": "MAILPIT_HOST_PORT",
    "mailpit-smtp": "MAILPIT_SMTP_HOST_PORT",
    "alert-sinks": "ALERT_SINKS_HOST_PORT",
}


def docker_cli() -> str:
    """Debian's docker.io CLI when installed (it matches the engine it comes with), else any."""
    return "/usr/bin/docker" if Path("/usr/bin/docker").exists() else (shutil.which("docker") or "docker")


def engine_problem() -> Optional[str]:
    """None when a Docker engine answers (starting one if needed); else why there is none."""
    if shutil.which("dockerd") is None and shutil.which("docker") is None:
        return "no Docker engine: neither docker nor dockerd is installed (`make tools` installs docker.io)"
    proc = subprocess.run(["bash", str(ENSURE_DOCKERD)], capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        return f"no Docker engine could be started: {(proc.stderr or proc.stdout).strip()[-1500:]}"
    return None


def build_images(timeout: float = 1500) -> str:
    proc = subprocess.run(["bash", str(BUILD_IMAGES)], capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"docker/build_images.sh failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-6000:]}")
    return proc.stdout


def compose_v2_argv() -> Optional[list[str]]:
    """`docker compose` when the v2 plugin is installed, else None."""
    for cli in (shutil.which("docker"), "/usr/bin/docker"):
        if not cli or not Path(cli).exists():
            continue
        proc = subprocess.run([cli, "compose", "version", "--short"], capture_output=True, text=True, timeout=30)
        if proc.returncode == 0 and proc.stdout.strip().lstrip("v").startswith("2."):
            return [cli, "compose"]
    return None


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


# ---- configs with shortened timing -----------------------------------------------------------------

def _write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def shorten_exporter_job(job: dict) -> dict:
    """An anomaly job on the same time scale as the shortened rules: windows and periods / WINDOW_FACTOR,
    and a first fit after 5 points."""
    job = dict(job)
    job["query"] = scale_windows(str(job["query"]))
    for key, default in (("step", 60.0), ("fit_every", 3600.0), ("infer_every", 60.0)):
        job[key] = max(1.0, float(job.get(key, default)) / WINDOW_FACTOR)
    job["fit_window"] = max(float(job.get("fit_window", 7 * 86400.0)) / WINDOW_FACTOR, job["step"] * 60)
    job["min_fit_points"] = 5  # first scores after ~20 s instead of 30 steps
    return job


def _route_timing(route: dict, root: bool = True) -> None:
    for key, value in ALERTMANAGER_ROUTE_TIMING.items():
        if key in route or root:
            route[key] = value
    for child in route.get("routes") or []:
        _route_timing(child, root=False)


@dataclass
class RunDir:
    path: Path
    override: Path
    admin_token: str


def render_run_dir(path: Path) -> RunDir:
    """Configs, secrets and the override that mounts them; every path readable by the containers'
    users (nobody, app)."""
    path.mkdir(parents=True, exist_ok=True)
    raw = yaml.safe_load(COMPOSE_FILE.read_text())

    # Prometheus: 1 s scrapes and evaluations, shortened rules, a 2 s resend delay.
    prom = yaml.safe_load((REPO_ROOT / "prometheus" / "prometheus.docker.yml").read_text())
    prom.setdefault("global", {}).update(PROMETHEUS_GLOBAL)
    for job in prom["scrape_configs"]:
        job["scrape_interval"] = PROMETHEUS_GLOBAL["scrape_interval"]
        job.pop("scrape_timeout", None)
    _write_yaml(path / "prometheus" / "prometheus.docker.yml", prom)
    for src in sorted((REPO_ROOT / "prometheus" / "rules").glob("*.yml")):
        _write_yaml(path / "prometheus" / "rules" / src.name, shorten_rules(yaml.safe_load(src.read_text())))

    # Alertmanager: 1 s group waits, 2 s group intervals; the Watchdog heartbeat to the Slack sink's
    # webhook endpoint (the shipped heartbeat receiver has no URL).
    am = yaml.safe_load((REPO_ROOT / "alertmanager" / "alertmanager.docker.yml").read_text())
    _route_timing(am["route"])
    for receiver in am["receivers"]:
        if receiver["name"] == "heartbeat":
            receiver["webhook_configs"] = [{"url": "http://alert-sinks:8025/webhook/watchdog", "send_resolved": False}]
    _write_yaml(path / "alertmanager" / "alertmanager.docker.yml", am)
    shutil.copytree(REPO_ROOT / "alertmanager" / "templates", path / "alertmanager" / "templates")

    # The server: the shipped config with the tests' small synthetic catalog (300 products); the
    # loadgen reads its catalog section (relevance.server_config) from the same file.
    server = yaml.safe_load((REPO_ROOT / "config" / "inference_server.yaml").read_text())
    server["catalog"].update(num_products=300, num_queries=50)
    server["model"]["num_threads"] = 1
    server["server"]["request_timeout_ms"] = 10000
    _write_yaml(path / "config" / "inference_server.yaml", server)
    loadgen = yaml.safe_load((REPO_ROOT / "config" / "loadgen.yaml").read_text())
    loadgen["rate"].update(requests_per_second=8, daily_amplitude=0.0, max_concurrency=64)
    loadgen["seed"] = 11
    _write_yaml(path / "config" / "loadgen.yaml", loadgen)
    exporter = yaml.safe_load((REPO_ROOT / "config" / "exporter.yaml").read_text())
    exporter["anomaly"]["jobs"] = [shorten_exporter_job(j) for j in exporter["anomaly"]["jobs"]]
    _write_yaml(path / "config" / "exporter.yaml", exporter)

    token = pysecrets.token_urlsafe(32)
    secret_values = {"admin_token": token, "alerts_token": pysecrets.token_urlsafe(32),
                     "feedback_token": pysecrets.token_urlsafe(32),
                     "slack_webhook_url": "http://alert-sinks:8025/slack/alerts",
                     "smtp_password": "test-mail-sink"}
    (path / "secrets").mkdir(exist_ok=True)
    for name, value in secret_values.items():
        (path / "secrets" / name).write_text(value + "\n")

    def mount(rel: str, target: str) -> str:
        return f"{path / rel}:{target}:ro"

    override = {
        "services": {
            "prometheus": {
                "command": list(raw["services"]["prometheus"]["command"]) + list(PROMETHEUS_FLAGS),
                "volumes": [mount("prometheus", "/etc/prometheus")],
            },
            "alertmanager": {"volumes": [mount("alertmanager", "/etc/alertmanager")]},
            "inference-server": {"volumes": [mount("config/inference_server.yaml", "/app/config/inference_server.yaml")]},
            "loadgen": {"volumes": [mount("config/inference_server.yaml", "/app/config/inference_server.yaml"),
                                    mount("config/loadgen.yaml", "/app/config/loadgen.yaml")]},
            "exporter": {"volumes": [mount("config/exporter.yaml", "/app/config/exporter.yaml")]},
        },
        "secrets": {name: {"file": str(path / "secrets" / name)} for name in secret_values},
    }
    override_path = _write_yaml(path / "compose.test-timing.yml", override)
    for p in [path, *path.rglob("*")]:
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    return RunDir(path=path, override=override_path, admin_token=token)


# ---- running compose ---------------------------------------------------------------------------

@dataclass
class Compose:
    argv: list[str]
    project: str
    files: list[Path]
    ports: dict[str, int]
    log: list[str] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("COMPOSE_") and k not in HOST_PORT_VARS.values() and k != "GRAFANA_ADMIN_PASSWORD"}
        env.update({HOST_PORT_VARS[name]: str(port) for name, port in self.ports.items()})
        env.update(COMPOSE_PROFILES="cpu", COMPOSE_HTTP_TIMEOUT="300", GRAFANA_ADMIN_PASSWORD="compose-test-only")
        return env

    def run(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [*self.argv, "-p", self.project, "--project-directory", str(REPO_ROOT)]
        for f in self.files:
            cmd += ["-f", str(f)]
        cmd += list(args)
        t0 = time.monotonic()
        proc = subprocess.run(cmd, cwd=REPO_ROOT, env=self.env, capture_output=True, text=True, timeout=timeout)
        self.log.append(f"{' '.join(args[:2])} {time.monotonic() - t0:.0f}s rc={proc.returncode}")
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def containers(self, all_: bool = True) -> list[dict]:
        """`docker inspect` of every container of the project."""
        ids = subprocess.run([docker_cli(), "ps", "-q", *(["-a"] if all_ else []), "--filter",
                              f"label=com.docker.compose.project={self.project}"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.split()
        if not ids:
            return []
        out = subprocess.run([docker_cli(), "inspect", *ids], capture_output=True, text=True, timeout=60, check=True)
        return json.loads(out.stdout)

    def service_states(self) -> dict[str, str]:
        states = {}
        for c in self.containers():
            name = c["Config"]["Labels"]["com.docker.compose.service"]
            health = (c["State"].get("Health") or {}).get("Status")
            states[name] = health or c["State"]["Status"]
        return states

    def wait_healthy(self, services: list[str], timeout: float) -> dict[str, str]:
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = self.service_states()
            if all(states.get(s) == "healthy" for s in services):
                return states
            dead = [s for s in services if states.get(s) in ("exited", "dead", "unhealthy")]
            if dead:
                break
            time.sleep(2)
        raise AssertionError(f"services not healthy within {timeout:.0f}s: {states}\n{self.diagnostics()}")

    def exec(self, service: str, *cmd: str, timeout: float = 60) -> str:
        return self.run("exec", "-T", service, *cmd, timeout=timeout).stdout

    def diagnostics(self, tail: int = 40) -> str:
        parts = ["\n".join(self.log[-20:])]
        try:
            parts.append(self.run("ps", check=False, timeout=60).stdout)
            logs = self.run("logs", "--no-color", "--tail", str(tail), check=False, timeout=120)
            parts.append(logs.stdout[-12000:] + logs.stderr[-2000:])
        except Exception as exc:  # noqa: BLE001 - diagnostics must not mask the real failure
            parts.append(f"(no diagnostics: {exc})")
        return "\n".join(parts)

    def leftovers(self) -> dict[str, list[str]]:
        label = f"label=com.docker.compose.project={self.project}"
        out = {}
        for kind, cmd in (("containers", ["ps", "-a", "-q"]), ("volumes", ["volume", "ls", "-q"]),
                          ("networks", ["network", "ls", "-q"])):
            res = subprocess.run([docker_cli(), *cmd, "--filter", label], capture_output=True, text=True, timeout=60)
            out[kind] = res.stdout.split()
        return out


def url_of(compose: Compose, service: str) -> str:
    return f"http://127.0.0.1:{compose.ports[service]}"


def get_json(url: str, headers: Optional[dict] = None, timeout: float = 10) -> Any:
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: Any, token: Optional[str] = None, timeout: float = 30) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def get_text(url: str, timeout: float = 10) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return resp.read().decode()


def eventually(what: str, probe: Callable[[], Any], timeout: float, diagnostics: Callable[[], str],
               interval: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Optional[Exception] = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except (urllib.error.URLError, OSError, KeyError, ValueError, IndexError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last})\n{diagnostics()}")


def image_sizes(prefixes: tuple[str, ...] = ("ecommerce-model-monitoring", "local/")) -> dict[str, int]:
    out = subprocess.run([docker_cli(), "images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
                         capture_output=True, text=True, timeout=60, check=True).stdout.split("\n")
    sizes = {}
    for line in out:
        if not line.strip():
            continue
        name, image_id = line.split()
        if name.startswith(prefixes):
            size = subprocess.run([docker_cli(), "image", "inspect", "-f", "{{.Size}}", image_id],
                                  capture_output=True, text=True, timeout=60, check=True).stdout.strip()
            sizes[name] = int(size)
    return sizes
