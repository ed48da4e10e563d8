"""Every detector flags injected anomalies, stays quiet on clean seasonal data, and never looks ahead."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from exporter.anomaly.detectors import DETECTORS, build_detector, detect_period
from exporter.anomaly.streaming import stream

PERIOD = 48
N = PERIOD * 12
FIT_EVERY = 48
PARAMS = {
    "robust_zscore": {"period": "auto", "window": 30},
    "stl": {},
    "holt_winters": {},
    "ensemble": {"history": 400, "holdoff": 30},
}


@pytest.fixture(autouse=True)
def _quiet_statsmodels():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def seasonal_series(seed: int, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 100 + 0.02 * t + 20 * np.sin(2 * np.pi * t / PERIOD) + rng.normal(0, 1.0, n)


def run(name: str, values: np.ndarray, **overrides):
    det = build_detector(name, {**PARAMS[name], **overrides.pop("params", {})}, **overrides)
    return stream(det, values, fit_every=FIT_EVERY, fit_window=PERIOD * 8, min_fit=PERIOD * 6)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_detects_injected_spike_and_dip(name):
    x = seasonal_series(1)
    spike, dip = PERIOD * 9 + 5, PERIOD * 10 + 30
    x[spike] += 15
    x[dip] -= 15
    out = run(name, x)
    assert out.score[spike] > 1 and out.score[dip] > 1
    assert out.lower[spike] <= out.expected[spike] <= out.upper[spike]
    assert out.upper[spike] < x[spike]


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_no_false_alarms_on_clean_seasonal_series(name):
    for seed in (2, 3):
        out = run(name, seasonal_series(seed))
        scored = out.score[PERIOD * 6:]
        assert np.mean(scored > 1) <= 0.01, (name, seed, np.flatnonzero(scored > 1))


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_score_at_t_ignores_the_future(name):
    x = seasonal_series(4)
    cut = PERIOD * 9 + 7  # mid-chunk: the fit schedule is the same either way
    base = run(name, x)
    changed = x.copy()
    changed[cut:] = changed[cut:] * 3 - 50  # rewrite everything from `cut` on
    other = run(name, changed)
    shorter = run(name, x[:cut])
    np.testing.assert_array_equal(base.score[:cut], other.score[:cut])
    np.testing.assert_array_equal(base.score[:cut], shorter.score)
    np.testing.assert_array_equal(base.expected[:cut], shorter.expected)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_direction_and_min_deviation(name):
    x = seasonal_series(5)
    spike = PERIOD * 9 + 5
    x[spike] += 15
    assert run(name, x, direction="below").score[spike] < 1
    assert run(name, x, direction="above").score[spike] > 1
    assert run(name, x, min_deviation=1000.0).score[spike] < 1


def test_period_detection():
    assert detect_period(seasonal_series(6)) == PERIOD
    rng = np.random.default_rng(7)
    assert detect_period(rng.normal(size=2000)) == 0
    assert detect_period(np.cumsum(rng.normal(size=2000))) == 0  # a random walk is not seasonal


def test_bad_parameters_are_rejected():
    with pytest.raises(ValueError):
        build_detector("nope")
    with pytest.raises(TypeError):
        build_detector("stl", {"windw": 3})
    with pytest.raises(ValueError):
        build_detector("robust_zscore", {"window": 1})
