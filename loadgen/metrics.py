"""The simulator's own Prometheus metrics (served on `--listen`), on an explicit registry."""
from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2,
                   0.3, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)


class LoadgenMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter("loadgen_requests", "Requests sent to the inference server, by answer.",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("loadgen_request_duration_seconds",
                                 "Client-side latency of requests to the inference server.",
                                 ["endpoint"], buckets=LATENCY_BUCKETS, registry=r)
        self.impressions = Counter("loadgen_impressions", "Products shown to simulated shoppers.",
                                   ["version"], registry=r)
        self.events = Counter("loadgen_feedback_events", "Feedback events the shoppers produced.",
                              ["type", "version"], registry=r)
        self.dropped = Counter("loadgen_dropped_arrivals",
                               "Arrivals skipped because max_concurrency requests were already in flight.",
                               registry=r)
        self.target_rate = Gauge("loadgen_target_requests_per_second",
                                 "Arrival rate the daily pattern (and any surge) asks for now.", registry=r)
        self.simulated_hour = Gauge("loadgen_simulated_hour", "Hour of the simulated day (0-24).", registry=r)
        self.in_flight = Gauge("loadgen_requests_in_flight", "Requests awaiting an answer.", registry=r)
        self.scenario_active = Gauge("loadgen_scenario_active", "1 while a fault scenario is running.",
                                     ["scenario"], registry=r)
        self.scenario_runs = Counter("loadgen_scenario_runs", "Fault scenarios run, by outcome.",
                                     ["scenario", "outcome"], registry=r)
        from loadgen.config import SCENARIO_NAMES

        for name in SCENARIO_NAMES:
            self.scenario_active.labels(name).set(0)
