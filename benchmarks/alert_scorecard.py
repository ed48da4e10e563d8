"""Alert-quality scorecard: the real stack, time compressed, a clean period then every drill.

Runs the inference server (small synthetic catalog), the exporter (anomaly jobs included), the
traffic simulator with its daily cycle, Prometheus with the project's rules and Alertmanager with the
project's routes and templates, plus the local Slack/SMTP sinks. Every time constant is divided by
`--factor` (devstack/timescale.py): rule windows, `for:`, Alertmanager group/repeat timings, the
anomaly jobs' step/fit/infer/warm-up seconds and the simulated day. Start-up cannot be compressed, so
the rules run in real time (factor 1) until the server is ready, then at `--startup-factor` for
`--startup-hold-s` (start-up false alerts come from this stretch), then at `--factor`.

Printed (and written as JSON with --out):
- clean period (start-up included): notifications other than the Watchdog, pages (critical, to the
  on-call receiver), and both per simulated day;
- per drill (error burst, latency spike, degraded canary, surge, drift): detected or not, time to the first
  notification of an expected alert and to the first page (simulated minutes from the drill's start;
  for the canary from the moment it gets traffic), time to the automatic rollback, pages and
  notifications per incident, and unexpected alerts seen meanwhile.

GPU faults (overheating, an Xid 79, a lost GPU) go through the fake NVML (devstack/fake_nvml.py):
the exporter then runs in this process with two fake GPUs instead of as a child.

Sample-driven drills: the canary's rollback waits for the A/B test's minimum sample, which arrives at
the simulator's wall-clock rate, so that drill runs at factor 1 (its minutes are real ones). The drift
drill runs compressed, but the drift window fills at the wall-clock request rate: its time to notify
counts that fill (a few wall minutes) times the drill factor, an overstatement.
Usage: python benchmarks/alert_scorecard.py [--factor 60] [--clean-hours 4] [--out FILE]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import yaml  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from devstack import timescale  # noqa: E402
from devstack.components import start_exporter, start_inference_server  # noqa: E402
from devstack.localstack import Ports, render_alertmanager, render_prometheus, write_local_secrets  # noqa: E402
from devstack.processes import REPO_ROOT, ManagedProcess, launch, start_alertmanager, start_prometheus  # noqa: E402

ONCALL_CHANNEL = "#ml-oncall"
# Drill -> (scenario body with durations in simulated seconds, alert names that count as detecting it).
# The error burst lasts 3 minutes: 2 minutes of 50% errors (the quickstart's drill) is 1.67% of an hour,
# at the edge of the 14.4x page (1.44%), and compressed fault timing makes it a coin flip. The latency
# spike lasts 15 minutes: 100% slow requests cross 14.4x of the 1% latency budget over 1h after 8.6
# minutes, so a shorter spike is (correctly) not a page.
DRILLS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    # First: it runs uncompressed (SAMPLE_DRIVEN_DRILLS), and real-time windows after a compressed drill
    # would still hold that drill's errors or latency.
    "degraded-canary": ({"duration_s": 600}, ("CanaryLosesABTest", "CanaryClickThroughRegression",
                                               "CanaryErrorRatioRegression", "CanaryLatencyRegression")),
    "error-burst": ({"duration_s": 180, "error_rate": 0.5}, ("InferenceErrorBudgetBurn",)),
    "latency-spike": ({"duration_s": 900, "latency_ms": 800}, ("InferenceLatencyBudgetBurn",)),
    "surge": ({"duration_s": 600, "surge_factor": 10.0}, ("InferenceQueueSaturated", "InferenceRequestsRejected",
                                                        "InferenceLatencyBudgetBurn", "InferenceErrorBudgetBurn")),
    # Shoppers switch to the longest quarter of the queries: PSI of query tokens leaves the reference.
    "drift": ({"name": "query-drift", "duration_s": 5400, "drift_share": 0.25}, ("ModelDriftHigh",)),
    # Fake-NVML faults on GPU 1 (see GPU_FAULTS).
    "gpu-overheat": ({"duration_s": 900}, ("GPUTemperatureHigh",)),
    "gpu-xid": ({"duration_s": 60}, ("GPUXidErrors",)),
    "gpu-lost": ({"duration_s": 300}, ("GPULost",)),
}
# Drills decided by how many requests arrived, not by how long: the simulator's rate is wall-clock, so
# these run uncompressed (factor 1) and their minutes are real ones. The canary's A/B test needs
# `ab_test.min_requests` canary requests, which compression would not shorten.
SAMPLE_DRIVEN_DRILLS = {"degraded-canary": 1.0}
# Seconds-valued keys of an anomaly job that are compressed (those present in the config under test).
ANOMALY_JOB_SECONDS = ("step", "fit_window", "fit_every", "infer_every", "alert_after_seconds")


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as resp:
        return json.loads(resp.read())


def post_json(url: str, body: Any, token: str) -> int:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class Notification:
    at: float  # wall time received
    channel: str  # Slack channel or "email"
    firing: bool
    alertnames: list[str]
    critical: bool


@dataclass
class DrillResult:
    drill: str
    detected: bool = False
    alert: str = ""
    to_notify_min: Optional[float] = None
    to_page_min: Optional[float] = None
    to_rollback_min: Optional[float] = None
    pages: int = 0
    notifications: int = 0
    other_alerts: list[str] = field(default_factory=list)
    note: str = ""


class InProcessExporter:
    """The exporter app with a fake NVML of two GPUs, served from a thread: GPU drills turn its knobs."""

    def __init__(self, cfg: dict, port: int, workdir: Path) -> None:
        from aiohttp import web

        from devstack.fake_nvml import FakeNVML
        from exporter.app import create_app
        from exporter.config import load_config

        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "exporter.yaml").write_text(yaml.safe_dump(cfg))
        self.nvml = FakeNVML(2)
        self.app = create_app(load_config(workdir / "exporter.yaml"), config_dir=workdir, nvml_module=self.nvml)
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(self.app)
        self.loop.run_until_complete(self.runner.setup())
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", port).start())
        self.thread = threading.Thread(target=self.loop.run_forever, name="exporter", daemon=True)
        self.thread.start()

    def fault(self, name: str, on: bool) -> None:
        gpu = self.nvml.gpus[1]
        if name == "gpu-overheat":
            gpu.temperature_gpu = 92 if on else 55
        elif name == "gpu-lost":
            gpu.lost = on
        elif name == "gpu-xid" and on:
            self.nvml.push_xid(1, 79)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def compress_exporter_config(cfg: dict, factor: float, prometheus_url: str) -> dict:
    """The exporter config under test with the anomaly jobs' seconds and PromQL windows compressed."""
    anomaly = cfg.setdefault("anomaly", {})
    anomaly["prometheus_url"] = prometheus_url
    if "series_ttl_seconds" in anomaly:
        anomaly["series_ttl_seconds"] = max(30.0, anomaly["series_ttl_seconds"] / factor)
    for job in anomaly.get("jobs") or []:
        job["query"] = timescale.scale_windows(job["query"], factor)
        for key in ANOMALY_JOB_SECONDS:
            if key in job:
                job[key] = max(1.0, float(job[key]) / factor)
    return cfg


