"""The simulator engine: open-loop arrivals, shoppers, feedback, scenarios and the live summary."""
from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Optional

from loadgen.client import AdminError, Reply, ServerClient
from loadgen.config import ConfigError, LoadgenConfig, ScenarioConfig
from loadgen.metrics import LoadgenMetrics
from loadgen.relevance import Intent, RelevanceOracle
from loadgen.scenarios import Scenario, TrafficControl, make_scenario
from loadgen.schedule import DailyPattern
from loadgen.shopper import Interaction, simulate_session
from loadgen.stats import Stats, SummaryLine

log = logging.getLogger(__name__)


@dataclass
class ScenarioRun:
    cfg: ScenarioConfig
    outcome: str = "pending"  # pending | running | done | failed
    error: Optional[str] = None
    started_at: Optional[float] = None
    task: Optional[asyncio.Task] = field(default=None, repr=False)


class Simulator:
    """Runs shoppers against the server until `duration_s` elapses or `stop()` is called."""

    def __init__(self, cfg: LoadgenConfig, oracle: RelevanceOracle, client: ServerClient,
                 metrics: Optional[LoadgenMetrics] = None, emit: Callable[[str], None] = print) -> None:
        self.cfg = cfg
        self.oracle = oracle
        self.client = client
        self.metrics = metrics
        self.emit = emit
        self.rng = random.Random(cfg.seed)
        start_hour = cfg.rate.start_hour
        if start_hour is None:
            now = datetime.now(timezone.utc)
            start_hour = now.hour + now.minute / 60
        self.pattern = DailyPattern(cfg.rate, start_hour)
        self.stats = Stats()
        self.control = TrafficControl()
        self.runs: list[ScenarioRun] = []
        self._stop = asyncio.Event()
        self._tasks: set[asyncio.Task] = set()
        self._t0 = time.monotonic()
        mix = cfg.mix
        self._kinds = ("search", "rank", "recommend")
        self._kind_weights = (mix.search, mix.rank, mix.recommend)

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def elapsed(self) -> float:
        return time.monotonic() - self._t0

    async def run(self) -> dict:
        """Drive traffic; returns the final summary (also with the scenario outcomes)."""
        self._t0 = time.monotonic()
        self.stats.started = self._t0
        for sc in self.cfg.scenarios:
            self.schedule(sc)
        reporter = asyncio.create_task(self._report_loop())
        try:
            await self._arrivals()
        finally:
            self._stop.set()
            reporter.cancel()
            await self._drain()
            await self._stop_scenarios()
        summary = self.stats.snapshot()
        summary["scenarios"] = [
            {"name": r.cfg.name, "outcome": r.outcome, **({"error": r.error} if r.error else {})}
            for r in self.runs
        ]
        return summary

    async def _arrivals(self) -> None:
        duration = self.cfg.duration_s
        next_t = 0.0
        while not self._stop.is_set():
            elapsed = self.elapsed()
            if duration is not None and elapsed >= duration:
                break
            next_t = max(next_t, elapsed - 1.0)  # never "catch up" more than 1 s of missed arrivals
            next_t += self.pattern.next_gap(next_t, self.rng, self.control.rate_multiplier)
            delay = next_t - self.elapsed()
            if duration is not None:
                delay = min(delay, duration - self.elapsed())
            if delay > 0:
                try:
                    await asyncio.wait_for(self._stop.wait(), delay)
                    break
                except TimeoutError:
                    pass
            if duration is not None and self.elapsed() >= duration:
                break
            if len(self._tasks) >= self.cfg.rate.max_concurrency:
                self.stats.dropped += 1
                if self.metrics:
                    self.metrics.dropped.inc()
                continue
            task = asyncio.create_task(self._shop())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _drain(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=self.cfg.target.timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)

    # -- one shopper ------------------------------------------------------------------------
    async def _shop(self) -> None:
        if self.metrics:
            self.metrics.in_flight.inc()
        try:
            await self._shop_once()
        except Exception:  # noqa: BLE001 - one shopper's bug must not stop the simulation
            log.exception("shopper failed")
        finally:
            if self.metrics:
                self.metrics.in_flight.dec()

    def _request_for(self, kind: str, intent: Intent, user_id: str) -> tuple[str, dict]:
        k = self.cfg.shopper.k
        if kind == "search":
            return "/v1/search", {"query": intent.text, "k": k, "user_id": user_id}
        if kind == "rank":
            n = self.cfg.shopper.rank_candidates
            judged = list(intent.judgments)
            self.rng.shuffle(judged)
            items = judged[: n // 2]
            items += self.oracle.random_products(self.rng, n - len(items), set(items))
            self.rng.shuffle(items)
            return "/v1/rank", {"query": intent.text, "items": [{"id": i} for i in items],
                                "k": min(k, len(items)), "user_id": user_id}
        relevant = list(intent.relevant)
        n_hist = self.rng.randint(1, min(self.cfg.shopper.max_history, len(relevant)))
        history = self.rng.sample(relevant[: max(n_hist, 5)], n_hist)
        return "/v1/recommend", {"history": history, "k": k, "user_id": user_id}

    async def _shop_once(self) -> None:
        user_id = f"user-{self.rng.randrange(self.cfg.shopper.users):06d}"
        intent = self.oracle.pick_intent(self.rng, self.control.longest_query_share)
        kind = self.rng.choices(self._kinds, self._kind_weights)[0]
        path, payload = self._request_for(kind, intent, user_id)
        reply = await self.client.call("POST", path, payload)
        self._record(kind, reply)
        if not reply.ok or not isinstance(reply.body, dict):
            return
        results = reply.body.get("results") or []
        version = str(reply.body.get("version", ""))
        request_id = reply.body.get("request_id")
        ids = [str(r.get("id")) for r in results if isinstance(r, dict)]
        self.stats.record_served(version, len(ids))
        if self.metrics:
            self.metrics.impressions.labels(version).inc(len(ids))
        events = simulate_session(ids, lambda pid: self.oracle.relevance(intent, pid), self.oracle.price,
                                  self.cfg.shopper, self.rng)
        if events and request_id:
            await self._send_feedback(request_id, version, events)

    def _record(self, kind: str, reply: Reply) -> None:
        self.stats.record_request(kind, reply.status, reply.latency_s)
        if self.metrics:
            self.metrics.requests.labels(kind, reply.status).inc()
            self.metrics.latency.labels(kind).observe(reply.latency_s)

    async def _send_feedback(self, request_id: str, version: str, events: list[Interaction]) -> None:
        body = {"events": []}
        for ev in events:
            item: dict[str, Any] = {"request_id": request_id, "event_id": uuid.uuid4().hex, "type": ev.type,
                                    "product_id": ev.product_id, "position": ev.position}
            body["events"].append(item)   # no price: the server prices purchases from its catalog
            self.stats.record_event(version, ev.type, ev.price if ev.type == "purchase" else None)
            if self.metrics:
                self.metrics.events.labels(ev.type, version).inc()
        reply = await self.client.call("POST", "/v1/feedback", body, feedback=True)
        self._record("feedback", reply)
        if reply.ok and isinstance(reply.body, dict):
            self.stats.feedback["accepted"] += int(reply.body.get("accepted", 0))
            self.stats.feedback["duplicates"] += int(reply.body.get("duplicates", 0))
            self.stats.feedback["rejected"] += len(reply.body.get("rejected") or [])
        else:
            self.stats.feedback["failed"] += len(events)

    # -- scenarios --------------------------------------------------------------------------
    def schedule(self, sc: ScenarioConfig, start_now: bool = False) -> ScenarioRun:
        """Run scenario `sc` at its `start_s` (or now) for its `duration_s`, in the background."""
        run = ScenarioRun(sc)
        run.task = asyncio.create_task(self._run_scenario(run, 0.0 if start_now else sc.start_s))
        self.runs.append(run)
        return run

    def active_scenarios(self) -> list[str]:
        return [r.cfg.name for r in self.runs if r.outcome == "running"]

    async def _run_scenario(self, run: ScenarioRun, start_s: float) -> None:
        delay = self._t0 + start_s - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(self._stop.wait(), delay)
                run.outcome = "skipped"
                return
            except TimeoutError:
                pass
        scenario = make_scenario(run.cfg, self.client, self.control)
        try:
            await scenario.start()
        except (AdminError, ConfigError) as exc:
            run.outcome, run.error = "failed", str(exc)
            self.emit(f"scenario {run.cfg.name} failed to start: {exc}")
            if self.metrics:
                self.metrics.scenario_runs.labels(run.cfg.name, "failed").inc()
            return
        run.outcome, run.started_at = "running", time.monotonic()
        self.control.active[id(run)] = scenario
        if self.metrics:
            self.metrics.scenario_active.labels(run.cfg.name).inc()
        self.emit(f"scenario {run.cfg.name} started for {run.cfg.duration_s:.0f}s")
        try:
            await asyncio.wait_for(self._stop.wait(), run.cfg.duration_s)
        except TimeoutError:
            pass
        finally:
            await self._end_scenario(run, scenario)

    async def _end_scenario(self, run: ScenarioRun, scenario: Scenario) -> None:
        if self.control.active.pop(id(run), None) is None:
            return
        try:
            await scenario.stop()
            run.outcome = "done"
            self.emit(f"scenario {run.cfg.name} ended")
        except (AdminError, ConfigError) as exc:
            run.outcome, run.error = "failed", f"could not undo: {exc}"
            self.emit(f"scenario {run.cfg.name} could not be undone: {exc}")
        if self.metrics:
            self.metrics.scenario_active.labels(run.cfg.name).dec()
            self.metrics.scenario_runs.labels(run.cfg.name, run.outcome).inc()

    async def _stop_scenarios(self) -> None:
        tasks = [r.task for r in self.runs if r.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=self.cfg.target.timeout_s + 5)

    # -- live summary -----------------------------------------------------------------------
    async def _report_loop(self) -> None:
        line = SummaryLine()
        while True:
            await asyncio.sleep(self.cfg.report_interval_s)
            elapsed = self.elapsed()
            rate = self.pattern.rate(elapsed, self.control.rate_multiplier)
            hour = self.pattern.simulated_hour(elapsed)
            if self.metrics:
                self.metrics.target_rate.set(rate)
                self.metrics.simulated_hour.set(hour)
            self.emit(line.format(self.stats, rate, hour, self.active_scenarios()))


def format_summary(summary: dict) -> str:
    """The final, human-readable report printed when the simulator stops."""
    lines = [
        f"loadgen finished after {summary['elapsed_s']}s: {summary['requests']} requests "
        f"({summary['rate_per_s']}/s), dropped arrivals {summary['dropped_arrivals']}",
        "  status: " + (", ".join(f"{k}={v}" for k, v in summary["status"].items()) or "-"),
        "  feedback posts: " + (", ".join(f"{k}={v}" for k, v in summary["feedback_status"].items()) or "-"),
        f"  latency (last window): p50={summary['latency_p50_s']}s p95={summary['latency_p95_s']}s",
    ]
    for version, t in summary["versions"].items():
        lines.append(f"  version {version or '?'}: {t['requests']} served, CTR {t['ctr']:.2%} "
                     f"({t['clicks']}/{t['impressions']}), carts {t['add_to_carts']}, orders {t['orders']}, "
                     f"revenue {t['revenue']}")
    lines.append("  feedback events: " + (", ".join(f"{k}={v}" for k, v in summary["feedback"].items()) or "-"))
    for sc in summary.get("scenarios", []):
        lines.append(f"  scenario {sc['name']}: {sc['outcome']}" + (f" ({sc['error']})" if "error" in sc else ""))
    return "\n".join(lines)
