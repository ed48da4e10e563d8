"""The ``anomaly:`` section of the exporter config: Prometheus source and scoring jobs.

Pydantic models on the shared ``typed_config.Section``, so an unknown or ill-typed key fails at
start-up with its dotted path (``anomaly.jobs[0].step``).
"""
from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import Field, model_validator

from typed_config import Section, invalid, parse_section, require_positive

from .detectors import DEFAULT_DETECTOR, DETECTORS, build_detector

JOB_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_:.-]{0,63}$")
# Prometheus refuses range queries of more than 11,000 points per series.
MAX_POINTS_PER_QUERY = 11_000


class JobConfig(Section):
    """One PromQL query whose every result series is scored by its own detector instance."""

    name: str
    query: str
    detector: str = DEFAULT_DETECTOR
    params: dict[str, Any] = Field(default_factory=dict)
    step: float = 60.0  # seconds between points (the query_range step)
    fit_window: float = 7 * 86400.0  # seconds of history a refit sees
    fit_every: float = 3600.0  # seconds between refits of a series
    infer_every: float = 60.0  # seconds between scoring passes
    direction: Literal["above", "below", "both"] = "both"
    min_deviation: float = 0.0  # deviations smaller than this (in the series' unit) never score > 1
    max_series: int = 500  # series beyond this many are not tracked (counted as series_cap)
    min_fit_points: int = 30  # points needed before a series is first fitted
    # History a series needs before its scores may alert (anomaly_detector_warm 1): its seasonal period,
    # so the first evening peak is not "anomalous" to a detector that has only seen the afternoon.
    alert_after_seconds: float = 86400.0

    @model_validator(mode="after")
    def _check(self) -> "JobConfig":
        if not JOB_NAME.match(self.name):
            raise invalid("name", f"must match {JOB_NAME.pattern}, got {self.name!r}")
        if not self.query.strip():
            raise invalid("query", "must not be empty")
        require_positive(step=self.step, fit_window=self.fit_window, fit_every=self.fit_every,
                         infer_every=self.infer_every, max_series=self.max_series,
                         min_fit_points=self.min_fit_points)
        if self.min_deviation < 0:
            raise invalid("min_deviation", "must be >= 0")
        if self.alert_after_seconds < 0:
            raise invalid("alert_after_seconds", "must be >= 0")
        if self.fit_window / self.step > MAX_POINTS_PER_QUERY:
            raise invalid("fit_window", f"fit_window / step must be <= {MAX_POINTS_PER_QUERY} points")
        if self.fit_window / self.step < self.min_fit_points:
            raise invalid("fit_window", "must hold at least min_fit_points steps")
        if self.detector not in DETECTORS:
            raise invalid("detector", f"unknown detector {self.detector!r} (known: {', '.join(sorted(DETECTORS))})")
        try:
            build_detector(self.detector, self.params, direction=self.direction,
                           min_deviation=self.min_deviation)
        except (TypeError, ValueError) as exc:
            raise invalid("params", str(exc)) from None
        return self

    @property
    def fit_points(self) -> int:
        return int(self.fit_window // self.step)


class AnomalyConfig(Section):
    """Where to read from, how patiently, and what to score."""

    prometheus_url: str = "http://127.0.0.1:9090"
    bearer_token_file: Optional[str] = None  # sent as Authorization: Bearer <file content>
    timeout_seconds: float = 10.0  # per HTTP attempt
    retries: int = 2  # extra attempts after a timeout, connection error or 5xx
    backoff_initial_seconds: float = 0.5
    backoff_max_seconds: float = 8.0
    series_ttl_seconds: float = 900.0  # state of a series absent this long is dropped
    fit_workers: int = 2  # threads for fits and scoring passes, off the event loop
    jobs: list[JobConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> "AnomalyConfig":
        if not re.match(r"^https?://", self.prometheus_url):
            raise invalid("prometheus_url", "must start with http:// or https://")
        require_positive(timeout_seconds=self.timeout_seconds,
                         backoff_initial_seconds=self.backoff_initial_seconds,
                         backoff_max_seconds=self.backoff_max_seconds,
                         series_ttl_seconds=self.series_ttl_seconds, fit_workers=self.fit_workers)
        if self.retries < 0:
            raise invalid("retries", "must be >= 0")
        seen: set[str] = set()
        for i, job in enumerate(self.jobs):
            if job.name in seen:
                raise invalid(("jobs", i, "name"), f"duplicate job name {job.name!r}")
            seen.add(job.name)
        return self


def parse_anomaly_config(section: Any, path: str = "anomaly") -> AnomalyConfig:
    """Validate the raw ``anomaly:`` mapping (None = defaults, no jobs)."""
    return parse_section(AnomalyConfig, section, path)
