"""Feedback store: joins, dedup, expiry, capacity, currency, business metrics (no HTTP)."""
from __future__ import annotations

import math

import pytest
from prometheus_client import CollectorRegistry

from inference_server.config import ConfigError
from typed_config import parse_section
from inference_server.lifecycle.feedback import FeedbackConfig, FeedbackMetrics, FeedbackStore, ndcg_from_click_positions


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


PRICES = {"p1": 10.0, "p2": 20.0, "p3": 30.0, "p4": 40.0}   # p5 has no catalog price


def make(**cfg):
    registry = CollectorRegistry()
    clock = Clock()
    store = FeedbackStore(FeedbackConfig(**cfg), FeedbackMetrics(registry), clock=clock, price_of=PRICES.get)
    return store, registry, clock


def value(registry, name, **labels):
    return registry.get_sample_value(name, labels) or 0.0


IDS = ("p1", "p2", "p3", "p4", "p5")
L = {"endpoint": "search", "model": "minilm", "version": "1"}


def ev(eid, rid="r1", type_="click", pid="p2", **extra):
    return {"request_id": rid, "event_id": eid, "type": type_, "product_id": pid, **extra}


def test_register_counts_impressions_and_requests():
    store, reg, _ = make()
    store.register("r1", "search", "minilm", "1", IDS, 5)
    assert value(reg, "business_requests_served_total", **L) == 1
    assert value(reg, "business_impressions_total", **L) == 5
    assert value(reg, "business_feedback_store_requests") == 1


def test_click_joins_with_position_from_the_answer():
    store, reg, _ = make()
    store.register("r1", "search", "minilm", "1", IDS, 5)
    res = store.ingest([ev("e1", pid="p3")])
    assert (res.accepted, res.duplicates, res.rejected) == (1, 0, [])
    assert value(reg, "business_clicks_total", **L) == 1
    assert value(reg, "business_click_position_sum", **L) == 3
    assert value(reg, "business_click_reciprocal_rank_sum", **L) == pytest.approx(1 / 3)
    assert value(reg, "business_feedback_events_total", type="click", outcome="accepted") == 1


def test_duplicate_event_ids_count_once():
    store, reg, _ = make()
    store.register("r1", "search", "minilm", "1", IDS, 5)
    res = store.ingest([ev("e1"), ev("e1"), ev("e1", type_="purchase", price=5.0)])
    assert (res.accepted, res.duplicates) == (1, 2)
    assert value(reg, "business_clicks_total", **L) == 1
    assert value(reg, "business_orders_total", **L) == 0
    assert value(reg, "business_feedback_events_total", type="click", outcome="duplicate") == 1


def test_unknown_and_expired_requests_are_told_apart():
    store, reg, clock = make(ttl_s=60)
    store.register("r1", "search", "minilm", "1", IDS, 5)
    res = store.ingest([ev("e1", rid="nope")])
    assert res.rejected[0]["code"] == "unknown_request"
    clock.now += 61
    res = store.ingest([ev("e2")])
    assert res.rejected[0]["code"] == "expired_request"
    assert value(reg, "business_feedback_events_total", type="click", outcome="unknown_request") == 1
    assert value(reg, "business_feedback_events_total", type="click", outcome="expired_request") == 1
    assert value(reg, "business_feedback_store_requests") == 0


def test_ndcg_observed_when_the_request_leaves_the_window():
    store, reg, clock = make(ttl_s=60)
    store.register("r1", "search", "minilm", "1", IDS, 5)
    store.register("r2", "search", "minilm", "1", IDS, 5)   # no clicks: no NDCG sample
    res = store.ingest([ev("e1", pid="p2"), ev("e2", pid="p4"), ev("e3", pid="p2")])
    assert [r["code"] for r in res.rejected] == ["repeat_click"]      # one click per shown product
    assert value(reg, "business_request_ndcg_count", **L) == 0
    clock.now += 61
    assert store.sweep() == 2
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert value(reg, "business_request_ndcg_count", **L) == 1
    assert value(reg, "business_request_ndcg_sum", **L) == pytest.approx(expected)
    assert value(reg, "business_clicks_total", **L) == 2


def test_capacity_evicts_oldest_and_closes_its_window():
    store, reg, _ = make(max_requests=3)
    for i in range(5):
        store.register(f"r{i}", "search", "minilm", "1", IDS, 5)
    assert len(store) == 3
    assert store.ingest([ev("e1", rid="r0")]).rejected[0]["code"] == "expired_request"
    assert store.ingest([ev("e2", rid="r4")]).accepted == 1


def test_dedup_memory_is_bounded():
    store, _, _ = make(max_event_ids=2)
    store.register("r1", "search", "minilm", "1", IDS, 5)
    store.ingest([ev("a", pid="p1"), ev("b", pid="p2"), ev("c", pid="p3")])
    # forgotten after 2 newer ids, so no longer a duplicate, but the click on p1 still counts only once
    assert store.ingest([ev("a", pid="p1")]).rejected[0]["code"] == "repeat_click"
    assert store.ingest([ev("c", pid="p3")]).duplicates == 1


