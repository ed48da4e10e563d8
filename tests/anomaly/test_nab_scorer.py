"""The NAB scorer reproduces NAB's official figures from the published reference outputs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exporter.anomaly.nab_scorer import (
    CostProfile, leave_one_category_out, optimise_profile, probation_length, scaled_sigmoid,
    score_at_threshold, score_results_dir, sweep_corpus, sweep_file,
)

NAB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab"
needs_nab = pytest.mark.skipif(not (NAB / "reference_results").is_dir(), reason="NAB data absent")


@needs_nab
@pytest.mark.parametrize("detector, expected", [
    ("numenta", {"standard": 72.8, "reward_low_FP_rate": 66.0, "reward_low_FN_rate": 76.9}),
    ("windowedGaussian", {"standard": 50.9, "reward_low_FP_rate": 31.1, "reward_low_FN_rate": 59.0}),
])
def test_reference_results_reproduce_official_scores(detector, expected):
    results = score_results_dir(NAB / "reference_results" / detector, detector, NAB)
    got = {name: round(r.normalized, 1) for name, r in results.items()}
    assert got == expected


def test_scaled_sigmoid_matches_nab():
    assert scaled_sigmoid(np.array(-1.0)) == pytest.approx(2 / (1 + np.exp(-5)) - 1)
    assert scaled_sigmoid(np.array(0.0)) == pytest.approx(0.0)
    assert scaled_sigmoid(np.array(3.5)) == -1.0
    assert probation_length(4032) == 604 and probation_length(20000) == 750


def _ts(n):
    return np.datetime64("2020-01-01T00:00") + np.arange(n) * np.timedelta64(5, "m")


def test_early_detection_scores_full_tp_and_missed_window_costs_fn():
    n = 1000
    ts = _ts(n)
    window = [(ts[800], ts[849])]
    early = np.zeros(n)
    early[800] = 1.0
    late = np.zeros(n)
    late[849] = 1.0
    prof = CostProfile(tp=1.0, fn=1.0, fp=0.11)
    best_early = optimise_profile([sweep_file(ts, early, window)], prof)
    best_late = optimise_profile([sweep_file(ts, late, window)], prof)
    assert best_early.raw == pytest.approx(1.0)
    assert 0 < best_late.raw < best_early.raw
    nothing = optimise_profile([sweep_file(ts, np.zeros(n), window)], prof)
    assert nothing.raw == pytest.approx(-1.0) and nothing.normalized == pytest.approx(0.0)


def test_false_positive_far_from_windows_costs_full_fp_weight_and_probation_is_ignored():
    n = 1000
    ts = _ts(n)
    window = [(ts[800], ts[849])]
    scores = np.zeros(n)
    scores[800] = 1.0
    scores[300] = 1.0  # FP before any window: full cost
    scores[10] = 1.0  # inside probation: ignored
    res = optimise_profile([sweep_file(ts, scores, window)], CostProfile(1.0, 1.0, 0.11))
    assert res.raw == pytest.approx(1.0 - 0.11)
    assert res.fp == 1


def test_fixed_threshold_counts_scores_at_or_above_it():
    n = 1000
    ts = _ts(n)
    window = [(ts[800], ts[849])]
    scores = np.zeros(n)
    scores[300] = 0.5  # an FP exactly at 0.5
    scores[800] = 0.7
    prof = CostProfile(1.0, 1.0, 0.11)
    sweep = [sweep_file(ts, scores, window)]
    at_half = score_at_threshold(sweep, prof, 0.5)
    above_half = score_at_threshold(sweep, prof, float(np.nextafter(0.5, 1.0)))
    assert (at_half.tp, at_half.fp, at_half.fn) == (1, 1, 0)
    assert (above_half.tp, above_half.fp, above_half.fn) == (1, 0, 0)
    assert above_half.raw == pytest.approx(1.0) and at_half.raw == pytest.approx(1.0 - 0.11)
    nothing = score_at_threshold(sweep, prof, 0.9)
    assert (nothing.tp, nothing.fn) == (0, 1) and nothing.raw == pytest.approx(-1.0)


def test_leave_one_category_out_scores_each_category_at_the_others_threshold():
    n = 1000
    ts = _ts(n)
    window = [(ts[800], ts[849])]
    windows = {"a/x.csv": window, "b/y.csv": window, "c/z.csv": window}
    a = np.zeros(n)
    a[800] = 0.9  # category a detects at 0.9
    b = np.zeros(n)
    b[800] = 0.9
    c = np.zeros(n)
    c[800] = 0.6  # category c only reaches 0.6, with an FP at 0.6 elsewhere
    c[300] = 0.6
    results = {"a/x.csv": (ts, a), "b/y.csv": (ts, b), "c/z.csv": (ts, c)}
    prof = CostProfile(1.0, 1.0, 0.11)
    held = leave_one_category_out(sweep_corpus(results, windows), prof)
    # Thresholds chosen on {a, b} are 0.9: c, held out, detects nothing.
    assert held.categories["c"].threshold == pytest.approx(0.9)
    assert held.categories["c"].fn == 1 and held.categories["c"].normalized == pytest.approx(0.0)
    # Chosen on {b, c}: 0.6 (both windows found, one FP) beats 0.9 (c missed); a detects at 0.6.
    assert held.categories["a"].threshold == pytest.approx(0.6)
    assert held.categories["a"].normalized == pytest.approx(100.0)
    assert held.pooled.raw == pytest.approx(1.0 + 1.0 - 1.0)
    assert held.category_mean == pytest.approx(200.0 / 3)
