"""Feedback events joined to served requests, and the business metrics they produce.

Served search/rank/recommend answers are registered here (what was shown, by which version, at which
positions). Shopper events (`click`, `add_to_cart`, `purchase`) arriving later join them by
`request_id`. The store is bounded twice: at most `max_requests` requests, each kept for `ttl_s`
seconds (the join window). When a request leaves the window (expiry or eviction by capacity) its
ranking quality is final and NDCG@k from its click positions is observed. Event ids are deduplicated in
a bounded, time-limited set, and ids of requests that left the window are remembered (bounded) so a
late event gets `expired_request` rather than `unknown_request`.

The counts steer canary rollbacks, so they are hard to forge (docs/lifecycle.md): an event must name a
product shown in that answer (`not_shown`); a (request, product) pair counts at most one click and one
add-to-cart (`repeat_click`, `repeat_add_to_cart`) and at most `max_quantity` units purchased
(`quantity_exceeded`); revenue is the catalog price times the quantity, never the client's figure (a
client price that disagrees is `price_mismatch`). So clicks <= impressions and converted requests <=
served requests: CTR and conversion cannot exceed 1. `counts()` is the public, documented view of the
per-version counters for other modules (the A/B statistics).

Everything runs on the event loop thread: no locks, O(1) work per event.
"""
from __future__ import annotations

import math
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from inference_server.api.schemas import EVENT_TYPES, FeedbackEvent, validate_body
from inference_server.config import FeedbackConfig
from inference_server.errors import ApiError

__all__ = [
    "AcceptedEvent",
    "EVENT_TYPES",
    "FeedbackCounts",
    "FeedbackConfig",
    "FeedbackMetrics",
    "FeedbackResult",
    "FeedbackStore",
    "ServedRequest",
    "ndcg_from_click_positions",
]


CLICK_POSITION_BUCKETS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15, 20, 50)
RECIPROCAL_RANK_BUCKETS = (0.02, 0.05, 0.1, 0.2, 0.25, 1 / 3, 0.5, 1.0)
NDCG_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)
PRICE_TOLERANCE = 0.005   # a client price within 0.5 % of the catalog's (after conversion) is consistent


class FeedbackMetrics:
    """The `business_*` metrics of docs/metrics.md on an explicit registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ev = ("endpoint", "model", "version")
        self.impressions = Counter("business_impressions_total", "Products shown (one per returned result).", ev, registry=registry)
        self.requests_served = Counter("business_requests_served_total", "Served requests registered for feedback joins.", ev, registry=registry)
        self.clicks = Counter("business_clicks_total", "Click events joined to a served request.", ev, registry=registry)
        self.add_to_carts = Counter("business_add_to_carts_total", "Add-to-cart events joined to a served request.", ev, registry=registry)
        self.orders = Counter("business_orders_total", "Purchase events joined to a served request.", ev, registry=registry)
        self.converted = Counter("business_converted_requests_total", "Served requests with at least one purchase (conversion = this / requests served).", ev, registry=registry)
        self.revenue = Counter("business_revenue_total", "Purchase value in the configured currency.", (*ev, "currency"), registry=registry)
        self.click_position = Histogram("business_click_position", "1-based position of clicked products.", ev,
                                        buckets=CLICK_POSITION_BUCKETS, registry=registry)
        self.reciprocal_rank = Histogram("business_click_reciprocal_rank", "1/position per click; MRR = sum / count.", ev,
                                         buckets=RECIPROCAL_RANK_BUCKETS, registry=registry)
        self.request_ndcg = Histogram("business_request_ndcg", "NDCG@k of a request from its click positions, observed when it leaves the join window.",
                                      ev, buckets=NDCG_BUCKETS, registry=registry)
        self.events = Counter("business_feedback_events_total", "Feedback events by type and outcome.", ("type", "outcome"), registry=registry)
        self.store_requests = Gauge("business_feedback_store_requests", "Served requests held for joins.", registry=registry)
        self._children: dict[tuple[str, str, str], _Children] = {}
        self._event_children: dict[tuple[str, str], Any] = {}

    def of(self, endpoint: str, model: str, version: str) -> "_Children":
        """The labelled series of one (endpoint, model, version), resolved once (labels() is slow)."""
        key = (endpoint, model, version)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = _Children(
                self.impressions.labels(*key), self.requests_served.labels(*key), self.clicks.labels(*key),
                self.add_to_carts.labels(*key), self.orders.labels(*key), self.converted.labels(*key),
                self.click_position.labels(*key),
                self.reciprocal_rank.labels(*key), self.request_ndcg.labels(*key))
        return children

    def event(self, kind: str, outcome: str):
        key = (kind, outcome)
        child = self._event_children.get(key)
        if child is None:
            child = self._event_children[key] = self.events.labels(kind, outcome)
        return child


@dataclass(frozen=True, slots=True)
class _Children:
    impressions: Any
    requests_served: Any
    clicks: Any
    add_to_carts: Any
    orders: Any
    converted: Any
    click_position: Any
    reciprocal_rank: Any
    request_ndcg: Any


@dataclass(slots=True)
class FeedbackCounts:
    """Counts of one (endpoint, model, version) since start: the same numbers as the `business_*`
    counters. Public interface (read by the A/B statistics): clicks <= impressions and
    converted_requests <= requests_served by construction."""

    impressions: int = 0
    requests_served: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    orders: int = 0
    units: int = 0
    converted_requests: int = 0
    revenue: float = 0.0


@dataclass(slots=True)
class ServedRequest:
    """What one answer showed; product ids are shared references to the catalog's strings."""

    endpoint: str
    model: str
    version: str
    product_ids: tuple[str, ...]
    k: int
    served_at: float                          # store clock (monotonic) at registration
    clicked: Optional[set[int]] = None        # distinct clicked positions, created on first click
    carted: Optional[set[int]] = None         # positions added to the cart
    bought: Optional[dict[int, int]] = None   # position -> units purchased

    def position_of(self, product_id: str) -> Optional[int]:
        try:
            return self.product_ids.index(product_id) + 1
        except ValueError:
            return None


