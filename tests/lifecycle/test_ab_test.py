"""The A/B test's statistics on simulated counts: nominal false-decision rate under continuous monitoring
(A/A), power on a real difference (A/B), the minimum-sample guard, and the exported gauges."""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from inference_server.lifecycle.feedback import FeedbackMetrics
from tests.lifecycle.conftest import sample

from inference_server.config import ABTestConfig
from inference_server.lifecycle.ab_test import (
    ABTestCollector,
    ABTestMonitor,
    ArmCounts,
    SequentialTest,
    confidence_sequence,
    msprt_log_lambda,
    feedback_counts,
    wilson_interval,
)

LOOK_EVERY = 250        # requests per arm between looks (a Prometheus scrape)
LOOKS = 80              # up to 20,000 requests per arm


def simulate(p_control: float, p_canary: float, runs: int, seed: int, config: ABTestConfig) -> list[str]:
    """Decision of each simulated test, looked at after every batch of requests."""
    rng = np.random.default_rng(seed)
    outcomes = []
    for _ in range(runs):
        test = SequentialTest("1", "2", {}, config)
        clicks = np.cumsum(rng.binomial(LOOK_EVERY, [p_control, p_canary], size=(LOOKS, 2)), axis=0)
        for look in range(LOOKS):
            n = (look + 1) * LOOK_EVERY
            test.update({"1": ArmCounts(n, {"ctr": clicks[look, 0]}), "2": ArmCounts(n, {"ctr": clicks[look, 1]})})
            if test.decision != "not_yet":
                break
        outcomes.append(test.decision)
    return outcomes


def naive_peeking(p: float, runs: int, seed: int) -> float:
    """Share of A/A runs a fixed-horizon z-test (|z| > 1.96) rejects at some look: what peeking costs."""
    rng = np.random.default_rng(seed)
    rejected = 0
    for _ in range(runs):
        clicks = np.cumsum(rng.binomial(LOOK_EVERY, [p, p], size=(LOOKS, 2)), axis=0)
        n = LOOK_EVERY * np.arange(1, LOOKS + 1)
        pa, pb = clicks[:, 0] / n, clicks[:, 1] / n
        se = np.sqrt(pa * (1 - pa) / n + pb * (1 - pb) / n)
        rejected += bool((np.abs(pb - pa) > 1.96 * se)[n >= 1000].any())
    return rejected / runs


def test_aa_false_decision_rate_stays_at_alpha_under_continuous_monitoring():
    config = ABTestConfig(alpha=0.05, mixture_sd=0.02, min_requests=1000)
    runs = 400
    outcomes = simulate(0.10, 0.10, runs, seed=1, config=config)
    false_rate = sum(o != "not_yet" for o in outcomes) / runs
    # nominal 5 %; 3 binomial standard errors of slack for 400 runs
    assert false_rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs), false_rate
    # the same looks with a fixed-horizon test reject far more often: the sequential test is what keeps it valid
    assert naive_peeking(0.10, runs, seed=1) > 0.15


def test_ab_real_difference_is_detected_in_the_right_direction():
    config = ABTestConfig(alpha=0.05, mixture_sd=0.02, min_requests=1000)
    better = simulate(0.10, 0.13, 100, seed=2, config=config)
    worse = simulate(0.13, 0.10, 100, seed=3, config=config)
    assert sum(o == "better" for o in better) >= 90, better
    assert sum(o == "worse" for o in worse) >= 90, worse
    assert "worse" not in better and "better" not in worse


def simulate_live(p_control: float, p_canary: float, seconds: int, runs: int, seed: int) -> list[Optional[int]]:
    """Second of the first decision (None: none) with the shipped defaults, a 20% canary at the simulator's
    default 5 req/s (Poisson arrivals), the test looked at every second as Prometheus scrapes it."""
    rng = np.random.default_rng(seed)
    decided = []
    for _ in range(runs):
        test = SequentialTest("1", "2", {}, ABTestConfig())
        served = rng.poisson([4.0, 1.0], size=(seconds, 2))
        requests, clicks = served.cumsum(axis=0), rng.binomial(served, [p_control, p_canary]).cumsum(axis=0)
        decided.append(next((s + 1 for s in range(seconds) if test.update(
            {"1": ArmCounts(requests[s, 0], {"ctr": clicks[s, 0]}),
             "2": ArmCounts(requests[s, 1], {"ctr": clicks[s, 1]})}) != "not_yet"), None))
    return decided


def test_default_minimum_sample_lets_a_degraded_canary_be_decided_within_minutes_without_false_decisions():
    # the simulator's CTRs (docs/lifecycle.md): stable 0.79, degraded canary 0.45 per served request
    decided = simulate_live(0.79, 0.45, 300, runs=100, seed=4)
    assert all(s is not None for s in decided), decided
    # min_requests (150) at ~1 canary req/s, then the data decide: well inside 4 minutes, leaving the
    # alert's for: 1m inside the 5-minute rollback target
    assert sorted(decided)[94] <= 200, sorted(decided)
    # A/A looked at every second from the first request: the small minimum does not inflate false decisions
    runs = 200
    false_rate = sum(s is not None for s in simulate_live(0.45, 0.45, 1200, runs=runs, seed=5)) / runs
    assert false_rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / runs), false_rate


