"""Prometheus metrics of the anomaly runtime: result gauges (custom collector) and self-metrics."""
from __future__ import annotations

from typing import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from .job import JobState

FAILURE_REASONS = ("source_unreachable", "source_timeout", "source_error", "bad_response",
                   "fit_error", "series_cap")
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
RESULT_METRICS = (
    ("anomaly_score", "Anomaly score of the newest point (>= 0; above 1 means anomalous).", "score"),
    ("anomaly_expected", "The detector's expected value for the newest point.", "expected"),
    ("anomaly_lower", "Lower edge of the band outside which the score exceeds 1.", "lower"),
    ("anomaly_upper", "Upper edge of the band outside which the score exceeds 1.", "upper"),
    ("anomaly_detector_warm", "1 once the detector has seen the job's alert_after_seconds of the series "
                              "(its seasonal period); AnomalyScoreHigh fires only then.", "warm"),
)


class RuntimeMetrics:
    """Self-metrics in a private registry that the app registers as one collector."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.fit_duration = Histogram("anomaly_fit_duration_seconds",
                                      "Time to refit the due series of a job in one pass.",
                                      ["anomaly_job"], buckets=DURATION_BUCKETS, registry=r)
        self.score_duration = Histogram("anomaly_score_duration_seconds",
                                        "Time of one scoring pass of a job (query, fits, scoring).",
                                        ["anomaly_job"], buckets=DURATION_BUCKETS, registry=r)
        self.series_tracked = Gauge("anomaly_series_tracked", "Series with detector state.",
                                    ["anomaly_job"], registry=r)
        self.failures = Counter("anomaly_failures", "Failed queries, fits and capped series, by reason.",
                                ["anomaly_job", "reason"], registry=r)
        self.source_up = Gauge("anomaly_source_up",
                               "1 when the job's last query to Prometheus succeeded.",
                               ["anomaly_job"], registry=r)
        self.last_success = Gauge("anomaly_last_success_timestamp_seconds",
                                  "Unix time of the job's last successful scoring pass.",
                                  ["anomaly_job"], registry=r)

    def init_job(self, job: str) -> None:
        """Create every child up front so series exist (at 0) before the first event."""
        self.fit_duration.labels(anomaly_job=job)
        self.score_duration.labels(anomaly_job=job)
        self.series_tracked.labels(anomaly_job=job).set(0)
        self.source_up.labels(anomaly_job=job).set(0)
        self.last_success.labels(anomaly_job=job).set(0)
        for reason in FAILURE_REASONS:
            self.failures.labels(anomaly_job=job, reason=reason)


class ResultCollector(Collector):
    """anomaly_score/expected/lower/upper for every series of every job with a fresh pass."""

    def __init__(self, jobs: Callable[[], Iterable[JobState]]) -> None:
        self._jobs = jobs

    def describe(self) -> list[Metric]:
        return [Metric(name, doc, "gauge") for name, doc, _ in RESULT_METRICS]

    def collect(self) -> Iterable[Metric]:
        families = [(Metric(name, doc, "gauge"), attr) for name, doc, attr in RESULT_METRICS]
        for job in self._jobs():
            for labels, result in job.current_results():
                full = {"anomaly_job": job.config.name, **labels}
                for family, attr in families:
                    family.add_sample(family.name, full, float(getattr(result, attr)))
        for family, _ in families:
            yield family
