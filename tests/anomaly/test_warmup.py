"""Anomaly alerts wait for the seasonal period: `anomaly_detector_warm` is 0 until a series' history
covers the job's `alert_after_seconds`, then 1 (AnomalyScoreHigh requires it)."""
from __future__ import annotations

import numpy as np
import pytest

from exporter.anomaly.config import JobConfig, parse_anomaly_config
from exporter.anomaly.job import JobState
from exporter.anomaly.reader import RangeSeries
from exporter.config import ConfigError

STEP = 60.0


def answer(start: float, n: int) -> list[RangeSeries]:
    ts = start + STEP * np.arange(n)
    values = 5.0 + np.sin(np.arange(n) / 7.0)
    return [RangeSeries({"endpoint": "search"}, ts, values)]


def job(alert_after: float) -> JobState:
    return JobState(JobConfig(name="request_rate", query="x", detector="robust_zscore", params={"window": 30},
                              step=STEP, fit_window=STEP * 200, alert_after_seconds=alert_after))


def test_scores_are_published_but_not_warm_until_the_period_is_seen():
    state = job(alert_after=STEP * 100)
    state.run_pass(answer(0.0, 60), now=1000.0)  # 59 steps of history
    (_, result), = state.current_results()
    assert np.isfinite(result.score) and result.warm == 0.0
    state.run_pass(answer(0.0, 102), now=2000.0)  # 101 steps: a whole period seen
    (_, result), = state.current_results()
    assert result.warm == 1.0


def test_history_already_in_prometheus_counts():
    # A restarted exporter reads the fit window back: a long history is warm at once.
    state = job(alert_after=STEP * 100)
    state.run_pass(answer(0.0, 150), now=1000.0)
    assert state.current_results()[0][1].warm == 1.0


def test_negative_alert_after_is_a_config_error():
    with pytest.raises(ConfigError, match=r"anomaly\.jobs\[0\]\.alert_after_seconds"):
        parse_anomaly_config({"jobs": [{"name": "j", "query": "x", "alert_after_seconds": -1}]})
