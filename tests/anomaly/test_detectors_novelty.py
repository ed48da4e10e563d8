"""The ensemble's novelty rule: a value outside the robust range seen so far is an anomaly."""
from __future__ import annotations

import numpy as np
import pytest

from exporter.anomaly.detectors import build_detector
from exporter.anomaly.detectors.ensemble import NOVELTY_SCORE

# Make the deviation term negligible (an absurdly small nominal rate) to isolate the novelty rule.
NOVELTY_ONLY = {"window": 16, "period": 0, "history": 50, "holdoff": 0, "rate": 1e-300}


def history_with_freak(seed: int = 0) -> np.ndarray:
    """Noise in [0, 10] with one freak value of 100: the robust range is about [0, 10]."""
    rng = np.random.default_rng(seed)
    h = rng.uniform(0.0, 10.0, 300)
    h[150] = 100.0
    return h


def fitted(**params):
    det = build_detector("ensemble", {**NOVELTY_ONLY, **params.pop("params", {})}, **params)
    det.fit(history_with_freak())
    return det


def test_value_beyond_the_second_largest_is_novel_despite_one_freak_value():
    det = fitted()
    out = det.score(np.array([5.0, 14.0, -4.0]))
    assert out.score[0] < 1
    assert out.score[1] >= NOVELTY_SCORE  # above 10 + 5% of the range, although below the freak 100
    assert out.score[2] >= NOVELTY_SCORE  # below 0 - 5% of the range


def test_novelty_score_grows_with_the_distance_beyond_the_range():
    near, far = fitted().score(np.array([14.0])).score[0], fitted().score(np.array([40.0])).score[0]
    assert NOVELTY_SCORE <= near < far


def test_rank_one_is_numentas_full_range():
    det = fitted(params={"novelty_rank": 1})
    out = det.score(np.array([14.0, 120.0]))
    assert out.score[0] < 1  # masked by the freak value, as in Numenta's detector
    assert out.score[1] >= NOVELTY_SCORE


def test_values_within_the_tolerance_are_not_novel():
    det = fitted()
    top2 = np.sort(history_with_freak())[-2]
    assert det.score(np.array([top2 + 0.01 * top2])).score[0] < 1


def test_range_includes_points_scored_since_the_fit():
    det = fitted()
    assert det.score(np.array([30.0])).score[0] >= NOVELTY_SCORE
    # 30 and the freak 100 are now the two largest values: 30 again is not new, 40 is.
    assert det.score(np.array([30.0])).score[0] < 1
    assert det.score(np.array([40.0])).score[0] >= NOVELTY_SCORE


def test_direction_limits_the_novelty_side():
    assert fitted(direction="above").score(np.array([-4.0])).score[0] < 1
    assert fitted(direction="above").score(np.array([14.0])).score[0] >= NOVELTY_SCORE
    assert fitted(direction="below").score(np.array([14.0])).score[0] < 1
    assert fitted(direction="below").score(np.array([-4.0])).score[0] >= NOVELTY_SCORE


def test_novelty_can_be_switched_off_and_respects_min_deviation():
    assert fitted(params={"novelty_tolerance": None}).score(np.array([14.0])).score[0] < 1
    assert fitted(min_deviation=50.0).score(np.array([14.0])).score[0] < 1


def test_holdoff_keeps_a_continuing_novelty_from_re_alerting():
    det = fitted(params={"holdoff": 10})
    out = det.score(np.array([30.0, 45.0, 60.0]))  # each one novel
    assert out.score[0] > 1
    assert (out.score[1:] <= 1).all()
    assert fitted().score(np.array([30.0, 45.0, 60.0])).score.min() >= NOVELTY_SCORE  # no hold-off


@pytest.mark.parametrize("params", [{"novelty_tolerance": -0.1}, {"novelty_rank": 0},
                                    {"novelty_rank": 1.5}])
def test_bad_novelty_parameters_are_rejected(params):
    with pytest.raises(ValueError):
        build_detector("ensemble", params)


def test_band_ends_at_the_novelty_limits():
    top2, bottom2 = np.sort(history_with_freak())[[-2, 1]]
    margin = 0.05 * (top2 - bottom2)
    out = fitted().score(np.array([5.0]))
    assert out.lower[0] <= out.expected[0] <= out.upper[0]
    assert bottom2 - margin - 1e-9 <= out.lower[0] and out.upper[0] <= top2 + margin + 1e-9
    # Just outside the band on either side the score exceeds 1.
    assert fitted().score(np.array([out.upper[0] + 0.01])).score[0] > 1
    assert fitted().score(np.array([out.lower[0] - 0.01])).score[0] > 1