class Scorecard:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.f = 1.0  # the factor of the phase running now (rules reloaded per phase); start-up runs in real time
        self.wd = Path(args.workdir)
        self.ports = Ports.free()
        self.started: list[ManagedProcess] = []
        self.gpus: Optional[InProcessExporter] = None
        self.t_start = self.phase_at = time.time()
        self.sim_s = 0.0  # simulated seconds of the phases before the current one

    # -- helpers -----------------------------------------------------------------------------
    def sim_min(self, seconds: float) -> float:
        return round(seconds * self.f / 60.0, 1)

    def log(self, msg: str) -> None:
        print(f"[{time.time() - self.t_start:6.0f}s wall] {msg}", flush=True)

    def notifications(self) -> list[Notification]:
        sinks = f"http://127.0.0.1:{self.ports.sinks}"
        out = []
        for s in get_json(f"{sinks}/api/slack"):
            payload = s["payload"]
            for att in payload.get("attachments") or []:
                title = att.get("title", "")
                names = [title.split("] ", 1)[1].split(" ", 1)[0]] if "] " in title else []
                out.append(Notification(s["received_at"], payload.get("channel", "?"), title.startswith("[FIRING"),
                                        names, payload.get("channel") == ONCALL_CHANNEL))
        return out

    def active_alerts(self) -> list[str]:
        """Alerts still in play: active in Alertmanager, or a page pending in Prometheus (a slower window
        that has not fired yet belongs to the incident, not to the next drill; slow tickets are ignored)."""
        alerts = get_json(f"http://127.0.0.1:{self.ports.alertmanager}/api/v2/alerts?active=true&silenced=false")
        names = {a["labels"]["alertname"] for a in alerts}
        names |= {a["labels"]["alertname"] for a in get_json(f"{self.prometheus.url}/api/v1/alerts")["data"]["alerts"]
                  if a["labels"].get("severity") == "critical"}
        return sorted(names - {"Watchdog"})

    def webhook_rollbacks(self) -> float:
        """Rollbacks the server made on Alertmanager's webhook (not the drill's own restore of the split)."""
        with urllib.request.urlopen(f"{self.server.url}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        return sum(sample.value for family in text_string_to_metric_families(text)
                   if family.name == "inference_alert_webhook_actions" for sample in family.samples
                   if sample.name.endswith("_total") and sample.labels.get("action") == "rollback"
                   and sample.labels.get("outcome") == "ok")

    def models(self) -> dict[str, dict]:
        return {str(m["version"]): m for m in get_json(f"{self.server.url}/v1/models")["models"]}

    # -- start-up ----------------------------------------------------------------------------
    def start(self) -> None:
        a, p, wd = self.args, self.ports, self.wd
        secrets = write_local_secrets(wd / "secrets", p)
        self.token = secrets["admin_token"].read_text().strip()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.started.append(launch(
            "alert_sinks", [sys.executable, "-m", "devstack.alert_sinks", "--http", f"127.0.0.1:{p.sinks}",
                            "--smtp", f"127.0.0.1:{p.smtp}"], workdir=wd / "sinks",
            url=f"http://127.0.0.1:{p.sinks}", ready_path="/healthz", timeout=30, env=env, cwd=REPO_ROOT))
        am_cfg = render_alertmanager(wd / "am-config", p, secrets,
                                     heartbeat_url=f"http://127.0.0.1:{p.sinks}/webhook/watchdog",
                                     transform=lambda c: timescale.compress_routes(c, self.args.drill_factor))
        self.started.append(start_alertmanager(wd / "alertmanager", am_cfg.read_text(), port=p.alertmanager))
        prom_cfg = self.render_rules(self.f)
        self.prometheus = start_prometheus(wd / "prometheus", prom_cfg.read_text(), port=p.prometheus,
                                           extra_args=["--rules.alert.resend-delay=1s"])
        self.started.append(self.prometheus)
        exp_cfg = yaml.safe_load((REPO_ROOT / "config" / "exporter.yaml").read_text())
        exp_cfg = compress_exporter_config(exp_cfg, a.factor, self.prometheus.url)
        if any(d.startswith("gpu-") for d in a.drills.split(",")):
            exp_cfg.setdefault("server", {}).update(host="127.0.0.1", port=p.exporter)
            self.gpus = InProcessExporter(exp_cfg, p.exporter, wd / "exporter")
        else:
            self.started.append(start_exporter(wd / "exporter", exp_cfg, port=p.exporter, timeout=60))
        self.log("Prometheus, Alertmanager, exporter and sinks up; starting the inference server "
                 "(start-up is part of the clean period)")
        self.server = start_inference_server(
            wd / "server", {"admin": {"token_file": str(secrets["admin_token"]),
                                      "alerts_token_file": str(secrets["alerts_token"])},
                            "feedback": {"token_file": str(secrets["feedback_token"])},
                            "model_repository": {"state_dir": str(wd / "server" / "model-repository")},
                            "traffic": {"weights": {"1": 100}}},
            port=p.server, timeout=600)
        self.started.append(self.server)
        self.log(f"inference server ready; starting the simulator, rules now at factor {a.startup_factor:g}")
        self.set_factor(a.startup_factor)
        loadgen_cfg = wd / "loadgen.yaml"
        loadgen_cfg.write_text(yaml.safe_dump({
            "target": {"url": self.server.url, "admin_token_file": str(secrets["admin_token"]),
                       "feedback_token_file": str(secrets["feedback_token"]), "timeout_s": 10},
            "rate": {"requests_per_second": a.rate, "daily_amplitude": 0.5, "day_length_s": 86400 / a.factor,
                     "start_hour": a.start_hour, "max_concurrency": 128},
            "relevance": {"server_config": str(self.server.extra["config_path"])},
            "report_interval_s": 30, "listen": f"127.0.0.1:{p.loadgen}", "seed": 17,
        }))
        self.started.append(launch("loadgen", [sys.executable, "-m", "loadgen", "--config", str(loadgen_cfg)],
                                   workdir=wd / "loadgen", url=f"http://127.0.0.1:{p.loadgen}",
                                   ready_path="/status", timeout=120, env=env, cwd=REPO_ROOT))

    def render_rules(self, factor: float) -> Path:
        return render_prometheus(
            self.wd / "prom-config", self.ports, scrape_interval="1s",
            global_overrides={"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"},
            rule_transform=lambda r: timescale.compress_rules(r, factor))

    def set_factor(self, factor: float) -> None:
        """Re-render the rules with another compression and reload Prometheus (alert state restarts)."""
        self.sim_s += (time.time() - self.phase_at) * self.f
        self.f, self.phase_at = factor, time.time()
        self.render_rules(factor)
        self.prometheus.reload()

    def stop(self) -> None:
        for proc in reversed(self.started):
            proc.stop()
        if self.gpus is not None:
            self.gpus.stop()

    # -- phases ------------------------------------------------------------------------------
    def clean_period(self) -> dict[str, Any]:
        self.log(f"start-up phase (rules at factor {self.f:g}): holding {self.args.startup_hold_s:.0f}s")
        time.sleep(self.args.startup_hold_s)
        self.set_factor(self.args.factor)
        end = time.time() + self.args.clean_hours * 3600 / self.f
        while time.time() < end:
            self.log(f"clean period: {self.sim_min(end - time.time()):.0f} simulated min left; "
                     f"alerts active: {self.active_alerts() or 'none'}")
            time.sleep(min(30.0, max(0.0, end - time.time())))
        sim_days = (self.sim_s + (time.time() - self.phase_at) * self.f) / 86400
        firing = [n for n in self.notifications() if n.firing and n.at <= end]
        pages = [n for n in firing if n.critical]
        return {"simulated_hours": round(sim_days * 24, 1),
                "notifications": len(firing), "pages": len(pages),
                "pages_per_day": round(len(pages) / sim_days, 2),
                "notifications_per_day": round(len(firing) / sim_days, 2),
                "alerts": sorted({name for n in firing for name in n.alertnames})}

    def wait_quiet(self, limit_s: float) -> None:
        deadline = time.time() + limit_s
        while time.time() < deadline and self.active_alerts():
            time.sleep(2)

    def drill(self, name: str) -> DrillResult:
        body, expected = DRILLS[name]
        factor = SAMPLE_DRIVEN_DRILLS.get(name, self.args.drill_factor)
        if factor != self.f:
            self.set_factor(factor)
        body = {"name": name, **body, "duration_s": max(1.0, body["duration_s"] / self.f)}
        res = DrillResult(name)
        self.wait_quiet(self.args.quiet_s)
        t0 = time.time()
        if name.startswith("gpu-"):
            self.gpus.fault(name, True)
            undo = threading.Timer(body["duration_s"], self.gpus.fault, (name, False))
            undo.daemon = True
            undo.start()
            status = 202
        else:
            status = post_json(f"http://127.0.0.1:{self.ports.loadgen}/v1/scenarios", body, self.token)
        if status != 202:
            res.note = f"drill refused ({status})"
            return res
        self.log(f"drill {name} started ({body})")
        drill_end = t0 + body["duration_s"]
        deadline = drill_end + self.args.detect_s
        traffic_at: Optional[float] = None
        rollbacks_before = self.webhook_rollbacks() if name == "degraded-canary" else 0.0
        while time.time() < deadline:
            now = time.time()
            if name == "degraded-canary":
                try:
                    weight = self.models().get("2", {}).get("traffic_weight") or 0
                except (urllib.error.URLError, OSError, KeyError, ValueError):
                    weight = None
                if traffic_at is None and weight:
                    traffic_at = now
                    drill_end, deadline = now + body["duration_s"], now + body["duration_s"] + self.args.detect_s
                    self.log("canary version 2 takes traffic")
                elif (traffic_at is not None and weight == 0 and res.to_rollback_min is None
                      and self.webhook_rollbacks() > rollbacks_before):
                    res.to_rollback_min = self.sim_min(now - traffic_at)
                    self.log(f"canary rolled back after {res.to_rollback_min} simulated min")
            mine = [n for n in self.notifications() if n.at >= t0 and n.firing and set(n.alertnames) & set(expected)]
            if mine and not res.detected:
                res.detected, res.alert = True, mine[0].alertnames[0]
                self.log(f"detected by {res.alert}")
            if res.to_rollback_min is not None or (res.detected and now > drill_end and name != "degraded-canary"):
                break
            time.sleep(0.5)
        origin = traffic_at if name == "degraded-canary" and traffic_at else t0
        # Let the incident play out (later windows, resolves) before counting pages.
        self.wait_quiet(self.args.quiet_s)
        seen = [n for n in self.notifications() if n.at >= t0 and n.firing]
        mine = [n for n in seen if set(n.alertnames) & set(expected)]
        if mine:  # also a notification that came after the detection wait, while the incident played out
            res.detected, res.alert = True, res.alert or mine[0].alertnames[0]
            res.to_notify_min = self.sim_min(mine[0].at - origin)
        pages = [n for n in seen if n.critical]
        if pages:
            res.to_page_min = self.sim_min(pages[0].at - origin)
        res.pages, res.notifications = len(pages), len(mine)
        res.other_alerts = sorted({a for n in seen for a in n.alertnames} - set(expected))
        if name == "degraded-canary" and traffic_at is None:
            res.note = "the canary never got traffic"
        return res


