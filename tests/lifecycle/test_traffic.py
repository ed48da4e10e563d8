"""Traffic router: weighted split within statistical bounds, stickiness, minimal movement, rollback."""
from __future__ import annotations

import math
import random

import pytest

from inference_server.serving.traffic import Split, TrafficError, TrafficRouter

N_USERS = 20_000


def binomial_bound(n: int, p: float, z: float = 5.0) -> float:
    """A 5-sigma band: a correct router falls outside it with probability ~6e-7."""
    return z * math.sqrt(n * p * (1 - p))


def router(weights, shadow=()) -> TrafficRouter:
    return TrafficRouter("minilm", Split.of(weights, shadow), rng=random.Random(7))


@pytest.mark.parametrize("weights", [{"1": 90, "2": 10}, {"1": 50, "2": 50}, {"1": 70, "2": 20, "3": 10}])
def test_sticky_users_follow_the_weights(weights):
    r = router(weights)
    counts = {v: 0 for v in weights}
    for i in range(N_USERS):
        counts[r.route(f"user-{i}")] += 1
    total = sum(weights.values())
    for version, weight in weights.items():
        p = weight / total
        assert abs(counts[version] - N_USERS * p) <= binomial_bound(N_USERS, p), (version, counts)


def test_anonymous_requests_follow_the_weights():
    r = router({"1": 80, "2": 20})
    counts = {"1": 0, "2": 0}
    for _ in range(N_USERS):
        counts[r.route(None)] += 1
    assert abs(counts["2"] - N_USERS * 0.2) <= binomial_bound(N_USERS, 0.2)
    # anonymous draws are random: not all the same version
    assert counts["1"] and counts["2"]


def test_a_user_always_gets_the_same_version():
    r = router({"1": 50, "2": 50})
    for i in range(500):
        first = r.route(f"u{i}")
        assert all(r.route(f"u{i}") == first for _ in range(5))


def test_changing_weights_moves_only_the_necessary_users():
    r = router({"1": 90, "2": 10})
    before = {i: r.route(f"u{i}") for i in range(N_USERS)}
    r.set_weights({"1": 80, "2": 20})
    after = {i: r.route(f"u{i}") for i in range(N_USERS)}
    moved = [i for i in before if before[i] != after[i]]
    # Only users of version 1 move, and only to version 2 (no churn the other way).
    assert all(before[i] == "1" and after[i] == "2" for i in moved)
    expected = N_USERS * 0.10
    assert abs(len(moved) - expected) <= binomial_bound(N_USERS, 0.10)


def test_adding_a_version_takes_users_from_all_others_proportionally():
    r = router({"1": 50, "2": 50})
    before = {i: r.route(f"u{i}") for i in range(N_USERS)}
    r.set_weights({"1": 45, "2": 45, "3": 10})
    after = {i: r.route(f"u{i}") for i in range(N_USERS)}
    moved = [i for i in before if before[i] != after[i]]
    assert all(after[i] == "3" for i in moved)


def test_route_skips_versions_that_are_not_ready_and_falls_back_to_stable():
    r = router({"1": 100})
    r.set_weights({"1": 50, "2": 50})
    assert {r.route(f"u{i}", ready={"1"}) for i in range(200)} == {"1"}
    r.set_weights({"2": 100})  # single-version split: becomes stable
    r.set_weights({"2": 60, "3": 40})
    # neither the live split {2, 3} nor the latest stable split {2} has a ready version
    assert r.route("u1", ready={"1"}) is None
    assert r.route("u1", ready={"3"}) == "3"
    assert r.route("u1", ready=set()) is None


def test_shadow_targets_only_ready_shadow_versions():
    r = router({"1": 100}, shadow=["2", "3"])
    assert r.shadow_targets(ready={"1", "2"}) == ["2"]
    assert r.shadow_targets() == ["2", "3"]


def test_promote_and_rollback_to_previous_stable_split():
    r = router({"1": 100})
    r.set_weights({"1": 90, "2": 10})
    r.set_weights({"1": 50, "2": 50})
    assert r.rollback().weights == {"1": 1.0}          # canary steps are not stable
    r.set_weights({"1": 90, "2": 10})
    r.promote("2")
    assert r.split.weights == {"2": 1.0}
    assert r.rollback().weights == {"1": 1.0}          # undo the promote
    with pytest.raises(TrafficError):
        r.rollback()                                   # nothing older


def test_drain_renormalises_and_is_idempotent():
    r = router({"1": 100})
    r.set_weights({"1": 70, "2": 20, "3": 10})
    split, changed = r.drain("3")
    assert changed and split.weights == pytest.approx({"1": 70 / 90, "2": 20 / 90})
    split2, changed2 = r.drain("3")
    assert not changed2 and split2 is split


def test_drain_of_the_only_live_version_restores_a_stable_split_without_it():
    r = router({"1": 100})
    r.set_weights({"2": 100})                           # stable: all traffic on 2
    split, changed = r.drain("2")
    assert changed and split.weights == {"1": 1.0}
    r2 = router({"1": 100})
    with pytest.raises(TrafficError):
        r2.drain("1")


@pytest.mark.parametrize("weights", [{}, {"1": -1}, {"1": 0}, {"1": float("nan")}, {"1": "x"}, {"1": True}, [1]])
def test_invalid_weights_are_rejected(weights):
    with pytest.raises(TrafficError):
        Split.of(weights)


def test_a_version_cannot_be_both_live_and_shadow():
    with pytest.raises(TrafficError, match="shadow"):
        Split.of({"1": 1}, ["1"])


def test_forget_drops_unloaded_versions_from_rollback_history():
    r = router({"1": 100})
    r.promote("2")
    r.forget("1")
    with pytest.raises(TrafficError):
        r.rollback()