@dataclass(frozen=True, slots=True)
class AcceptedEvent:
    """One counted event with its served request's facts: what the request log records (click log input)."""

    request_id: str
    event_id: str
    type: str
    product_id: str
    position: int                 # 1-based, checked against the answer
    endpoint: str
    model: str
    version: str


@dataclass
class FeedbackResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[dict[str, Any]] = field(default_factory=list)
    accepted_events: list[AcceptedEvent] = field(default_factory=list)   # not part of the HTTP answer

    def as_json(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates, "rejected": self.rejected}


class EventRejected(Exception):
    """One event that cannot be counted; `code` is a feedback outcome / API error code."""

    def __init__(self, code: str, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


def ndcg_from_click_positions(positions: set[int] | frozenset[int], k: int) -> float:
    """NDCG@k with binary gains: clicked positions are relevant, the ideal puts all clicks on top."""
    hits = sorted(p for p in positions if 1 <= p <= k)
    if not hits:
        return 0.0
    dcg = sum(1.0 / math.log2(p + 1) for p in hits)
    idcg = sum(1.0 / math.log2(i + 1) for i in range(1, len(hits) + 1))
    return dcg / idcg


class FeedbackStore:
    """Bounded, time-limited join window of served requests plus the event join."""

    def __init__(self, config: FeedbackConfig, metrics: FeedbackMetrics,
                 clock: Callable[[], float] = time.monotonic,
                 price_of: Callable[[str], Optional[float]] = lambda product_id: None) -> None:
        self.config = config
        self.metrics = metrics
        self._clock = clock
        self._price_of = price_of      # catalog unit price in `config.currency` (None: unpriced)
        self._counts: dict[tuple[str, str, str], FeedbackCounts] = {}
        self._requests: OrderedDict[str, ServedRequest] = OrderedDict()   # insertion = expiry order
        self._event_ids: OrderedDict[str, float] = OrderedDict()          # event id -> seen at
        self._expired: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._requests)

    def counts(self) -> dict[tuple[str, str, str], FeedbackCounts]:
        """A copy of the counts per (endpoint, model, version), e.g. for per-version A/B statistics."""
        return {key: FeedbackCounts(**{f: getattr(c, f) for f in FeedbackCounts.__slots__})
                for key, c in self._counts.items()}

    def _count(self, endpoint: str, model: str, version: str) -> FeedbackCounts:
        key = (endpoint, model, version)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = FeedbackCounts()
        return counts

    # ---- served requests -----------------------------------------------------------------------
    def register(self, request_id: str, endpoint: str, model: str, version: str,
                 product_ids: tuple[str, ...] | list[str], k: int) -> None:
        """Remember an answer for joins and count its impressions."""
        now = self._clock()
        self._sweep(now)
        shown = len(product_ids)
        ids = tuple(product_ids[:self.config.max_positions])
        if request_id in self._requests:          # a client reused its X-Request-ID: the newest wins
            self._leave(request_id, self._requests.pop(request_id))
        while len(self._requests) >= self.config.max_requests:
            old_id, old = self._requests.popitem(last=False)
            self._leave(old_id, old)
        self._requests[request_id] = ServedRequest(endpoint, model, version, ids,
                                                   min(int(k), self.config.max_positions), now)
        series = self.metrics.of(endpoint, model, version)
        series.requests_served.inc()
        counts = self._count(endpoint, model, version)
        counts.requests_served += 1
        if shown:
            series.impressions.inc(shown)
            counts.impressions += shown
        self.metrics.store_requests.set(len(self._requests))

    def sweep(self) -> int:
        """Expire requests whose join window has ended; returns how many left."""
        return self._sweep(self._clock())

    def flush(self) -> None:
        """Close every join window now (shutdown): NDCG of clicked requests is observed."""
        while self._requests:
            rid, req = self._requests.popitem(last=False)
            self._leave(rid, req)
        self.metrics.store_requests.set(0)

    def _sweep(self, now: float) -> int:
        horizon = now - self.config.ttl_s
        left = 0
        requests = self._requests
        while requests:
            rid, req = next(iter(requests.items()))
            if req.served_at > horizon:
                break
            requests.popitem(last=False)
            self._leave(rid, req)
            left += 1
        events = self._event_ids
        while events:
            eid, seen = next(iter(events.items()))
            if seen > horizon:
                break
            events.popitem(last=False)
        if left:
            self.metrics.store_requests.set(len(requests))
        return left

    def _leave(self, request_id: str, req: ServedRequest) -> None:
        if req.clicked:
            self.metrics.of(req.endpoint, req.model, req.version).request_ndcg.observe(
                ndcg_from_click_positions(req.clicked, max(req.k, len(req.product_ids))))
        if self.config.max_expired_ids:
            self._expired[request_id] = None
            self._expired.move_to_end(request_id)
            while len(self._expired) > self.config.max_expired_ids:
                self._expired.popitem(last=False)

    # ---- events --------------------------------------------------------------------------------
    def ingest(self, events: list[Any]) -> FeedbackResult:
        """Join a batch of raw (decoded JSON) events; each one is accepted, a duplicate or rejected."""
        now = self._clock()
        self._sweep(now)
        result = FeedbackResult()
        for index, raw in enumerate(events):
            kind = raw.get("type") if isinstance(raw, dict) and raw.get("type") in EVENT_TYPES else "unknown"
            try:
                accepted = self._ingest_one(raw, now)
            except EventRejected as exc:
                outcome = "invalid" if exc.code == "validation" else exc.code
                entry = {"index": index, "code": exc.code, "message": exc.message}
                if exc.field:
                    entry["field"] = exc.field
                result.rejected.append(entry)
            else:
                if accepted is None:
                    outcome = "duplicate"
                    result.duplicates += 1
                else:
                    outcome = "accepted"
                    result.accepted += 1
                    result.accepted_events.append(accepted)
            self.metrics.event(kind, outcome).inc()
        return result

    def _ingest_one(self, raw: Any, now: float) -> Optional[AcceptedEvent]:
        """The accepted event, None for a duplicate; raises `EventRejected`."""
        event = self._validate(raw)
        event_id = event["event_id"]
        if event_id in self._event_ids:
            return None
        rid = event["request_id"]
        req = self._requests.get(rid)
        if req is None:
            if rid in self._expired:
                raise EventRejected("expired_request", f"request {rid} left the {self.config.ttl_s:g} s join window", "request_id")
            raise EventRejected("unknown_request", f"request {rid} was not served by this server (or is too old to remember)", "request_id")
        position = self._position(event, req)
        kind = event["type"]
        if kind == "click" and req.clicked and position in req.clicked:
            raise EventRejected("repeat_click", f"product {event['product_id']} of request {rid} was already "
                                "clicked; one click per shown product counts", "product_id")
        if kind == "add_to_cart" and req.carted and position in req.carted:
            raise EventRejected("repeat_add_to_cart", f"product {event['product_id']} of request {rid} was already "
                                "added to the cart; one add-to-cart per shown product counts", "product_id")
        units = event.get("quantity") or 1
        if kind == "purchase":
            bought = (req.bought or {}).get(position, 0)
            if bought + units > self.config.max_quantity:
                raise EventRejected("quantity_exceeded", f"{bought} + {units} units of product {event['product_id']} "
                                    f"bought from request {rid} is over feedback.max_quantity "
                                    f"({self.config.max_quantity})", "quantity")
            value = self._revenue(event, units)
        series = self.metrics.of(req.endpoint, req.model, req.version)
        counts = self._count(req.endpoint, req.model, req.version)
        if kind == "click":
            series.clicks.inc()
            counts.clicks += 1
            series.click_position.observe(position)
            series.reciprocal_rank.observe(1.0 / position)
            if req.clicked is None:
                req.clicked = set()
            req.clicked.add(position)
        elif kind == "add_to_cart":
            series.add_to_carts.inc()
            counts.add_to_carts += 1
            if req.carted is None:
                req.carted = set()
            req.carted.add(position)
        else:
            series.orders.inc()
            counts.orders += 1
            counts.units += units
            if not req.bought:
                req.bought = {}
                series.converted.inc()
                counts.converted_requests += 1
            req.bought[position] = req.bought.get(position, 0) + units
            if value:
                counts.revenue += value
                self.metrics.revenue.labels(req.endpoint, req.model, req.version, self.config.currency).inc(value)
        self._event_ids[event_id] = now
        while len(self._event_ids) > self.config.max_event_ids:
            self._event_ids.popitem(last=False)
        return AcceptedEvent(rid, event_id, kind, event["product_id"], position, req.endpoint, req.model, req.version)

    @staticmethod
    def _validate(raw: Any) -> dict[str, Any]:
        """The event checked against `FeedbackEvent` (the documented body), absent fields left out."""
        if not isinstance(raw, dict):
            raise EventRejected("validation", "an event must be a JSON object")
        try:
            return validate_body(FeedbackEvent, raw)
        except ApiError as exc:
            raise EventRejected("validation", exc.message, exc.field) from None

    def _position(self, event: Mapping[str, Any], req: ServedRequest) -> int:
        """The 1-based position of the event's product in the answer (every event needs one)."""
        shown_at = req.position_of(event["product_id"])
        given = event.get("position")
        if given is not None and shown_at is not None and given != shown_at:
            raise EventRejected("validation", f"position {given} does not match product {event['product_id']} shown at position {shown_at}", "position")
        if given is not None and shown_at is None:
            raise EventRejected("validation", f"product {event['product_id']} was not shown at position {given}", "position")
        if shown_at is None:
            limit = self.config.max_positions
            where = (f"the first {limit} results (feedback.max_positions)" if len(req.product_ids) >= limit
                     else "the request's results")
            raise EventRejected("not_shown", f"{event['type']} product {event['product_id']} was not among {where}",
                                "product_id")
        return shown_at

    def _revenue(self, event: Mapping[str, Any], units: int) -> Optional[float]:
        """Catalog price x units; a client price, when given, only has to agree with the catalog's."""
        catalog_price = self._price_of(event["product_id"])
        price = event.get("price")
        if price is None:
            if event.get("currency") is not None:
                raise EventRejected("validation", "currency given without price", "currency")
        else:
            currency = event.get("currency") or self.config.currency
            rate = 1.0 if currency == self.config.currency else self.config.rates.get(currency)
            if rate is None:
                accepted = ", ".join([self.config.currency, *sorted(self.config.rates)])
                raise EventRejected("validation", f"currency {currency} is not accepted (accepted: {accepted}); "
                                    "add a rate under feedback.rates to convert it", "currency")
            claimed = float(price) * rate
            if catalog_price is None or not math.isclose(claimed, catalog_price, rel_tol=PRICE_TOLERANCE, abs_tol=0.01):
                listed = "has no catalog price" if catalog_price is None else \
                    f"costs {catalog_price:.2f} {self.config.currency} in the catalog"
                raise EventRejected("price_mismatch", f"price {price} {currency} does not match: product "
                                    f"{event['product_id']} {listed}; revenue comes from the catalog", "price")
        return None if catalog_price is None else catalog_price * units
