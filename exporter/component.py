"""The plug-in interface: the exporter app hosts several components, each with its own collectors.

A component is built from its YAML section, contributes prometheus_client collectors to the app's one
registry, may do background work between start() and stop(), and gets a refresh() call before each
/metrics render so on-demand collectors (NVML single-flight) can update without blocking the loop.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from prometheus_client.registry import Collector

from exporter.selfmetrics import SelfMetrics


@dataclass(frozen=True)
class ComponentContext:
    """What the app hands a component factory.

    self_metrics: shared `exporter_collector_errors_total` / `exporter_scrape_duration_seconds`;
    record failures of underlying calls with `self_metrics.record_error(collector, function, error)`.
    config_dir: directory of the config file (resolve relative paths against it), or the cwd.
    """

    self_metrics: SelfMetrics
    config_dir: Path


@runtime_checkable
class ExporterComponent(Protocol):
    """One unit of collection hosted by the exporter app."""

    name: str  # bounded, used as the `collector` label of the self-metrics

    def collectors(self) -> list[Collector]:
        """Collectors to register once in the app's registry (called once, before start())."""
        ...

    async def start(self) -> None:
        """Begin background work (threads, tasks). Must not block the loop."""
        ...

    async def stop(self) -> None:
        """Stop background work; must return promptly even when an underlying call hangs."""
        ...

    async def refresh(self) -> None:
        """Called before every /metrics render; a no-op for components that update in the background.

        Must bound its own wait (serve stale data rather than hang the scrape) and never raise.
        """
        ...
