"""The exporter's own metrics: per-collector scrape duration, per-call error counts, build info."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

SCRAPE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class SelfMetrics:
    """Registered once in the app registry; thread-safe (NVML threads record errors here)."""

    def __init__(self, registry: CollectorRegistry, version: str) -> None:
        self.scrape_duration = Histogram(
            "exporter_scrape_duration_seconds",
            "Time each collector took per scrape (refresh plus render).",
            ["collector"],
            buckets=SCRAPE_BUCKETS,
            registry=registry,
        )
        self.collector_errors = Counter(
            "exporter_collector_errors_total",
            "Errors from the calls a collector makes (e.g. NVML function and error name).",
            ["collector", "function", "error"],
            registry=registry,
        )
        self.build_info = Gauge(
            "exporter_build_info", "Exporter build; always 1.", ["version"], registry=registry
        )
        self.build_info.labels(version=version).set(1)

    def record_error(self, collector: str, function: str, error: str, amount: int = 1) -> None:
        self.collector_errors.labels(collector=collector, function=function, error=error).inc(amount)

    def observe_scrape(self, collector: str, seconds: float) -> None:
        self.scrape_duration.labels(collector=collector).observe(seconds)
