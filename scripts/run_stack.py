#!/usr/bin/env python3
"""Run the whole monitoring loop on localhost, without Docker (`make run`).

Starts the inference server, the exporter, the traffic simulator, Prometheus and Alertmanager with
the project's configs (rendered for localhost into var/run/stack/), a local mail catcher and
Slack-compatible webhook sink (so alerts are visible without real Slack or SMTP), and Grafana with
the project's provisioning when a `grafana-server` binary is installed. Prints every URL; Ctrl-C
(or SIGTERM) stops everything. `--smoke` brings the stack up, checks that every Prometheus target is
up and the alert pages answer, and exits (0 = the quick start works).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from devstack.localstack import (  # noqa: E402  (after the sys.path line above)
    Ports,
    Supervisor,
    render_alertmanager,
    render_grafana_provisioning,
    render_prometheus,
    write_local_secrets,
)
from devstack.components import register_versions  # noqa: E402
from devstack.processes import find_binary, wait_http  # noqa: E402
from devstack.startup_progress import LogProgress  # noqa: E402


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="scripts/run_stack.py",
        description=__doc__.split("\n\n")[0] + " " + __doc__.split("\n\n")[1].replace("\n", " "),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--run-dir", type=Path, default=None,
                   help="where rendered configs, secrets, data and logs go, recreated on start "
                        "(default: var/run/stack, var/run/smoke with --smoke)")
    p.add_argument("--free-ports", action="store_true",
                   help="pick free ports instead of the defaults (8000, 9400, 9500, 9090, 9093, 3000, 1025, 8025)")
    p.add_argument("--server-config", type=Path, default=REPO_ROOT / "config" / "inference_server.yaml")
    p.add_argument("--exporter-config", type=Path, default=REPO_ROOT / "config" / "exporter.yaml")
    p.add_argument("--loadgen-config", type=Path, default=REPO_ROOT / "config" / "loadgen.yaml")
    p.add_argument("--rate", type=float, default=5.0, help="simulated shoppers' mean requests per second")
    p.add_argument("--day-length", type=float, default=3600.0,
                   help="wall seconds per simulated day (the daily traffic pattern, compressed)")
    p.add_argument("--no-loadgen", action="store_true", help="do not start the traffic simulator")
    p.add_argument("--no-grafana", action="store_true", help="do not start Grafana even if installed")
    p.add_argument("--secrets-dir", type=Path, default=None,
                   help="use real secret files from here (slack_webhook_url, smtp_password, admin_token, "
                        "alerts_token, feedback_token) "
                        "instead of local ones; see docs/alert-delivery.md")
    p.add_argument("--runbook-base-url", default=None,
                   help="where the alerts' runbook links point (default: the local docs the alert sinks serve, "
                        "http://127.0.0.1:<sinks port>/docs/runbooks/)")
    p.add_argument("--ready-timeout", type=float, default=600.0,
                   help="seconds to wait for the inference server (first start embeds the catalog)")
    p.add_argument("--smoke", "--check", dest="smoke", action="store_true",
                   help="start, verify (targets up, alert pages answer, traffic flowing), stop; exit 0 if all good. "
                        "Implies --free-ports unless --default-ports is given")
    p.add_argument("--default-ports", action="store_true", help="with --smoke: use the default ports")
    p.add_argument("--smoke-timeout", type=float, default=180.0,
                   help="seconds --smoke waits for all Prometheus targets to be up")
    return p.parse_args(argv)


class Stack:
    """Renders configs, starts the components in dependency order, and stops them."""

    def __init__(self, args: argparse.Namespace, ports: Ports) -> None:
        self.args = args
        self.ports = ports
        self.run_dir: Path = args.run_dir.resolve()
        self.sup = Supervisor(self.run_dir / "logs", pid_file=self.run_dir / "pids.json")
        self.notes: list[str] = []
        self.python = sys.executable

    # -- preparation --------------------------------------------------------------------------
    def prepare(self) -> None:
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True)
        self.secret_files = write_local_secrets(self.run_dir / "secrets", self.ports,
                                                real_secrets_dir=self.args.secrets_dir)
        runbooks = self.args.runbook_base_url or f"http://127.0.0.1:{self.ports.sinks}/docs/runbooks/"
        self.prom_cfg = render_prometheus(self.run_dir / "prometheus", self.ports,
                                          drop_jobs=("loadgen",) if self.args.no_loadgen else (),
                                          runbook_base_url=runbooks)
        self.am_cfg = render_alertmanager(self.run_dir / "alertmanager", self.ports, self.secret_files,
                                          heartbeat_url=f"http://127.0.0.1:{self.ports.sinks}/webhook/watchdog")

    def _env(self) -> dict[str, str]:
        return {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}

    # -- components ---------------------------------------------------------------------------
    def start_all(self) -> None:
        p = self.ports
        print(f"run dir: {self.run_dir} (configs, logs, data)", flush=True)
        sinks = self.sup.start(
            "alert-sinks",
            [self.python, "-m", "devstack.alert_sinks", "--http", f"127.0.0.1:{p.sinks}",
             "--smtp", f"127.0.0.1:{p.smtp}"],
            env=self._env(), url=f"http://127.0.0.1:{p.sinks}/", ready_url=f"http://127.0.0.1:{p.sinks}/healthz")
        print("registering model versions (make register) ...", flush=True)
        register_versions(self.args.server_config, env={**os.environ, **self._env(), **self.server_env()})
        server = self.sup.start(
            "inference-server",
            [self.python, "-m", "inference_server", "--config", str(self.args.server_config),
             "--host", "127.0.0.1", "--port", str(p.server)],
            env={**self._env(), **self.server_env()}, url=f"http://127.0.0.1:{p.server}/v1/models",
            ready_url=f"http://127.0.0.1:{p.server}/readyz")
        prom_bin = find_binary("prometheus")
        am_bin = find_binary("prometheus-alertmanager", "alertmanager")
        if prom_bin is None or am_bin is None:
            raise SystemExit("prometheus / alertmanager not found on PATH: run `make tools` (Debian packages)")
        am = self.sup.start(
            "alertmanager",
            [am_bin, f"--config.file={self.am_cfg}", f"--storage.path={self.run_dir / 'alertmanager' / 'data'}",
             f"--web.listen-address=127.0.0.1:{p.alertmanager}", f"--web.external-url=http://127.0.0.1:{p.alertmanager}",
             "--cluster.listen-address="],
            url=f"http://127.0.0.1:{p.alertmanager}/", ready_url=f"http://127.0.0.1:{p.alertmanager}/-/ready")
        prom = self.sup.start(
            "prometheus",
            [prom_bin, f"--config.file={self.prom_cfg}", f"--storage.tsdb.path={self.run_dir / 'prometheus' / 'data'}",
             f"--web.listen-address=127.0.0.1:{p.prometheus}", f"--web.external-url=http://127.0.0.1:{p.prometheus}",
             "--web.enable-lifecycle", "--storage.tsdb.retention.time=7d"],
            url=f"http://127.0.0.1:{p.prometheus}/", ready_url=f"http://127.0.0.1:{p.prometheus}/-/ready")
        exporter = self.sup.start(
            "exporter",
            [self.python, "-m", "exporter", "--config", str(self.args.exporter_config),
             "--host", "127.0.0.1", "--port", str(p.exporter)],
            env={**self._env(), **self.exporter_env()}, url=f"http://127.0.0.1:{p.exporter}/metrics",
            ready_url=f"http://127.0.0.1:{p.exporter}/healthz")
        for child, timeout in ((sinks, 30), (am, 60), (prom, 60), (exporter, 60)):
            wait_http(child.ready_url, timeout, child)
            print(f"  {child.name:17s} ready", flush=True)
        self.prom_ui = prometheus_ui_prefix(f"http://127.0.0.1:{p.prometheus}")
        print(f"  inference-server  starting (log: {server.log_path})", flush=True)
        progress = LogProgress(server.log_path)
        try:
            wait_http(server.ready_url, self.args.ready_timeout, server, tick=progress.poll)
        finally:
            progress.close()
        print("  inference-server  ready", flush=True)
        if not self.args.no_loadgen:
            loadgen = self.sup.start(
                "loadgen",
                [self.python, "-m", "loadgen", "--config", str(self.args.loadgen_config),
                 "--url", f"http://127.0.0.1:{p.server}", "--listen", f"127.0.0.1:{p.loadgen}",
                 "--admin-token-file", str(self.secret_files["admin_token"]),
                 "--feedback-token-file", str(self.secret_files["feedback_token"]), "--rate", str(self.args.rate),
                 "--day-length", str(self.args.day_length), "--server-config", str(self.args.server_config)],
                env=self._env(), url=f"http://127.0.0.1:{p.loadgen}/status",
                ready_url=f"http://127.0.0.1:{p.loadgen}/status")
            wait_http(loadgen.ready_url, 120, loadgen)
            print("  loadgen           ready", flush=True)
        self.start_grafana()

    def server_env(self) -> dict[str, str]:
        """The server's admin token and request log go to the run dir (env overrides, docs/server.md)."""
        return {
            "INFERENCE_SERVER__ADMIN__TOKEN_FILE": str(self.secret_files["admin_token"]),
            "INFERENCE_SERVER__ADMIN__ALERTS_TOKEN_FILE": str(self.secret_files["alerts_token"]),
            "INFERENCE_SERVER__FEEDBACK__TOKEN_FILE": str(self.secret_files["feedback_token"]),
            "INFERENCE_SERVER__REQUEST_LOG__PATH": str(self.run_dir / "logs" / "requests.jsonl"),
            "INFERENCE_SERVER_USER_ID_SALT": secrets.token_hex(16),
        }

    def exporter_env(self) -> dict[str, str]:
        """The anomaly jobs read this stack's Prometheus."""
        return {"EXPORTER__ANOMALY__PROMETHEUS_URL": f"http://127.0.0.1:{self.ports.prometheus}"}

    def start_grafana(self) -> None:
        binary = None if self.args.no_grafana else find_binary("grafana-server", "grafana")
        if binary is None:
            self.notes.append("Grafana: not started (no `grafana-server` on PATH). Install Grafana "
                              "(https://grafana.com/docs/grafana/latest/setup-grafana/installation/debian/) and re-run, "
                              "or use `docker compose up`; the dashboards are in grafana/dashboards/.")
            return
        gdir = self.run_dir / "grafana"
        provisioning = render_grafana_provisioning(gdir, self.ports)
        password = os.environ.get("GRAFANA_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        homepath = next((h for h in ("/usr/share/grafana", "/usr/local/share/grafana")
                         if Path(h, "conf", "defaults.ini").exists()), None)
        argv = [binary] + (["server"] if Path(binary).name == "grafana" else [])
        if homepath:
            argv.append(f"--homepath={homepath}")
        env = {
            "GF_PATHS_PROVISIONING": str(provisioning), "GF_PATHS_DATA": str(gdir / "data"),
            "GF_PATHS_LOGS": str(gdir / "logs"), "GF_PATHS_PLUGINS": str(gdir / "plugins"),
            "GF_SERVER_HTTP_ADDR": "127.0.0.1", "GF_SERVER_HTTP_PORT": str(self.ports.grafana),
            "GF_SECURITY_ADMIN_USER": "admin", "GF_SECURITY_ADMIN_PASSWORD": password,
            "GF_ANALYTICS_REPORTING_ENABLED": "false", "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
        }
        child = self.sup.start("grafana", argv, env=env, url=f"http://127.0.0.1:{self.ports.grafana}/",
                               ready_url=f"http://127.0.0.1:{self.ports.grafana}/api/health")
        wait_http(child.ready_url, 120, child)
        print("  grafana           ready", flush=True)
        if not os.environ.get("GRAFANA_ADMIN_PASSWORD"):
            (gdir / "admin_password").write_text(password + "\n")
            self.notes.append(f"Grafana login: admin / {password} (set GRAFANA_ADMIN_PASSWORD to choose it)")

    def print_urls(self) -> None:
        p = self.ports
        rows = [
            ("Inference server", f"http://127.0.0.1:{p.server}/v1/models  (API: docs/api.md, /openapi.json)"),
            ("Server metrics", f"http://127.0.0.1:{p.server}/metrics"),
            ("Exporter metrics", f"http://127.0.0.1:{p.exporter}/metrics"),
            ("Prometheus", f"http://127.0.0.1:{p.prometheus}/  (targets: {self.prom_ui}targets, "
                           f"alerts: {self.prom_ui}alerts)"),
            ("Alertmanager", f"http://127.0.0.1:{p.alertmanager}/"
                             + ("" if alertmanager_has_ui(f"http://127.0.0.1:{p.alertmanager}/") else
                                f"  (API only: this build has no web UI; `amtool --alertmanager.url="
                                f"http://127.0.0.1:{p.alertmanager} alert query`, JSON: /api/v2/alerts)")),
            ("Alert sinks (mail + Slack)", f"http://127.0.0.1:{p.sinks}/  (SMTP 127.0.0.1:{p.smtp}; JSON: /api/mails, /api/slack)"),
            ("Runbooks", f"http://127.0.0.1:{p.sinks}/docs/runbooks/README.md  (where alerts link)"),
        ]
        if not self.args.no_loadgen:
            rows.append(("Traffic simulator", f"http://127.0.0.1:{p.loadgen}/status  (metrics: /metrics, drills: POST /v1/scenarios)"))
        if any(c.name == "grafana" for c in self.sup.children):
            rows.append(("Grafana", f"http://127.0.0.1:{p.grafana}/"))
        width = max(len(r[0]) for r in rows)
        print("\nThe stack is up:", flush=True)
        for name, url in rows:
            print(f"  {name:<{width}}  {url}")
        for note in self.notes:
            print(f"  note: {note}")
        print(f"  logs: {self.sup.log_dir}/<component>.log")
        if not self.args.no_loadgen:
            print(f"\nFault drill, e.g. an error burst for 2 minutes:\n"
                  f"  curl -X POST -H \"Authorization: Bearer $(cat {self.secret_files['admin_token']})\" "
                  f"-d '{{\"name\": \"error-burst\", \"duration_s\": 120}}' http://127.0.0.1:{p.loadgen}/v1/scenarios")
        print("\nCtrl-C stops everything.", flush=True)

    # -- smoke check --------------------------------------------------------------------------
    def smoke(self) -> list[str]:
        """Verify the quick start: every target up, rules loaded, alert pages answer, traffic flows."""
        p = self.ports
        prom = f"http://127.0.0.1:{p.prometheus}"
        problems: list[str] = []
        deadline = time.monotonic() + self.args.smoke_timeout
        targets: list[dict] = []
        while time.monotonic() < deadline:
            targets = get_json(f"{prom}/api/v1/targets")["data"]["activeTargets"]
            if targets and all(t["health"] == "up" for t in targets):
                break
            time.sleep(2)
        for t in targets:
            print(f"  target {t['labels'].get('job', '?'):20s} {t['scrapeUrl']:45s} {t['health']}"
                  + (f" ({t.get('lastError')})" if t["health"] != "up" else ""))
        if not targets:
            problems.append("Prometheus has no active targets")
        problems += [f"target {t['labels'].get('job')} {t['scrapeUrl']} is {t['health']}: {t.get('lastError')}"
                     for t in targets if t["health"] != "up"]
        groups = get_json(f"{prom}/api/v1/rules")["data"]["groups"]
        n_rules = sum(len(g["rules"]) for g in groups)
        n_alerts = sum(1 for g in groups for r in g["rules"] if r["type"] == "alerting")
        print(f"  rules: {len(groups)} groups, {n_rules} rules ({n_alerts} alerts) loaded")
        if not n_alerts:
            problems.append("no alerting rules loaded")
        bad_rules = [r["name"] for g in groups for r in g["rules"] if r.get("health") == "err"]
        if bad_rules:
            problems.append(f"rules failing to evaluate: {bad_rules}")
        for name, url, check in (
            ("Prometheus alerts page", f"{prom}{self.prom_ui}alerts", lambda b: b"Alerts" in b or b"alerts" in b),
            ("Prometheus targets page", f"{prom}{self.prom_ui}targets", None),
            ("Prometheus alerts API", f"{prom}/api/v1/alerts", lambda b: json.loads(b)["status"] == "success"),
            ("Alertmanager alerts API", f"http://127.0.0.1:{p.alertmanager}/api/v2/alerts",
             lambda b: isinstance(json.loads(b), list)),
            ("Alertmanager status API", f"http://127.0.0.1:{p.alertmanager}/api/v2/status",
             lambda b: json.loads(b)["cluster"]["status"] in ("ready", "disabled")),
            ("Alert sinks", f"http://127.0.0.1:{p.sinks}/", None),
            ("Server OpenAPI", f"http://127.0.0.1:{p.server}/openapi.json", lambda b: "paths" in json.loads(b)),
        ):
            problems += check_url(name, url, check)
        am_ui = f"http://127.0.0.1:{p.alertmanager}/"
        if alertmanager_has_ui(am_ui):
            problems += check_url("Alertmanager UI", am_ui, None)
        else:
            print(f"  {'Alertmanager UI':26s} {am_ui}  none in this build (Debian): API only, use amtool")
        if any(c.name == "grafana" for c in self.sup.children):
            problems += check_url("Grafana health", f"http://127.0.0.1:{p.grafana}/api/health", None)
        if not self.args.no_loadgen:
            problems += self._wait_for_traffic(prom, deadline)
        problems += self._wait_for_watchdog(deadline)
        return problems

    def _wait_for_watchdog(self, deadline: float) -> list[str]:
        """The Watchdog alert travels Prometheus -> Alertmanager -> the heartbeat receiver (local sink)."""
        url = f"http://127.0.0.1:{self.ports.sinks}/api/webhooks"
        while time.monotonic() < deadline + 60:
            hooks = get_json(url)
            if any(w["name"] == "watchdog" for w in hooks):
                print("  watchdog: the Watchdog alert reached its heartbeat receiver (Prometheus -> Alertmanager -> sink)")
                return []
            time.sleep(2)
        return ["the Watchdog alert did not reach the heartbeat receiver"]

    def _wait_for_traffic(self, prom: str, deadline: float) -> list[str]:
        """Shopper traffic and its feedback reached the server and were scraped (not just scrapes)."""
        queries = {
            "shopper requests": 'sum(inference_requests_total{endpoint=~"search|rank|recommend"})',
            "products shown": "sum(business_impressions_total)",
            "clicks joined": "sum(business_clicks_total)",
        }
        values = dict.fromkeys(queries, 0.0)
        while time.monotonic() < deadline + 60:
            for name, query in queries.items():
                res = get_json(f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": query}))["data"]["result"]
                values[name] = float(res[0]["value"][1]) if res else 0.0
            if all(v > 0 for v in values.values()):
                break
            time.sleep(2)
        print("  traffic (scraped by Prometheus): " + ", ".join(f"{k} {v:.0f}" for k, v in values.items()))
        return [f"no {name} seen by Prometheus" for name, v in values.items() if v <= 0]

    def wait(self, stop_requested: Callable[[], bool]) -> int:
        while not stop_requested():
            dead = self.sup.exited()
            if dead:
                for child in dead:
                    print(f"\n{child.name} exited with {child.proc.returncode}; last log lines:\n{child.log_tail()}",
                          file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0

    def stop(self) -> None:
        self.sup.stop()


def alertmanager_has_ui(url: str) -> bool:
    """False for Debian's Alertmanager, whose "UI" is a page saying the package has none (use amtool)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return b"does not include a web" not in resp.read()
    except (urllib.error.URLError, OSError):
        return False


def prometheus_ui_prefix(base: str) -> str:
    """`/` for Prometheus' React UI, `/classic/` where only the classic one is built in (Debian)."""
    try:
        with urllib.request.urlopen(f"{base}/alerts", timeout=10) as resp:
            if resp.status == 200:
                return "/"
    except (urllib.error.URLError, OSError):
        pass
    return "/classic/"


class StopRequested(Exception):
    """SIGINT/SIGTERM arrived while the stack was still starting."""


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def check_url(name: str, url: str, check: Optional[Callable[[bytes], bool]]) -> list[str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read()
            ok = resp.status == 200 and (check is None or check(body))
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        print(f"  {name:26s} {url}  FAILED ({exc})")
        return [f"{name} ({url}): {exc}"]
    print(f"  {name:26s} {url}  {'ok' if ok else 'UNEXPECTED ANSWER'}")
    return [] if ok else [f"{name} ({url}) answered unexpectedly"]


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    if args.run_dir is None:
        args.run_dir = REPO_ROOT / "var" / "run" / ("smoke" if args.smoke else "stack")
    ports = Ports.free() if (args.free_ports or (args.smoke and not args.default_ports)) else Ports()
    busy = ports.busy()
    if busy:
        print(f"ports in use: {', '.join(busy)} (another stack running?). Stop it or use --free-ports.",
              file=sys.stderr)
        return 2
    stop = {"requested": False, "starting": True}

    def on_signal(signum: int, frame: object) -> None:
        if stop["requested"]:
            return
        stop["requested"] = True
        print(f"\n{signal.Signals(signum).name}: stopping the stack...", flush=True)
        if stop["starting"]:
            raise StopRequested()

    stack = Stack(args, ports)
    t0 = time.monotonic()
    rc = 1
    # During start-up a signal aborts the current wait; afterwards it only sets the flag the supervision
    # loop polls. Either way shutdown runs in `finally`.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack.prepare()
        stack.start_all()
        stack.print_urls()
        print(f"(up in {time.monotonic() - t0:.0f}s)", flush=True)
        if args.smoke:
            print("\nsmoke check:", flush=True)
            problems = stack.smoke()
            if problems:
                print("\nSMOKE FAILED:\n  " + "\n  ".join(problems), flush=True)
                rc = 1
            else:
                print("\nSMOKE OK: all Prometheus targets up, rules loaded, alert pages answer, traffic flowing, "
                      "Watchdog delivered.", flush=True)
                rc = 0
        else:
            stop["starting"] = False
            rc = stack.wait(lambda: stop["requested"])
            rc = 0 if stop["requested"] else rc
    except (RuntimeError, TimeoutError) as exc:
        print(f"\nstart-up failed: {exc}", file=sys.stderr, flush=True)
        rc = 1
    except (KeyboardInterrupt, StopRequested):
        rc = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        print("stack stopped.", flush=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