def table(clean: dict[str, Any], drills: list[DrillResult], args: argparse.Namespace) -> str:
    def fmt(v: Any) -> str:
        return "-" if v is None else str(v)

    lines = [f"clean period ({clean['simulated_hours']} simulated h incl. start-up in real time, "
             f"{args.startup_hold_s:g} s at factor {args.startup_factor:g}, then factor {args.factor:g}): "
             f"{clean['pages']} pages ({clean['pages_per_day']}/day), {clean['notifications']} notifications "
             f"({clean['notifications_per_day']}/day): {', '.join(clean['alerts']) or 'none'}",
             "",
             f"drills at factor {args.drill_factor:g} (sample-driven ones at "
             f"{', '.join(f'{d} {f:g}' for d, f in SAMPLE_DRIVEN_DRILLS.items())}); times in simulated minutes",
             "",
             "| drill | detected | by | to notify (sim min) | to page (sim min) | to rollback (sim min) "
             "| pages | notifications | other alerts |",
             "|---|---|---|---|---|---|---|---|---|"]
    for d in drills:
        lines.append(f"| {d.drill} | {'yes' if d.detected else 'NO'} | {d.alert or '-'} | {fmt(d.to_notify_min)} "
                     f"| {fmt(d.to_page_min)} | {fmt(d.to_rollback_min)} | {d.pages} | {d.notifications} "
                     f"| {', '.join(d.other_alerts) or '-'}{(' (' + d.note + ')') if d.note else ''} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--factor", type=float, default=60.0,
                   help="time compression of the clean period, the simulated day and the anomaly jobs "
                        "(60: 1 wall s = 1 simulated min)")
    p.add_argument("--startup-factor", type=float, default=5.0,
                   help="compression for --startup-hold-s once the server is ready (real time before)")
    p.add_argument("--startup-hold-s", type=float, default=90.0,
                   help="wall seconds at the start-up factor after the server is ready")
    p.add_argument("--drill-factor", type=float, default=10.0,
                   help="compression during the drills (and of Alertmanager's timings throughout)")
    p.add_argument("--clean-hours", type=float, default=4.0, help="simulated hours of clean traffic after start")
    p.add_argument("--start-hour", type=int, default=15, help="simulated hour of day at start (peak is 20)")
    p.add_argument("--rate", type=float, default=5.0, help="simulator's mean requests per second (its default)")
    p.add_argument("--drills", default=",".join(DRILLS), help="comma-separated drills to run, in order")
    p.add_argument("--quiet-s", type=float, default=120.0, help="wall seconds to wait for alerts to resolve")
    p.add_argument("--detect-s", type=float, default=60.0, help="wall seconds after a drill to wait for detection")
    p.add_argument("--workdir", default="var/scorecard", help="logs and data of the run (recreated)")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the stack (finally) on SIGTERM too
    shutil.rmtree(args.workdir, ignore_errors=True)
    card = Scorecard(args)
    try:
        card.start()
        clean = card.clean_period()
        card.log(f"clean period done: {clean}")
        card.set_factor(args.drill_factor)
        drills = []
        for name in [d for d in args.drills.split(",") if d]:
            drills.append(card.drill(name))
            card.log(f"drill {name}: {asdict(drills[-1])}")
        received = [{**asdict(n), "at_wall_s": round(n.at - card.t_start, 1)} for n in card.notifications()]
    finally:
        card.stop()
    print("\n" + table(clean, drills, args), flush=True)
    if args.out:
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "clean": clean,
                                        "drills": [asdict(d) for d in drills], "notifications": received},
                                       indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
