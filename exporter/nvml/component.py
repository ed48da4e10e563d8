"""The NVML component: schedules NVML passes (single-flight on scrape, or background polling).

Scrapes never wait longer than `scrape_timeout_seconds`: when a pass overruns (a GPU falling off the bus
can make NVML block for a long time) the last good snapshot is served with `nvidia_gpu_snapshot_stale 1`
and only one pass is ever outstanding, so hung calls do not pile up threads.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from prometheus_client.registry import Collector

from exporter.config import NvmlConfig
from exporter.nvml.collector import NvmlCollector
from exporter.nvml.sampler import NvmlSampler
from exporter.nvml.snapshot import Snapshot
from exporter.selfmetrics import SelfMetrics
from exporter.threads import run_in_daemon_thread

log = logging.getLogger(__name__)

COLLECTOR = "nvml"


class NvmlComponent:
    """ExporterComponent for NVIDIA GPUs. `nvml` is the binding module (`pynvml`, or a fake in tests)."""

    name = COLLECTOR

    def __init__(self, config: NvmlConfig, self_metrics: SelfMetrics, nvml: Any = None) -> None:
        if nvml is None:
            import pynvml as nvml  # importing does not load libnvidia-ml; nvmlInit does
        self.config = config
        self._self_metrics = self_metrics
        self.sampler = NvmlSampler(nvml, config, self._record_error)
        self._collector = NvmlCollector(self.current)
        self._latest: Snapshot | None = None
        self._inflight: asyncio.Future[Snapshot | None] | None = None
        self._inflight_started = 0.0
        self._overrun_recorded = False
        self._poller: asyncio.Task[None] | None = None
        self.passes = 0

    def _record_error(self, function: str, error: str) -> None:
        self._self_metrics.record_error(COLLECTOR, function, error)

    # -- ExporterComponent -------------------------------------------------------------------------
    def collectors(self) -> list[Collector]:
        return [self._collector]

    async def start(self) -> None:
        """Make the first pass now (bounded by the scrape timeout) so start-up logs and /healthz show
        the NVML state at once; background mode then keeps polling."""
        await self._await_pass(self._launch())
        if self.config.mode == "background":
            self._poller = asyncio.create_task(self._poll_forever(), name="nvml-poller")

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            try:
                await self._poller
            except asyncio.CancelledError:
                pass
            self._poller = None
        if self._inflight is not None and not self._inflight.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._inflight), self.config.scrape_timeout_seconds)
            except asyncio.TimeoutError:
                log.warning("an NVML pass is still blocked at shutdown; leaving NVML initialised")
                return
        try:
            await asyncio.wait_for(run_in_daemon_thread(self.sampler.shutdown, "nvml-shutdown"), self.config.scrape_timeout_seconds)
        except asyncio.TimeoutError:
            log.warning("nvmlShutdown did not return within %.1fs", self.config.scrape_timeout_seconds)

    async def refresh(self) -> None:
        latest = self._latest
        if self.config.mode == "background":
            if latest is None and self._inflight is not None:
                await self._await_pass(self._inflight)
            return
        if latest is not None and time.monotonic() - latest.completed_monotonic < self.config.max_age_seconds:
            return
        await self._await_pass(self._launch())

    # -- passes --------------------------------------------------------------------------------------
    def _launch(self) -> "asyncio.Future[Snapshot | None]":
        """The pass in flight, or a new one: concurrent callers share it (single-flight)."""
        if self._inflight is not None and not self._inflight.done():
            return self._inflight
        self._inflight_started = time.monotonic()
        self._overrun_recorded = False
        self._inflight = run_in_daemon_thread(self._run_pass, "nvml-pass")
        return self._inflight

    def _run_pass(self) -> Snapshot | None:
        try:
            snapshot = self.sampler.sample()
        except Exception as exc:  # a bug or an unexpected binding error: count it, keep serving
            log.exception("NVML pass failed")
            self._record_error("pass", type(exc).__name__.lower())
            return None
        self._latest = snapshot
        self.passes += 1
        return snapshot

    async def _await_pass(self, future: "asyncio.Future[Snapshot | None]") -> None:
        try:
            await asyncio.wait_for(asyncio.shield(future), self.config.scrape_timeout_seconds)
        except asyncio.TimeoutError:
            if not self._overrun_recorded:
                self._overrun_recorded = True
                self._record_error("pass", "timeout")
                log.warning("NVML pass exceeded %.1fs; serving the last good snapshot", self.config.scrape_timeout_seconds)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self.config.poll_interval_seconds)
            await self._await_pass(self._launch())

    def health(self) -> dict:
        """Shown in /healthz; informational only (the exporter is healthy while it serves)."""
        snapshot, stale = self.current()
        return {
            "nvml_up": bool(snapshot and snapshot.nvml_up),
            "reason": snapshot.reason if snapshot else "no_pass_yet",
            "stale": stale,
            "mode": self.config.mode,
        }

    def current(self) -> tuple[Snapshot | None, bool]:
        """The snapshot to serve and whether it is stale (a pass overran the scrape timeout)."""
        inflight = self._inflight
        overran = (
            inflight is not None
            and not inflight.done()
            and time.monotonic() - self._inflight_started > self.config.scrape_timeout_seconds
        )
        return self._latest, overran
