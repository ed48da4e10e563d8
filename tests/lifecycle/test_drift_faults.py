"""Drift statistics (against scipy and known values) and the fault injector."""
from __future__ import annotations

import random

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from scipy import stats

from inference_server.lifecycle.drift import DriftCollector, DriftConfig, DriftMonitor, ks_statistic, psi, score_spread
from inference_server.lifecycle.faults import FaultError, FaultInjector, FaultMetrics, InjectedFault


def test_ks_matches_scipy():
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, 700), rng.normal(0.3, 1.2, 400)
    assert ks_statistic(a, b) == pytest.approx(stats.ks_2samp(a, b).statistic)
    ints_a, ints_b = rng.integers(3, 20, 500), rng.integers(5, 25, 300)   # ties (token counts)
    assert ks_statistic(ints_a, ints_b) == pytest.approx(stats.ks_2samp(ints_a, ints_b).statistic)


def test_psi_is_small_for_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(2)
    ref = rng.normal(0.5, 0.1, 2000)
    assert psi(ref, rng.normal(0.5, 0.1, 2000)) < 0.05
    assert psi(ref, rng.normal(0.7, 0.1, 2000)) > 0.25


def test_psi_by_hand_with_two_bins():
    ref = np.array([0.0, 0.0, 1.0, 1.0])          # median edge 0.5 -> bins (<=0.5, >0.5) at 50/50
    online = np.array([0.0, 1.0, 1.0, 1.0])       # 25/75
    expected = (0.25 - 0.5) * np.log(0.25 / 0.5) + (0.75 - 0.5) * np.log(0.75 / 0.5)
    assert psi(ref, online, bins=2) == pytest.approx(expected)


def test_score_spread():
    assert score_spread([0.9, 0.8, 0.5]) == pytest.approx(0.4)
    assert score_spread([0.9] + [0.5] * 20) == pytest.approx(0.4)
    assert score_spread([]) is None


def test_monitor_exports_after_min_samples():
    cfg = DriftConfig(window_size=50, min_samples=10)
    ref = {"top1_score": np.linspace(0.3, 0.9, 100), "score_spread": np.linspace(0.0, 0.3, 100),
           "query_tokens": np.arange(100) % 12 + 3}
    mon = DriftMonitor("minilm", "2", ref, cfg)
    registry = CollectorRegistry()
    registry.register(DriftCollector(lambda: [mon]))
    for _ in range(9):
        mon.observe_answer([0.95, 0.9, 0.85], 30)
    labels = {"model": "minilm", "version": "2", "feature": "top1_score"}
    assert registry.get_sample_value("inference_drift_window_samples", labels) == 9
    assert registry.get_sample_value("inference_drift_psi", labels) is None
    for _ in range(100):
        mon.observe_answer([0.95, 0.9, 0.85], 30)
    assert registry.get_sample_value("inference_drift_window_samples", labels) == 50   # bounded window
    assert registry.get_sample_value("inference_drift_ks_statistic", labels) == pytest.approx(1.0)
    assert registry.get_sample_value("inference_drift_psi", labels) > 1.0


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


async def test_fault_injection_latency_errors_version_and_expiry():
    registry = CollectorRegistry()
    clock = Clock()
    inj = FaultInjector(FaultMetrics(registry), clock=clock, rng=random.Random(3))
    inj.set({"error_rate": 1.0, "version": "2", "duration_s": 10})
    await inj.apply("minilm", "1")                        # other version: untouched
    with pytest.raises(InjectedFault):
        await inj.apply("minilm", "2")
    assert registry.get_sample_value("inference_injected_faults_total",
                                     {"kind": "error", "model": "minilm", "version": "2"}) == 1
    assert registry.get_sample_value("inference_fault_injection_active") == 1
    clock.now = 10.0
    await inj.apply("minilm", "2")                        # expired
    assert registry.get_sample_value("inference_fault_injection_active") == 0
    inj.set({"latency_ms": 30, "duration_s": 5})
    await inj.apply("minilm", "1")
    assert registry.get_sample_value("inference_injected_faults_total",
                                     {"kind": "latency", "model": "minilm", "version": "1"}) == 1
    assert inj.clear() and inj.current() is None


@pytest.mark.parametrize("body, field", [
    ({"error_rate": 0.5}, "duration_s"),
    ({"error_rate": 1.5, "duration_s": 1}, "error_rate"),
    ({"latency_ms": -1, "duration_s": 1}, "latency_ms"),
    ({"latency_ms": 1.5, "duration_s": 1}, "latency_ms"),
    ({"latency_ms": 10, "duration_s": 0}, "duration_s"),
    ({"latency_ms": 10, "duration_s": 1, "bogus": 1}, "bogus"),
    ({"duration_s": 1}, None),
])
def test_fault_validation(body, field):
    inj = FaultInjector(FaultMetrics(CollectorRegistry()))
    with pytest.raises(FaultError) as info:
        inj.set(body)
    assert info.value.field == field
