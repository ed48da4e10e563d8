"""The cascade click model: relevance drives clicks, position bias comes from examination."""
import random

import pytest

from loadgen.config import ShopperConfig
from loadgen.shopper import attractiveness, simulate_session


def clicks_by_position(results, relevance, cfg, n=4000, seed=1):
    rng = random.Random(seed)
    counts = [0] * len(results)
    events_total = []
    for _ in range(n):
        events = simulate_session(results, lambda pid: relevance[pid], lambda pid: 10.0, cfg, rng)
        events_total.extend(events)
        for ev in events:
            if ev.type == "click":
                counts[ev.position - 1] += 1
    return counts, events_total


def test_attractiveness_grows_with_relevance():
    cfg = ShopperConfig()
    values = [attractiveness(r, cfg) for r in (0.0, 0.33, 0.66, 1.0)]
    assert values == sorted(values) and values[0] == pytest.approx(cfg.noise_click_probability)
    assert values[-1] == pytest.approx(cfg.max_click_probability)


def test_better_ranking_earns_more_clicks():
    cfg = ShopperConfig()
    relevance = {f"p{i}": (1.0 if i < 3 else 0.0) for i in range(10)}
    good = [f"p{i}" for i in range(10)]
    bad = list(reversed(good))
    good_clicks, _ = clicks_by_position(good, relevance, cfg)
    bad_clicks, _ = clicks_by_position(bad, relevance, cfg)
    assert sum(good_clicks) > 1.5 * sum(bad_clicks)


def test_position_bias_same_relevance_everywhere():
    cfg = ShopperConfig(satisfaction_probability=0.0)
    relevance = {f"p{i}": 0.5 for i in range(10)}
    counts, _ = clicks_by_position([f"p{i}" for i in range(10)], relevance, cfg)
    assert counts[0] > counts[4] > counts[9]


def test_irrelevant_results_get_only_noise_clicks_and_no_orders():
    cfg = ShopperConfig(noise_click_probability=0.0)
    relevance = {f"p{i}": 0.0 for i in range(10)}
    counts, events = clicks_by_position(list(relevance), relevance, cfg, n=500)
    assert sum(counts) == 0 and events == []


def test_funnel_order_and_prices():
    cfg = ShopperConfig(add_to_cart_probability=1.0, purchase_probability=1.0, satisfaction_probability=1.0,
                        max_click_probability=1.0)
    events = simulate_session(["a", "b"], lambda pid: 1.0, lambda pid: 12.5, cfg, random.Random(0))
    assert [(e.type, e.product_id, e.position) for e in events] == [
        ("click", "a", 1), ("add_to_cart", "a", 1), ("purchase", "a", 1)]
    assert events[0].price is None and events[2].price == 12.5
