"""Benchmark of the model-lifecycle hot path (in-process, no HTTP, no model):

1. the traffic router: microseconds added per request by `TrafficRouter.route` (sticky user ids over
   two and three weighted versions, and anonymous requests);
2. the feedback store: microseconds per served request registered for joins (`register`, k results)
   and per event joined (`ingest` of one click), with the store full so every registration evicts;
3. the memory the feedback store holds at its configured bounds (`feedback.max_requests` requests with
   k ids each, `max_event_ids` deduplicated event ids, `max_expired_ids` remembered expired request
   ids), measured with tracemalloc.

Usage: python benchmarks/lifecycle.py [--config config/inference_server.yaml] [--k 10] [--quick]
"""
from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry  # noqa: E402
from tqdm import tqdm  # noqa: E402

from inference_server.config import load_config  # noqa: E402
from inference_server.lifecycle.feedback import FeedbackConfig, FeedbackMetrics, FeedbackStore  # noqa: E402
from inference_server.serving.traffic import Split, TrafficRouter  # noqa: E402


def per_call_us(fn, n: int, repeats: int = 5) -> tuple[float, float]:
    """(median, min) microseconds per call of fn(i) over `repeats` runs of n calls."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        for i in range(n):
            fn(i)
        runs.append((time.perf_counter() - started) / n * 1e6)
    return statistics.median(runs), min(runs)


def bench_router(n: int) -> list[tuple[str, float, float]]:
    rows = []
    users = [f"user-{i}" for i in range(n)]
    two = TrafficRouter("minilm", Split.of({"1": 90, "2": 10}))
    three = TrafficRouter("minilm", Split.of({"1": 80, "2": 10, "3": 10}))
    ready2, ready3 = {"1", "2"}, {"1", "2", "3"}
    single = TrafficRouter("minilm", Split.of({"1": 100}))
    rows.append(("route, 1 version (fast path)", *per_call_us(lambda i: single.route(users[i], {"1"}), n)))
    rows.append(("route, sticky user, 2 versions", *per_call_us(lambda i: two.route(users[i], ready2), n)))
    rows.append(("route, sticky user, 3 versions", *per_call_us(lambda i: three.route(users[i], ready3), n)))
    rows.append(("route, anonymous, 2 versions", *per_call_us(lambda i: two.route(None, ready2), n)))
    return rows


def catalog_ids(count: int) -> list[str]:
    return [f"P{i:06d}" for i in range(count)]


def bench_feedback(cfg: FeedbackConfig, k: int, n: int) -> list[tuple[str, float, float]]:
    store = FeedbackStore(cfg, FeedbackMetrics(CollectorRegistry()))
    ids = catalog_ids(5000)
    rids = [uuid.uuid4().hex for _ in range(n)]
    for i in range(min(cfg.max_requests, n)):  # fill so registrations below evict
        store.register(f"warm-{i}", "search", "minilm", "1", ids[i % 4000:i % 4000 + k], k)
    register = per_call_us(lambda i: store.register(rids[i], "search", "minilm", "1", ids[i % 4000:i % 4000 + k], k),
                           n, repeats=1)
    events = [{"request_id": rids[i], "event_id": f"evt-{i}", "type": "click",
               "product_id": ids[i % 4000 + (i % k)]} for i in range(n)]
    join = per_call_us(lambda i: store.ingest([events[i]]), n, repeats=1)
    dup = per_call_us(lambda i: store.ingest([events[i]]), n, repeats=1)
    return [(f"register served request (k={k}, store full)", *register),
            ("join one click event (validate, dedup, join, metrics)", *join),
            ("duplicate event (dedup hit)", *dup)]


def measure_memory(cfg: FeedbackConfig, k: int) -> dict[str, float]:
    """Bytes held by a store filled to its bounds (ids shared with a catalog, as in the server)."""
    ids = catalog_ids(5000)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    fake_now = [0.0]
    store = FeedbackStore(cfg, FeedbackMetrics(CollectorRegistry()), clock=lambda: fake_now[0])
    out = {}
    # Expired ids first: register and expire max_expired_ids requests (their ids stay remembered).
    for i in tqdm(range(cfg.max_expired_ids), desc="expired ids", unit="req", leave=False, disable=not sys.stderr.isatty()):
        store.register(uuid.uuid4().hex, "search", "minilm", "1", ids[i % 4000:i % 4000 + k], k)
    fake_now[0] += cfg.ttl_s + 1
    store.sweep()
    out["expired request ids"] = tracemalloc.get_traced_memory()[0] - base
    mark = tracemalloc.get_traced_memory()[0]
    live = []
    for i in tqdm(range(cfg.max_requests), desc="served requests", unit="req", leave=False, disable=not sys.stderr.isatty()):
        rid = uuid.uuid4().hex
        live.append(rid)
        store.register(rid, "search", "minilm", "1", ids[i % 4000:i % 4000 + k], k)
    out["served requests (join window)"] = tracemalloc.get_traced_memory()[0] - mark
    mark = tracemalloc.get_traced_memory()[0]
    for i in tqdm(range(cfg.max_event_ids), desc="event ids", unit="ev", leave=False, disable=not sys.stderr.isatty()):
        store.ingest([{"request_id": live[i % len(live)], "event_id": f"evt-{uuid.uuid4().hex[:20]}",
                       "type": "click", "product_id": ids[(i % len(live)) % 4000 + (i % k)]}])
    out["dedup event ids + click positions"] = tracemalloc.get_traced_memory()[0] - mark
    out["total"] = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert len(store) == cfg.max_requests
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="server config whose feedback section gives the bounds "
                                         "(default: config/inference_server.yaml)")
    parser.add_argument("--k", type=int, default=10, help="results per served request (default 10)")
    parser.add_argument("--iterations", type=int, default=100_000, help="calls per latency measurement")
    parser.add_argument("--quick", action="store_true", help="fewer iterations and 1/10 of the memory bounds")
    args = parser.parse_args(argv)
    import inference_server.api.app  # noqa: F401  (registers the lifecycle config sections)

    cfg: FeedbackConfig = load_config(args.config).feedback
    n = 20_000 if args.quick else args.iterations
    if args.quick:
        cfg = FeedbackConfig(**{**cfg.__dict__, "max_requests": cfg.max_requests // 10,
                                "max_event_ids": cfg.max_event_ids // 10, "max_expired_ids": cfg.max_expired_ids // 10})
    print("lifecycle benchmark (in-process; measured under contention unless run on a quiet machine)")
    print(f"python {sys.version.split()[0]}, {n} calls per figure\n")
    print(f"{'operation':58s} {'median us':>10s} {'best us':>9s}")
    for name, median, best in bench_router(n) + bench_feedback(cfg, args.k, n):
        print(f"{name:58s} {median:10.2f} {best:9.2f}")
    print(f"\nfeedback store memory at its bounds: max_requests={cfg.max_requests}, k={args.k}, "
          f"max_event_ids={cfg.max_event_ids}, max_expired_ids={cfg.max_expired_ids}")
    for name, size in measure_memory(cfg, args.k).items():
        print(f"  {name:40s} {size / 2**20:8.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