def test_revenue_is_priced_from_the_catalog_times_quantity():
    store, reg, _ = make(currency="USD", rates={"EUR": 1.1}, max_quantity=5)
    store.register("r1", "search", "minilm", "1", IDS, 5)
    res = store.ingest([
        ev("e1", type_="purchase", quantity=2),                         # catalog 20.0 x 2
        ev("e2", type_="purchase", price=20.0),                         # a client price that agrees
        ev("e3", type_="purchase", price=round(20.0 / 1.1, 2), currency="EUR"),
        ev("e4", type_="purchase", price=10.0, currency="GBP"),         # no rate
        ev("e5", type_="purchase", price=1e15),                         # forged price
        ev("e6", type_="purchase", quantity=2),                         # 2 + 1 + 1 + 2 > max_quantity 5
        ev("e7", type_="purchase", pid="p5"),                           # no catalog price: an order, no revenue
        ev("e8", type_="add_to_cart"),
    ])
    assert res.accepted == 5
    assert [(r["index"], r["code"], r["field"]) for r in res.rejected] == [
        (3, "validation", "currency"), (4, "price_mismatch", "price"), (5, "quantity_exceeded", "quantity")]
    assert "GBP" in res.rejected[0]["message"] and "feedback.rates" in res.rejected[0]["message"]
    assert value(reg, "business_revenue_total", currency="USD", **L) == pytest.approx(80.0)
    assert value(reg, "business_orders_total", **L) == 4
    assert value(reg, "business_converted_requests_total", **L) == 1       # one request converted
    assert value(reg, "business_add_to_carts_total", **L) == 1
    counts = store.counts()[("search", "minilm", "1")]
    assert (counts.orders, counts.units, counts.converted_requests, counts.revenue) == (4, 5, 1, pytest.approx(80.0))
    assert value(reg, "business_feedback_events_total", type="purchase", outcome="price_mismatch") == 1


def test_forged_engagement_cannot_push_ctr_or_conversion_over_one():
    store, reg, _ = make()
    store.register("r1", "search", "minilm", "1", IDS, 5)
    events = [ev(f"c{i}", pid=IDS[i % 5]) for i in range(100)]                       # 100 clicks on 5 results
    events += [ev(f"a{i}", type_="add_to_cart", pid="p1") for i in range(50)]         # 50 carts on one product
    events += [ev(f"b{i}", type_="purchase", pid="p9") for i in range(3)]             # never shown
    res = store.ingest(events)
    codes = [r["code"] for r in res.rejected]
    assert res.accepted == 6 and codes.count("repeat_click") == 95 and codes.count("repeat_add_to_cart") == 49
    assert codes.count("not_shown") == 3
    counts = store.counts()[("search", "minilm", "1")]
    assert counts.clicks / counts.impressions == 1.0 and counts.converted_requests == 0 and counts.revenue == 0
    assert value(reg, "business_feedback_events_total", type="click", outcome="repeat_click") == 95


@pytest.mark.parametrize("event, field", [
    ("not an object", None),
    ({"event_id": "e", "type": "click", "product_id": "p1"}, "request_id"),
    (ev("e", type_="view"), "type"),
    (ev("e", position=0), "position"),
    (ev("e", position=True), "position"),
    (ev("e", position=4), "position"),                 # p2 was shown at 2
    (ev("e", type_="purchase", price=-1), "price"),
    (ev("e", type_="purchase", price=float("inf")), "price"),
    (ev("e", type_="purchase", price=1, currency="usd"), "currency"),
    (ev("e", price=3), "price"),                       # price on a click
    (ev("e", extra=1), "extra"),
    (ev("e" * 200), "event_id"),
])
def test_invalid_events_are_rejected_with_the_field(event, field):
    store, reg, _ = make()
    store.register("r1", "search", "minilm", "1", IDS, 5)
    res = store.ingest([event])
    assert res.accepted == 0 and res.rejected[0]["code"] == "validation"
    assert res.rejected[0].get("field") == field
    assert sum(s.value for m in reg.collect() if m.name == "business_feedback_events" for s in m.samples
               if s.labels.get("outcome") == "invalid" and s.name.endswith("_total")) == 1


def test_ndcg_formula():
    assert ndcg_from_click_positions({1}, 10) == 1.0
    assert ndcg_from_click_positions({1, 2}, 10) == 1.0
    assert ndcg_from_click_positions({2}, 10) == pytest.approx(1 / math.log2(3))
    assert ndcg_from_click_positions(set(), 10) == 0.0


@pytest.mark.parametrize("cfg, key", [({"max_requests": 0}, "feedback.max_requests"),
                                      ({"ttl_s": 0}, "feedback.ttl_s"),
                                      ({"currency": "usd"}, "feedback.currency"),
                                      ({"rates": {"EUR": -1}}, "feedback.rates.EUR")])
def test_config_errors_name_the_key(cfg, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_section(FeedbackConfig, cfg, "feedback")


def test_positions_tracked_per_request_are_bounded():
    store, reg, _ = make(max_positions=3)
    store.register("r1", "rank", "minilm", "1", IDS, 5)
    assert value(reg, "business_impressions_total", endpoint="rank", model="minilm", version="1") == 5
    assert store.ingest([ev("e1", pid="p3")]).accepted == 1
    rejected = store.ingest([ev("e2", pid="p5")]).rejected[0]
    assert rejected["field"] == "product_id" and "max_positions" in rejected["message"]


def test_product_ids_are_free_form_but_bounded():
    store, _, _ = make()
    store.register("r1", "search", "minilm", "1", ("SKU 12/34", "p2"), 2)
    assert store.ingest([ev("e1", pid="SKU 12/34")]).accepted == 1
    assert store.ingest([ev("e2", pid="x" * 300)]).rejected[0]["field"] == "product_id"
