"""A/B test of a canary against the stable version, decided by an always-valid sequential test.

Arms: the *control* is the version with the largest live weight; every other version with live weight
is a *canary*. A test starts when a (control, canary) pair appears and counts from there (the
business counters are snapshotted at the start). Per arm and metric (CTR = clicks / served requests,
add-to-cart and conversion = add-to-carts / orders per served request) it reports the rate with a 95 %
Wilson interval, the canary's lift over the control, and a mixture sequential probability ratio test
(mSPRT, Johari, Pekelis & Walsh 2017, normal approximation) on that lift:

    V = p_a (1 - p_a) / n_a + p_b (1 - p_b) / n_b             (variance of the lift estimate)
    Lambda = sqrt(V / (V + tau^2)) * exp(lift^2 tau^2 / (2 V (V + tau^2)))

The always-valid p-value is min over time of 1 / Lambda, so the test may be looked at after every
event (Prometheus scrapes it continuously) and its false-decision rate stays at `alpha`; the matching
confidence sequence is lift +- sqrt(V (V + tau^2) / tau^2 * (ln((V + tau^2) / V) + 2 ln(1 / alpha))).
Decision (primary metric): "better" / "worse" once p <= alpha with both arms at `min_requests`,
else "not_yet"; a decision, once reached, stays for the life of the test (its p-value cannot rise).

Counts are read from the feedback store's counters (`business_requests_served_total`, `business_clicks_total`,
`business_add_to_carts_total`, `business_orders_total`) through their public `collect()`, never recomputed.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping, Optional

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from inference_server.config import ABTestConfig

__all__ = ["ABTestCollector", "ABTestMonitor", "ArmCounts", "METRICS", "SequentialTest", "confidence_sequence",
           "feedback_counts", "msprt_log_lambda", "wilson_interval"]

METRICS = ("ctr", "add_to_cart", "conversion")
DECISIONS = ("better", "worse", "not_yet")


@dataclass(frozen=True)
class ArmCounts:
    """Served requests and events of one version (cumulative)."""

    requests: float = 0.0
    events: Mapping[str, float] = field(default_factory=dict)

    def minus(self, base: "ArmCounts") -> "ArmCounts":
        return ArmCounts(max(0.0, self.requests - base.requests),
                         {m: max(0.0, self.events.get(m, 0.0) - base.events.get(m, 0.0)) for m in METRICS})

    def rate(self, metric: str) -> float:
        return min(1.0, self.events.get(metric, 0.0) / self.requests) if self.requests > 0 else 0.0


def wilson_interval(successes: float, trials: float, z: float = 1.959964) -> tuple[float, float]:
    """95 % Wilson score interval of a proportion ((0, 1) with no trials)."""
    if trials <= 0:
        return 0.0, 1.0
    p = min(1.0, successes / trials)
    denom = 1.0 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _lift_and_variance(control: ArmCounts, canary: ArmCounts, metric: str) -> tuple[float, float]:
    pa, pb = control.rate(metric), canary.rate(metric)
    variance = pa * (1 - pa) / max(control.requests, 1.0) + pb * (1 - pb) / max(canary.requests, 1.0)
    return pb - pa, variance


def msprt_log_lambda(lift: float, variance: float, tau: float) -> float:
    """log of the normal-mixture likelihood ratio for H0: lift = 0 (0 when there is no variance yet)."""
    if variance <= 0:
        return 0.0
    t2 = tau * tau
    return 0.5 * math.log(variance / (variance + t2)) + lift * lift * t2 / (2 * variance * (variance + t2))


def confidence_sequence(lift: float, variance: float, tau: float, alpha: float) -> tuple[float, float]:
    """Always-valid (1 - alpha) bounds of the lift: the lifts the mSPRT would not reject."""
    if variance <= 0:
        return -1.0, 1.0
    t2 = tau * tau
    half = math.sqrt(variance * (variance + t2) / t2 * (math.log((variance + t2) / variance) + 2 * math.log(1 / alpha)))
    return lift - half, lift + half


@dataclass
class MetricResult:
    lift: float
    lift_lower: float
    lift_upper: float
    p_value: float           # always-valid: min over the test's life of 1 / Lambda


class SequentialTest:
    """One canary against one control, counting from `baseline` (the counts when the test started)."""

    def __init__(self, control: str, canary: str, baseline: Mapping[str, ArmCounts], config: ABTestConfig) -> None:
        self.control, self.canary = control, canary
        self.baseline = dict(baseline)
        self.config = config
        self.started_at = time.time()
        self.p_values = {m: 1.0 for m in METRICS}
        self.decision = "not_yet"
        self.decided_at: Optional[float] = None
        self.arms: dict[str, ArmCounts] = {control: ArmCounts(), canary: ArmCounts()}
        self.results: dict[str, MetricResult] = {}

    def update(self, totals: Mapping[str, ArmCounts]) -> str:
        """Fold in the current cumulative counts; returns the decision."""
        cfg = self.config
        for version in (self.control, self.canary):
            self.arms[version] = totals.get(version, ArmCounts()).minus(self.baseline.get(version, ArmCounts()))
        control, canary = self.arms[self.control], self.arms[self.canary]
        for metric in METRICS:
            lift, variance = _lift_and_variance(control, canary, metric)
            log_lambda = msprt_log_lambda(lift, variance, cfg.mixture_sd)
            self.p_values[metric] = min(self.p_values[metric], math.exp(-max(0.0, log_lambda)))
            lower, upper = confidence_sequence(lift, variance, cfg.mixture_sd, cfg.alpha)
            self.results[metric] = MetricResult(lift, lower, upper, self.p_values[metric])
        enough = min(control.requests, canary.requests) >= cfg.min_requests
        primary = self.results[cfg.primary_metric]
        if self.decision == "not_yet" and enough and primary.p_value <= cfg.alpha:
            self.decision = "better" if primary.lift > 0 else "worse"
            self.decided_at = time.time()
        return self.decision

    def describe(self) -> dict:
        return {"control": self.control, "canary": self.canary, "started_at": self.started_at,
                "decision": self.decision, "decided_at": self.decided_at, "primary_metric": self.config.primary_metric,
                "requests": {v: a.requests for v, a in self.arms.items()},
                "rates": {v: {m: a.rate(m) for m in METRICS} for v, a in self.arms.items()},
                "metrics": {m: vars(r) for m, r in self.results.items()}}


class ABTestMonitor:
    """The running A/B tests of one model: started, updated and ended from the live split."""

    def __init__(self, model: str, config: ABTestConfig, read_counts: Callable[[str], ArmCounts]) -> None:
        self.model = model
        self.config = config
        self.read_counts = read_counts
        self.tests: dict[str, SequentialTest] = {}     # canary version -> its test

    def update(self, weights: Mapping[str, float]) -> dict[str, SequentialTest]:
        """Sync the tests with the live split (`{version: weight}`) and fold in the current counts."""
        if not self.config.enabled:
            self.tests.clear()
            return self.tests
        live = {v: w for v, w in weights.items() if w > 0}
        if len(live) < 2:
            self.tests.clear()
            return self.tests
        control = max(live, key=lambda v: (live[v], -int(v) if v.isdigit() else 0))
        canaries = [v for v in live if v != control]
        for canary in list(self.tests):
            if canary not in canaries or self.tests[canary].control != control:
                del self.tests[canary]
        totals = {v: self.read_counts(v) for v in live}
        for canary in canaries:
            if canary not in self.tests:
                self.tests[canary] = SequentialTest(control, canary, {control: totals[control], canary: totals[canary]},
                                                    self.config)
            self.tests[canary].update(totals)
        return self.tests

    def decision(self, version: str) -> Optional[str]:
        test = self.tests.get(version)
        return test.decision if test is not None else None

    def describe(self) -> list[dict]:
        return [t.describe() for t in self.tests.values()]


def feedback_counts(metrics, model: str, endpoints: Iterable[str]) -> Callable[[str], ArmCounts]:
    """Read one version's cumulative counts from the feedback store's counters (`FeedbackMetrics`:
    requests_served, clicks, add_to_carts, orders), through their public `collect()`."""
    endpoints = frozenset(endpoints)
    counters = {"requests": metrics.requests_served, "ctr": metrics.clicks, "add_to_cart": metrics.add_to_carts,
                "conversion": metrics.orders}

    def totals(counter) -> dict[str, float]:
        out: dict[str, float] = {}
        for family in counter.collect():
            for sample in family.samples:
                labels = sample.labels
                if (sample.name.endswith("_total") and labels.get("model") == model
                        and labels.get("endpoint") in endpoints):
                    out[labels["version"]] = out.get(labels["version"], 0.0) + sample.value
        return out

    def read(version: str) -> ArmCounts:
        values = {name: totals(counter).get(version, 0.0) for name, counter in counters.items()}
        return ArmCounts(values.pop("requests"), values)

    return read


class ABTestCollector(Collector):
    """The `inference_ab_test_*` gauges, recomputed at scrape time from the live split and counters."""

    def __init__(self, monitor: ABTestMonitor, weights: Callable[[], Mapping[str, float]]) -> None:
        self.monitor = monitor
        self.weights = weights

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        arm = ("model", "version", "role")
        pair = ("model", "version")
        return [
            GaugeMetricFamily("inference_ab_test_requests", "Served requests counted in the running A/B test, per arm.", labels=arm),
            GaugeMetricFamily("inference_ab_test_rate", "Per-arm rate in the running A/B test (events per served request).",
                              labels=(*arm, "metric")),
            GaugeMetricFamily("inference_ab_test_rate_bound", "95% Wilson interval of the per-arm rate.",
                              labels=(*arm, "metric", "bound")),
            GaugeMetricFamily("inference_ab_test_lift", "Canary rate minus control rate.", labels=(*pair, "metric")),
            GaugeMetricFamily("inference_ab_test_lift_bound", "Always-valid (1 - alpha) confidence sequence of the lift.",
                              labels=(*pair, "metric", "bound")),
            GaugeMetricFamily("inference_ab_test_p_value", "Always-valid p-value of the mSPRT (lift = 0).",
                              labels=(*pair, "metric")),
            GaugeMetricFamily("inference_ab_test_decision",
                              "1 for the canary's current decision on the primary metric (better, worse, not_yet).",
                              labels=(*pair, "decision")),
            GaugeMetricFamily("inference_ab_test_started_timestamp_seconds", "When the canary's A/B test started.",
                              labels=pair),
        ]

    def describe(self):
        return self._families()

    def collect(self):
        requests, rate, rate_bound, lift, lift_bound, p_value, decision, started = families = self._families()
        model = self.monitor.model
        for canary, test in self.monitor.update(self.weights()).items():
            for version, role in ((test.control, "control"), (canary, "canary")):
                arm = test.arms[version]
                requests.add_metric((model, version, role), arm.requests)
                for metric in METRICS:
                    rate.add_metric((model, version, role, metric), arm.rate(metric))
                    lo, hi = wilson_interval(arm.events.get(metric, 0.0), arm.requests)
                    rate_bound.add_metric((model, version, role, metric, "lower"), lo)
                    rate_bound.add_metric((model, version, role, metric, "upper"), hi)
            for metric, result in test.results.items():
                lift.add_metric((model, canary, metric), result.lift)
                lift_bound.add_metric((model, canary, metric, "lower"), result.lift_lower)
                lift_bound.add_metric((model, canary, metric, "upper"), result.lift_upper)
                p_value.add_metric((model, canary, metric), result.p_value)
            for name in DECISIONS:
                decision.add_metric((model, canary, name), 1.0 if test.decision == name else 0.0)
            started.add_metric((model, canary), test.started_at)
        return families
