"""The daily traffic curve and its time compression."""
import random
import statistics

import pytest

from loadgen.config import RateConfig
from loadgen.schedule import DailyPattern


def test_peak_and_trough():
    pattern = DailyPattern(RateConfig(requests_per_second=10, daily_amplitude=0.5, peak_hour=20), start_hour=20)
    assert pattern.rate(0) == pytest.approx(15)
    assert pattern.rate(12 * 3600) == pytest.approx(5)  # 08:00, twelve hours later


def test_compressed_day():
    pattern = DailyPattern(RateConfig(requests_per_second=10, daily_amplitude=0.5, peak_hour=20,
                                      day_length_s=240), start_hour=8)
    assert pattern.simulated_hour(120) == pytest.approx(20)
    assert pattern.rate(120) == pytest.approx(15)
    assert pattern.simulated_hour(240) == pytest.approx(8)


def test_mean_rate_over_a_day_and_gaps():
    cfg = RateConfig(requests_per_second=8, daily_amplitude=0.4, day_length_s=100)
    pattern = DailyPattern(cfg, start_hour=0)
    assert statistics.fmean(pattern.rate(t / 10) for t in range(1000)) == pytest.approx(8, rel=1e-3)
    flat = DailyPattern(RateConfig(requests_per_second=50, daily_amplitude=0.0), start_hour=0)
    rng = random.Random(3)
    gaps = [flat.next_gap(0, rng) for _ in range(20000)]
    assert statistics.fmean(gaps) == pytest.approx(1 / 50, rel=0.05)
    assert statistics.fmean(flat.next_gap(0, rng, multiplier=10) for _ in range(20000)) == pytest.approx(1 / 500, rel=0.05)
