"""Running tallies for the live summary: status codes, latency percentiles and CTR by model version."""
from __future__ import annotations

import time
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from typing import Optional


FEEDBACK = "feedback"


@dataclass
class VersionTally:
    requests: int = 0
    impressions: int = 0
    clicks: int = 0
    add_to_carts: int = 0
    orders: int = 0
    revenue: float = 0.0

    @property
    def ctr(self) -> float:
        return self.clicks / self.impressions if self.impressions else 0.0

    def as_dict(self) -> dict:
        return {"requests": self.requests, "impressions": self.impressions, "clicks": self.clicks,
                "add_to_carts": self.add_to_carts, "orders": self.orders,
                "revenue": round(self.revenue, 2), "ctr": round(self.ctr, 4)}


def percentile(values: list[float], q: float) -> Optional[float]:
    """Nearest-rank percentile (q in [0, 100]); None for no data."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


@dataclass
class Stats:
    """Everything the simulator has seen; `window_s` bounds the latency samples kept for percentiles."""

    window_s: float = 30.0
    started: float = field(default_factory=time.monotonic)
    requests: Counter = field(default_factory=Counter)  # (endpoint, status) -> n
    versions: dict = field(default_factory=lambda: defaultdict(VersionTally))
    feedback: Counter = field(default_factory=Counter)  # accepted / duplicates / rejected / failed
    dropped: int = 0
    latencies: deque = field(default_factory=deque)  # (t, endpoint, seconds)

    def record_request(self, endpoint: str, status: str, latency_s: float) -> None:
        now = time.monotonic()
        self.requests[(endpoint, status)] += 1
        self.latencies.append((now, endpoint, latency_s))
        while self.latencies and self.latencies[0][0] < now - self.window_s:
            self.latencies.popleft()

    def record_served(self, version: str, shown: int) -> None:
        tally = self.versions[version]
        tally.requests += 1
        tally.impressions += shown

    def record_event(self, version: str, kind: str, price: Optional[float]) -> None:
        tally = self.versions[version]
        if kind == "click":
            tally.clicks += 1
        elif kind == "add_to_cart":
            tally.add_to_carts += 1
        elif kind == "purchase":
            tally.orders += 1
            tally.revenue += price or 0.0

    def total_requests(self) -> int:
        """Shopper requests (search, rank, recommend); feedback posts are counted apart."""
        return sum(n for (ep, _), n in self.requests.items() if ep != FEEDBACK)

    def status_counts(self, feedback: bool = False) -> Counter:
        out: Counter = Counter()
        for (ep, status), n in self.requests.items():
            if (ep == FEEDBACK) == feedback:
                out[status] += n
        return out

    def latency_percentile(self, q: float, endpoint: Optional[str] = None) -> Optional[float]:
        """Latency percentile of shopper requests (or of one endpoint) over the last `window_s`."""
        return percentile([s for _, ep, s in self.latencies
                           if (ep == endpoint if endpoint else ep != FEEDBACK)], q)

    def snapshot(self) -> dict:
        """A JSON-friendly summary (also the simulator's /status and --summary-json output)."""
        elapsed = time.monotonic() - self.started
        p50, p95 = self.latency_percentile(50), self.latency_percentile(95)
        return {
            "elapsed_s": round(elapsed, 1),
            "requests": self.total_requests(),
            "rate_per_s": round(self.total_requests() / elapsed, 2) if elapsed > 0 else 0.0,
            "status": dict(sorted(self.status_counts().items())),
            "feedback_status": dict(sorted(self.status_counts(feedback=True).items())),
            "by_endpoint": {f"{ep} {st}": n for (ep, st), n in sorted(self.requests.items())},
            "latency_p50_s": None if p50 is None else round(p50, 4),
            "latency_p95_s": None if p95 is None else round(p95, 4),
            "versions": {v: t.as_dict() for v, t in sorted(self.versions.items())},
            "feedback": dict(self.feedback),
            "dropped_arrivals": self.dropped,
        }


class SummaryLine:
    """Formats one live-summary line from the difference between two snapshots of `Stats`."""

    def __init__(self) -> None:
        self._last_t = time.monotonic()
        self._last_requests = 0

    def format(self, stats: Stats, target_rate: float, hour: float, active: list[str]) -> str:
        now = time.monotonic()
        total = stats.total_requests()
        rate = (total - self._last_requests) / max(1e-9, now - self._last_t)
        self._last_t, self._last_requests = now, total
        status = " ".join(f"{k}:{v}" for k, v in sorted(stats.status_counts().items()))
        p95 = stats.latency_percentile(95)
        ctr = " ".join(f"v{v}={t.ctr:.1%}({t.impressions})" for v, t in sorted(stats.versions.items()))
        fb = " ".join(f"{k}:{v}" for k, v in sorted(stats.status_counts(feedback=True).items()))
        parts = [
            f"t={now - stats.started:6.0f}s",
            f"sim {int(hour):02d}:{int(hour % 1 * 60):02d}",
            f"rate {rate:6.1f}/s (target {target_rate:.1f})",
            f"p95 {'-' if p95 is None else f'{p95 * 1000:.0f}ms'}",
            f"status [{status}]",
            f"CTR [{ctr or '-'}]",
            f"feedback [{fb or '-'}]",
        ]
        if stats.dropped:
            parts.append(f"dropped {stats.dropped}")
        if active:
            parts.append(f"scenarios [{', '.join(active)}]")
        return " | ".join(parts)
