"""POST /v1/feedback over HTTP: joins, dedup, expiry, and a replayed event log checked against an offline
recomputation of every business counter and the online ranking-quality figures (MRR, NDCG)."""
from __future__ import annotations

import asyncio
import math
import random
from collections import Counter, defaultdict

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.lifecycle.conftest import sample

TTL = 2.0


async def wait_until_window_empty(client, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(client.lifecycle.feedback) and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert len(client.lifecycle.feedback) == 0


async def test_join_dedup_unknown_and_expired(lifecycle_client):
    client = await lifecycle_client(feedback={"ttl_s": TTL})
    resp = await client.post("/v1/search", json={"query": "cordless drill", "k": 5}, headers={"X-Request-ID": "req-a"})
    served = await resp.json()
    clicked = served["results"][1]["id"]
    event = {"request_id": "req-a", "event_id": "ev-1", "type": "click", "product_id": clicked}
    first = await client.post("/v1/feedback", json=event, headers=client.feedback_auth)
    assert first.status == 200 and await first.json() == {"accepted": 1, "duplicates": 0, "rejected": []}
    again = await client.post("/v1/feedback", json=event, headers=client.feedback_auth)
    assert (await again.json())["duplicates"] == 1
    labels = {"endpoint": "search", "model": "minilm", "version": "1"}
    assert sample(client.registry, "business_clicks_total", **labels) == 1
    assert sample(client.registry, "business_click_position_sum", **labels) == 2

    unknown = await client.post("/v1/feedback", json={**event, "request_id": "never-served", "event_id": "ev-2"}, headers=client.feedback_auth)
    body = await unknown.json()
    assert unknown.status == 404 and body["error"]["code"] == "unknown_request"
    await wait_until_window_empty(client)
    expired = await client.post("/v1/feedback", json={**event, "event_id": "ev-3"}, headers=client.feedback_auth)
    body = await expired.json()
    assert expired.status == 410 and body["error"]["code"] == "expired_request"
    assert sample(client.registry, "inference_rejected_requests_total", endpoint="feedback", reason="unknown_request") == 1
    assert sample(client.registry, "inference_rejected_requests_total", endpoint="feedback", reason="expired_request") == 1
    assert sample(client.registry, "business_feedback_events_total", type="click", outcome="expired_request") == 1
    # the single clicked request left the window: its NDCG (one click at position 2) was observed
    assert sample(client.registry, "business_request_ndcg_count", **labels) == 1
    assert sample(client.registry, "business_request_ndcg_sum", **labels) == pytest.approx(1 / math.log2(3))


def ndcg(positions: set[int], k: int) -> float:
    dcg = sum(1 / math.log2(p + 1) for p in positions if p <= k)
    idcg = sum(1 / math.log2(i + 1) for i in range(1, min(len(positions), k) + 1))
    return dcg / idcg


async def test_replayed_event_log_matches_offline_recomputation(lifecycle_client):
    rates = {"EUR": 1.1}
    client = await lifecycle_client(feedback={"ttl_s": TTL, "currency": "USD", "rates": rates})
    auth = client.auth
    resp = await client.post("/v1/admin/models/minilm/versions/2/load", headers=auth)
    assert resp.status == 200, await resp.json()
    resp = await client.put("/v1/admin/models/minilm/traffic", json={"weights": {"1": 50, "2": 50}}, headers=auth)
    assert resp.status == 200

    rng = random.Random(11)
    products = [p.id for p in client.state.catalog.products]
    queries = ["cordless drill", "oak dining table", "white paint", "steel hammer", "garden hose", "led bulb"]
    served: dict[str, dict] = {}
    for i in range(36):
        rid = f"req-{i:03d}"
        endpoint = ("search", "rank", "recommend")[i % 3]
        if endpoint == "search":
            body = {"query": rng.choice(queries), "k": rng.choice([3, 5, 8])}
        elif endpoint == "rank":
            body = {"query": rng.choice(queries), "items": [{"id": p} for p in rng.sample(products, 6)]}
        else:
            body = {"history": rng.sample(products, 2), "k": 5}
        resp = await client.post(f"/v1/{endpoint}", json={**body, "user_id": f"u{i % 12}"}, headers={"X-Request-ID": rid})
        data = await resp.json()
        assert resp.status == 200, data
        served[rid] = {"endpoint": endpoint, "version": data["version"], "ids": [r["id"] for r in data["results"]]}
    assert {s["version"] for s in served.values()} == {"1", "2"}

    # The event log: clicks, carts and purchases (some repeated, in EUR, without price), plus noise.
    price = {p.id: p.price for p in client.state.catalog.products}
    log, eid = [], 0
    for rid, req in served.items():
        for _ in range(rng.choice([0, 1, 1, 2, 3])):
            eid += 1
            pos = rng.randint(1, len(req["ids"]))
            log.append({"request_id": rid, "event_id": f"e{eid}", "type": "click", "product_id": req["ids"][pos - 1],
                        **({"position": pos} if rng.random() < 0.5 else {})})
            if rng.random() < 0.4:
                eid += 1
                log.append({"request_id": rid, "event_id": f"e{eid}", "type": "add_to_cart",
                            "product_id": req["ids"][pos - 1]})
                if rng.random() < 0.6:
                    eid += 1
                    purchase = {"request_id": rid, "event_id": f"e{eid}", "type": "purchase",
                                "product_id": req["ids"][pos - 1]}
                    roll = rng.random()
                    if roll < 0.5:
                        purchase["price"] = price[purchase["product_id"]]
                    elif roll < 0.8:
                        purchase["price"], purchase["currency"] = round(price[purchase["product_id"]] / 1.1, 2), "EUR"
                    elif roll < 0.9:
                        purchase["price"] = round(rng.uniform(5, 300), 2)             # disagrees with the catalog
                    log.append(purchase)
    log += [dict(rng.choice(log)) for _ in range(6)]                                   # duplicates
    log += [{"request_id": "nope-1", "event_id": "x1", "type": "click", "product_id": products[0]},
            {"request_id": "req-001", "event_id": "x2", "type": "purchase", "product_id": served["req-001"]["ids"][0],
             "price": 5, "currency": "GBP"},                                              # no rate: rejected
            {"request_id": "req-002", "event_id": "x3", "type": "click", "product_id": "not-shown"}]
    rng.shuffle(log)

    # Offline recomputation of the same log.
    expected = defaultdict(Counter)
    revenue = defaultdict(float)
    rr_sum, click_pos_sum = defaultdict(float), defaultdict(float)
    clicked: dict[str, set[int]] = defaultdict(set)
    carted: dict[str, set[int]] = defaultdict(set)
    outcomes = Counter()
    seen = set()
    for e in log:
        req = served.get(e["request_id"])
        if e["event_id"] in seen:
            outcomes[(e["type"], "duplicate")] += 1
            continue
        if req is None:
            outcomes[(e["type"], "unknown_request")] += 1
            continue
        if e["product_id"] not in req["ids"]:
            outcomes[(e["type"], "not_shown")] += 1
            continue
        pos = req["ids"].index(e["product_id"]) + 1
        if e["type"] == "click" and pos in clicked[e["request_id"]]:
            outcomes[(e["type"], "repeat_click")] += 1
            continue
        if e["type"] == "add_to_cart" and pos in carted[e["request_id"]]:
            outcomes[(e["type"], "repeat_add_to_cart")] += 1
            continue
        if e.get("currency", "USD") not in ("USD", *rates):
            outcomes[(e["type"], "invalid")] += 1
            continue
        if "price" in e and not math.isclose(e["price"] * rates.get(e.get("currency"), 1.0), price[e["product_id"]],
                                             rel_tol=0.005, abs_tol=0.01):
            outcomes[(e["type"], "price_mismatch")] += 1
            continue
        seen.add(e["event_id"])
        outcomes[(e["type"], "accepted")] += 1
        key = (req["endpoint"], req["version"])
        if e["type"] == "click":
            expected[key]["clicks"] += 1
            click_pos_sum[key] += pos
            rr_sum[key] += 1 / pos
            clicked[e["request_id"]].add(pos)
        elif e["type"] == "add_to_cart":
            expected[key]["carts"] += 1
            carted[e["request_id"]].add(pos)
        else:
            expected[key]["orders"] += 1
            revenue[key] += price[e["product_id"]]
    ndcg_sum, ndcg_count = defaultdict(float), Counter()
    for rid, positions in clicked.items():
        key = (served[rid]["endpoint"], served[rid]["version"])
        ndcg_sum[key] += ndcg(positions, len(served[rid]["ids"]))
        ndcg_count[key] += 1
    for req in served.values():
        key = (req["endpoint"], req["version"])
        expected[key]["requests"] += 1
        expected[key]["impressions"] += len(req["ids"])

    # Replay through the API: batches plus a few single events.
    singles, batch = log[:3], log[3:]
    for e in singles:
        resp = await client.post("/v1/feedback", json=e, headers=client.feedback_auth)
        assert resp.status in (200, 400, 404, 409, 422), await resp.json()
    for start in range(0, len(batch), 25):
        resp = await client.post("/v1/feedback", json={"events": batch[start:start + 25]}, headers=client.feedback_auth)
        assert resp.status == 200, await resp.json()
    await wait_until_window_empty(client)

    text = await (await client.get("/metrics")).text()
    got = defaultdict(float)
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("business_"):
                got[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def metric(name, endpoint, version, **extra):
        labels = {"endpoint": endpoint, "model": "minilm", "version": version, **extra}
        return got[(name, tuple(sorted(labels.items())))]

    for (endpoint, version), counts in expected.items():
        where = (endpoint, version)
        assert metric("business_requests_served_total", endpoint, version) == counts["requests"], where
        assert metric("business_impressions_total", endpoint, version) == counts["impressions"], where
        assert metric("business_clicks_total", endpoint, version) == counts["clicks"], where
        assert metric("business_add_to_carts_total", endpoint, version) == counts["carts"], where
        assert metric("business_orders_total", endpoint, version) == counts["orders"], where
        assert metric("business_revenue_total", endpoint, version, currency="USD") == pytest.approx(revenue[where]), where
        assert metric("business_click_position_sum", endpoint, version) == pytest.approx(click_pos_sum[where]), where
        assert metric("business_click_reciprocal_rank_count", endpoint, version) == counts["clicks"], where
        if counts["clicks"]:
            mrr = metric("business_click_reciprocal_rank_sum", endpoint, version) / counts["clicks"]
            assert mrr == pytest.approx(rr_sum[where] / counts["clicks"]), where
        assert metric("business_request_ndcg_count", endpoint, version) == ndcg_count[where], where
        if ndcg_count[where]:
            mean_ndcg = metric("business_request_ndcg_sum", endpoint, version) / ndcg_count[where]
            assert mean_ndcg == pytest.approx(ndcg_sum[where] / ndcg_count[where]), where
    for (etype, outcome), n in outcomes.items():
        labels = {"type": etype, "outcome": outcome}
        assert got[("business_feedback_events_total", tuple(sorted(labels.items())))] == n, labels
    assert sum(expected[k]["clicks"] for k in expected) > 10                 # the log exercised the joins
    assert outcomes[("purchase", "accepted")] > 0 and outcomes[("click", "duplicate")] + outcomes[("purchase", "duplicate")] + outcomes[("add_to_cart", "duplicate")] > 0


async def test_forged_feedback_is_rejected_with_a_reason_and_changes_nothing(lifecycle_client):
    from tests.lifecycle.conftest import ADMIN_TOKEN, ALERTS_TOKEN

    client = await lifecycle_client()
    served = await (await client.post("/v1/search", json={"query": "cordless drill", "k": 10},
                                      headers={"X-Request-ID": "req-f"})).json()
    ids = [r["id"] for r in served["results"]]
    labels = {"endpoint": "search", "model": "minilm", "version": "1"}

    def counters():
        return {name: sample(client.registry, name, **labels) for name in
                ("business_clicks_total", "business_add_to_carts_total", "business_orders_total",
                 "business_converted_requests_total")} | {
            "revenue": sample(client.registry, "business_revenue_total", currency="USD", **labels)}

    click = {"request_id": "req-f", "event_id": "f-0", "type": "click", "product_id": ids[0]}
    for headers, status in [({}, 401), ({"Authorization": f"Bearer {ADMIN_TOKEN}"}, 403),
                            ({"Authorization": f"Bearer {ALERTS_TOKEN}"}, 403), ({"Authorization": "Bearer x"}, 403)]:
        resp = await client.post("/v1/feedback", json=click, headers=headers)
        assert resp.status == status and (await resp.json())["error"]["code"] in ("unauthorized", "forbidden")
    assert counters()["business_clicks_total"] == 0

    # 100 clicks on one 10-result answer: one per shown product counts, the rest are repeats.
    resp = await client.post("/v1/feedback", headers=client.feedback_auth, json={"events": [
        {"request_id": "req-f", "event_id": f"c-{i}", "type": "click", "product_id": ids[i % 10]} for i in range(100)]})
    answer = await resp.json()
    assert answer["accepted"] == 10 and {r["code"] for r in answer["rejected"]} == {"repeat_click"}
    before = counters()
    assert before["business_clicks_total"] == 10                      # CTR = 10 / 10 impressions, never above 1
    forged = [
        ({"event_id": "s-1", "type": "click", "product_id": ids[3]}, 409, "repeat_click"),
        ({"event_id": "s-2", "type": "add_to_cart", "product_id": "NOT-SHOWN"}, 422, "not_shown"),
        ({"event_id": "s-3", "type": "purchase", "product_id": "NOT-SHOWN", "price": 1e15}, 422, "not_shown"),
        ({"event_id": "s-4", "type": "purchase", "product_id": ids[0], "price": 1e15}, 422, "price_mismatch"),
        ({"event_id": "s-5", "type": "purchase", "product_id": ids[0], "quantity": 1000}, 422, "quantity_exceeded"),
    ]
    for extra, status, code in forged:
        resp = await client.post("/v1/feedback", json={"request_id": "req-f", **extra}, headers=client.feedback_auth)
        error = (await resp.json())["error"]
        assert (resp.status, error["code"]) == (status, code), extra
        assert error["message"]
    cart = {"request_id": "req-f", "type": "add_to_cart", "product_id": ids[1]}
    resp = await client.post("/v1/feedback", headers=client.feedback_auth,
                             json={"events": [{**cart, "event_id": f"a-{i}"} for i in range(50)]})
    assert (await resp.json())["accepted"] == 1                        # 50 carts on one product: one counts
    assert counters() == {**before, "business_add_to_carts_total": 1}   # nothing forged reached CTR or revenue
    for code in ("repeat_click", "not_shown", "price_mismatch", "quantity_exceeded", "repeat_add_to_cart"):
        assert sum(sample(client.registry, "business_feedback_events_total", type=t, outcome=code)
                   for t in ("click", "add_to_cart", "purchase")) >= 1, code


async def test_each_event_source_is_rate_limited(lifecycle_client):
    client = await lifecycle_client(feedback={"max_events_per_s": 5})
    events = [{"request_id": "nope", "event_id": f"e-{i}", "type": "click", "product_id": "p"} for i in range(5)]
    first = await client.post("/v1/feedback", json={"events": events}, headers=client.feedback_auth)
    assert first.status == 200
    resp = await client.post("/v1/feedback", json={**events[0], "event_id": "e-6"}, headers=client.feedback_auth)
    assert resp.status == 429 and (await resp.json())["error"]["code"] == "rate_limited" and resp.headers["Retry-After"]
    assert sample(client.registry, "inference_rejected_requests_total", endpoint="feedback", reason="rate_limited") == 1
