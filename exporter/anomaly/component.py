"""The anomaly runtime as an exporter component: one asyncio task per job.

Each task, every ``infer_every`` seconds, queries Prometheus (only the new points unless a refit is
due), runs the pass in a worker thread, and publishes the results. When Prometheus is down, slow or
answers garbage, the job's results are withdrawn (not exported), ``anomaly_source_up`` drops to 0
and the failure is counted by reason; the next tick simply tries again, so recovery is automatic and
the exporter's other collectors are never blocked.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import aiohttp
from prometheus_client.registry import Collector

from exporter.component import ComponentContext
from exporter.config import ConfigError

from .config import AnomalyConfig, JobConfig, parse_anomaly_config
from .job import JobState
from .metrics import ResultCollector, RuntimeMetrics
from .reader import PrometheusReader, SourceError

log = logging.getLogger(__name__)


class AnomalyComponent:
    """Hosts the anomaly jobs inside the exporter app."""

    name = "anomaly"

    def __init__(self, config: AnomalyConfig, context: ComponentContext | None = None, *,
                 clock: Callable[[], float] = time.time, autorun: bool = True) -> None:
        """``autorun=False`` starts no job loops: the caller drives passes with run_once()."""
        self.config = config
        self._autorun = autorun
        self._context = context
        self._clock = clock
        self.metrics = RuntimeMetrics()
        self.jobs = [JobState(job) for job in config.jobs]
        for job in self.jobs:
            self.metrics.init_job(job.config.name)
        self._results = ResultCollector(lambda: self.jobs)
        self._executor: ThreadPoolExecutor | None = None
        self._session: aiohttp.ClientSession | None = None
        self._reader: PrometheusReader | None = None
        self._tasks: list[asyncio.Task] = []
        self._up: dict[str, bool] = {}  # last known source state per job, to log transitions only
        self._headers = self._auth_headers(context.config_dir if context else Path.cwd())

    def _auth_headers(self, config_dir: Path) -> dict[str, str]:
        if not self.config.bearer_token_file:
            return {}
        path = Path(self.config.bearer_token_file)
        if not path.is_absolute():
            path = config_dir / path
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError("anomaly.bearer_token_file", f"cannot read {path}: {exc.strerror}") from None
        return {"Authorization": f"Bearer {token}"}

    # -- ExporterComponent ----------------------------------------------------------------------
    def collectors(self) -> list[Collector]:
        return [self.metrics.registry, self._results]

    async def start(self) -> None:
        cfg = self.config
        self._executor = ThreadPoolExecutor(max_workers=cfg.fit_workers,
                                            thread_name_prefix="anomaly-fit")
        self._session = aiohttp.ClientSession()
        self._reader = PrometheusReader(
            self._session, cfg.prometheus_url, timeout=cfg.timeout_seconds, retries=cfg.retries,
            backoff_initial=cfg.backoff_initial_seconds, backoff_max=cfg.backoff_max_seconds,
            headers=self._headers)
        if self._autorun:
            self._tasks = [asyncio.create_task(self._run_job(job), name=f"anomaly:{job.config.name}")
                           for job in self.jobs]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._executor is not None:
            # Do not wait for a long fit: the thread finishes on its own and its result is dropped.
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    async def refresh(self) -> None:
        """Results are computed in the background; a scrape reads the latest published pass."""

    def health(self) -> dict[str, Any]:
        return {
            job.config.name: {
                "series": len(job.series),
                "exported": len(job.published),
                "last_pass_at": job.last_pass_at,
            }
            for job in self.jobs
        }

    # -- the job loop ---------------------------------------------------------------------------
    async def _run_job(self, job: JobState) -> None:
        interval = job.config.infer_every
        while True:
            started = time.monotonic()
            await self.run_once(job)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def run_once(self, job: JobState) -> bool:
        """One pass of one job; returns whether it succeeded. Never raises (except cancellation)."""
        cfg: JobConfig = job.config
        name = cfg.name
        m = self.metrics
        assert self._reader is not None and self._executor is not None, "start() first"
        t0 = time.perf_counter()
        now = self._clock()
        end = math.floor(now / cfg.step) * cfg.step
        start = job.query_start(end, now)
        try:
            answer = await self._reader.query_range(cfg.query, start, end, cfg.step)
        except SourceError as exc:
            job.withdraw()
            m.source_up.labels(anomaly_job=name).set(0)
            m.failures.labels(anomaly_job=name, reason=exc.reason).inc()
            level = logging.WARNING if self._up.get(name, True) else logging.DEBUG
            log.log(level, "anomaly job %s: query failed (scores withdrawn): %s", name, exc)
            self._up[name] = False
            return False
        if not self._up.get(name, True):
            log.warning("anomaly job %s: source recovered", name)
        self._up[name] = True
        m.source_up.labels(anomaly_job=name).set(1)
        loop = asyncio.get_running_loop()
        try:
            outcome = await loop.run_in_executor(
                self._executor, lambda: self._pass(job, answer, now))
        except Exception:  # a detector bug must not kill the job loop
            log.exception("anomaly job %s: pass failed", name)
            job.withdraw()
            m.failures.labels(anomaly_job=name, reason="fit_error").inc()
            return False
        if outcome.fitted or outcome.fit_errors:
            m.fit_duration.labels(anomaly_job=name).observe(outcome.fit_seconds)
        if outcome.fit_errors:
            m.failures.labels(anomaly_job=name, reason="fit_error").inc(outcome.fit_errors)
        if outcome.capped:
            m.failures.labels(anomaly_job=name, reason="series_cap").inc(outcome.capped)
        m.series_tracked.labels(anomaly_job=name).set(len(job.series))
        m.score_duration.labels(anomaly_job=name).observe(time.perf_counter() - t0)
        m.last_success.labels(anomaly_job=name).set(self._clock())
        return True

    def _pass(self, job: JobState, answer, now: float):
        outcome = job.run_pass(answer, now)
        job.drop_vanished(now, self.config.series_ttl_seconds)
        return outcome


def build_component(section: Any, context: ComponentContext) -> AnomalyComponent:
    """Factory called by the exporter app with the raw ``anomaly:`` section."""
    return AnomalyComponent(parse_anomaly_config(section), context)