def test_minimum_sample_size_guards_both_decisions():
    config = ABTestConfig(min_requests=5000)
    test = SequentialTest("1", "2", {}, config)
    # an overwhelming difference, but only 2,000 requests per arm
    assert test.update({"1": ArmCounts(2000, {"ctr": 100}), "2": ArmCounts(2000, {"ctr": 600})}) == "not_yet"
    assert test.results["ctr"].p_value < 1e-6
    assert test.update({"1": ArmCounts(5000, {"ctr": 250}), "2": ArmCounts(5000, {"ctr": 1500})}) == "better"


def test_confidence_sequence_matches_the_test():
    lift, variance, tau, alpha = 0.01, 2e-5, 0.02, 0.05
    lower, upper = confidence_sequence(lift, variance, tau, alpha)
    # the bound is exactly where the mixture likelihood ratio reaches 1 / alpha
    assert msprt_log_lambda(upper - lift, variance, tau) == pytest.approx(math.log(1 / alpha), rel=1e-9)
    assert lower < lift < upper
    lo, hi = wilson_interval(10, 100)
    assert 0.05 < lo < 0.1 < hi < 0.18


def test_monitor_follows_the_split_and_exports_gauges():
    registry = CollectorRegistry()
    metrics = FeedbackMetrics(registry)
    served, clicks = metrics.requests_served, metrics.clicks
    served.labels("search", "m", "1").inc(500)          # before the test: not counted
    served.labels("rank", "m", "2").inc(700)            # an endpoint the test does not count
    monitor = ABTestMonitor("m", ABTestConfig(min_requests=100), feedback_counts(metrics, "m", ["search"]))
    weights = {"1": 0.9, "2": 0.1}
    registry.register(ABTestCollector(monitor, lambda: weights))
    monitor.update(weights)
    served.labels("search", "m", "1").inc(3000)
    clicks.labels("search", "m", "1").inc(300)
    served.labels("search", "m", "2").inc(3000)
    clicks.labels("search", "m", "2").inc(600)
    get = registry.get_sample_value
    assert get("inference_ab_test_requests", {"model": "m", "version": "1", "role": "control"}) == 3000
    assert get("inference_ab_test_rate", {"model": "m", "version": "2", "role": "canary", "metric": "ctr"}) == 0.2
    assert get("inference_ab_test_lift", {"model": "m", "version": "2", "metric": "ctr"}) == pytest.approx(0.1)
    assert get("inference_ab_test_decision", {"model": "m", "version": "2", "decision": "better"}) == 1
    assert monitor.decision("2") == "better"
    weights.clear()
    weights.update({"2": 1.0})                            # promoted: the test ends
    assert get("inference_ab_test_decision", {"model": "m", "version": "2", "decision": "better"}) is None
    assert monitor.decision("2") is None


async def test_promote_alert_acts_only_when_the_ab_test_says_better(lifecycle_client):
    """Served searches and click feedback drive the server's own A/B test; the promote alert is refused
    while it says not_yet and promotes once it says better."""
    from tests.lifecycle.test_alert_webhook import payload

    client = await lifecycle_client(ab_test={"min_requests": 40})
    resp = await client.post("/v1/admin/models/minilm/versions/2/load", headers=client.auth)
    assert resp.status == 200, await resp.json()
    resp = await client.put("/v1/admin/models/minilm/traffic", json={"weights": {"1": 50, "2": 50}}, headers=client.auth)
    assert resp.status == 200
    promote = {"alertname": "CanaryWinsABTest", "action": "promote", "model": "minilm", "version": "2",
               "severity": "info"}
    early = await (await client.post("/v1/alerts", json=payload("firing", promote), headers=client.alerts_auth)).json()
    assert early["results"][0]["outcome"] == "error" and "not_yet" in early["results"][0]["detail"]
    assert client.lifecycle.router.split.weight("2") == 0.5
    # shoppers click version 2's first result every time, version 1's one time in ten
    for i in range(160):
        resp = await client.post("/v1/search", json={"query": f"oak table {i % 7}", "k": 5, "user_id": f"ab-{i}"})
        served = await resp.json()
        if served["version"] == "2" or i % 10 == 0:
            click = {"request_id": served["request_id"], "event_id": f"ab-click-{i}", "type": "click",
                     "product_id": served["results"][0]["id"]}
            assert (await client.post("/v1/feedback", json=click, headers=client.feedback_auth)).status == 200
    metrics = await (await client.get("/metrics")).text()
    assert 'inference_ab_test_decision{decision="better",model="minilm",version="2"} 1.0' in metrics
    done = await (await client.post("/v1/alerts", json=payload("firing", promote), headers=client.alerts_auth)).json()
    assert done["results"][0]["outcome"] == "ok" and done["traffic"]["weights"] == {"2": 100.0}
    assert sample(client.registry, "inference_alert_webhook_actions_total", action="promote", outcome="ok") == 1
