"""Approximate vs exact catalog search at up to millions of products: recall@10, queries/s, p99, build
time and index memory, printed in one run.

    python benchmarks/index.py --products 1000000 --kinds exact,ivf        # the figures in docs/catalog.md
    python benchmarks/index.py --serve --products 1000000 # end-to-end /v1/search p99 at 5k vs 1M products
    python benchmarks/index.py --help

What the vectors are (embedding a million titles with MiniLM on a CPU takes hours, so):

- real: the all-MiniLM-L6-v2 embeddings of the 54,667 Home Depot product texts, read from the
  embedding cache (`--cache-dir`; `python -m inference_server.evaluate --full-catalog` fills it), and
  real query vectors: MiniLM embeddings of Home Depot search terms (`--queries` of them, embedded here).
- bulk (up to `--products`): deterministic neighbours of the real vectors: row i is a real vector
  (chosen by a seeded generator) plus Gaussian noise of a scale chosen so that a derived vector's
  cosine to its source equals the median nearest-neighbour cosine among the real vectors, then
  normalised. The bulk thus keeps the real vectors' cluster structure and neighbour density, but its
  vectors are not embeddings of any text.

--serve: the end-to-end check. For 5,000 and `--products` products it generates the synthetic catalog
(seed 7, the server's `catalog.source: synthetic`), writes the vectors above into the embedding cache
under (model fingerprint, that catalog's fingerprint) exactly as the server would after embedding it,
builds and persists the approximate index, starts the server (it loads both from the cache: no title
is embedded at start-up) and measures POST /v1/search with closed-loop clients. The vectors are not
the titles' embeddings, so the results are not meaningful rankings; latency is what is measured.

Recall@10 is measured twice: on the real vectors alone and on the full set; ground truth is the exact
index (`VectorIndex.search`), the reference implementation. Queries/s: searches in batches of
`--batch` (the encoder's batch size, as the server runs them); p99: one query per call.
"""
from __future__ import annotations

import argparse
import gc
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from inference_server.catalog import VectorIndex, load_homedepot  # noqa: E402
from inference_server.catalog.ann import AnnIndex  # noqa: E402
from inference_server.catalog.index import cache_paths, encode_texts  # noqa: E402
from inference_server.catalog.types import IndexConfig  # noqa: E402


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=1_000_000, help="vectors in the large set")
    parser.add_argument("--queries", type=int, default=500, help="Home Depot search terms embedded as queries")
    parser.add_argument("--kinds", default="exact,ivf", help="comma list of exact, ivf, hnsw")
    parser.add_argument("--quantization", default="sq8", choices=("sq8", "pq", "pq4fs", "fp16", "flat"))
    parser.add_argument("--pq-m", type=int, default=48)
    parser.add_argument("--nlist", type=int, default=None, help="ivf lists (default 4*sqrt(n))")
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--candidates", type=int, default=40, help="rows re-scored exactly per query")
    parser.add_argument("--batch", type=int, default=32, help="queries per search call for queries/s")
    parser.add_argument("--latency-queries", type=int, default=200, help="single-query calls for p99")
    parser.add_argument("--exact-queries", type=int, default=128, help="queries timed on the exact index")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", default=str(REPO / "var" / "cache" / "embeddings"))
    parser.add_argument("--dtype", default="bfloat16", help="encoder dtype for the queries")
    parser.add_argument("--serve", action="store_true", help="end-to-end /v1/search p99 at 5k vs --products")
    parser.add_argument("--kind", default="ivf", help="--serve: the server's index.kind")
    parser.add_argument("--concurrency", type=int, default=8, help="--serve: closed-loop clients")
    parser.add_argument("--duration", type=float, default=20.0, help="--serve: seconds measured per size")
    return parser


def real_vectors(cache_dir: str, backend) -> tuple[list[str], np.ndarray]:
    bundle = load_homedepot(None, None)
    npy, _ = cache_paths(cache_dir, backend.fingerprint(), bundle.catalog.fingerprint())
    if not npy.is_file():
        sys.exit(f"no cached Home Depot embeddings at {npy}: run `python -m inference_server.evaluate "
                 f"--full-catalog --cache-dir {cache_dir}` (same --dtype) first")
    index = VectorIndex.build(bundle.catalog, backend, cache_dir, progress=False)
    terms = sorted({q.text for q in bundle.queries}, key=lambda t: hashlib.md5(t.encode()).hexdigest())
    return terms, np.asarray(index.embeddings)


def derived_set(real: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, float, float]:
    """`real` followed by n - len(real) noisy copies (see the module docstring); (vectors, sigma, target cos)."""
    rng = np.random.default_rng(seed)
    probe = real[rng.choice(len(real), 1000, replace=False)]
    sims = probe @ real.T
    sims[sims > 0.99999] = -1.0                       # the vector itself (and exact duplicates)
    target = float(np.median(sims.max(axis=1)))
    dim = real.shape[1]
    sigma = float(np.sqrt(max(1.0 / target**2 - 1.0, 1e-6) / dim))
    out = np.empty((max(n, len(real)), dim), dtype=np.float32)
    out[:len(real)] = real
    for start in range(len(real), n, 100_000):
        stop = min(n, start + 100_000)
        block = real[rng.integers(0, len(real), stop - start)]
        block = block + sigma * rng.standard_normal(block.shape, dtype=np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out[:max(n, len(real))], sigma, target


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a.tolist()) & set(b.tolist())) / truth.shape[1] for a, b in zip(found, truth)]))


def timed(index, queries: np.ndarray, batch: int, latency_queries: int) -> tuple[float, float, np.ndarray]:
    """(queries/s in batches, p99 ms of single-query calls, rows)."""
    started = time.perf_counter()
    rows = np.vstack([index.search(queries[i:i + batch], 10)[1] for i in range(0, len(queries), batch)])
    qps = len(queries) / (time.perf_counter() - started)
    latencies = []
    for i in range(min(latency_queries, len(queries))):
        began = time.perf_counter()
        index.search(queries[i:i + 1], 10)
        latencies.append(time.perf_counter() - began)
    return qps, float(np.percentile(latencies, 99) * 1000), rows


def serve_phase(args, backend, real: np.ndarray, terms: list[str]) -> int:
    """End-to-end: /v1/search p99 with a 5k and a `--products` catalog, both from a prepared cache."""
    import tempfile

    from benchmarks.serving import closed_loop, run_client
    from devstack.components import start_inference_server
    from devstack.processes import running
    from inference_server.catalog import CatalogConfig, load_catalog
    from inference_server.catalog.index import store_cached
    from inference_server.catalog.search_index import build_search_index

    vectors, _, _ = derived_set(real, args.products, args.seed)
    index_cfg = {"kind": args.kind, "quantization": args.quantization, "nlist": args.nlist,
                 "nprobe": args.nprobe, "candidates": args.candidates, "pq_m": args.pq_m}
    results = {}
    for n in (5000, args.products):
        started = time.perf_counter()
        print(f"[serve] {n:,} products: generating the synthetic catalog", flush=True)
        catalog = load_catalog(CatalogConfig(num_products=n, num_queries=500)).catalog
        store_cached(args.cache_dir, backend.fingerprint(), catalog, vectors[:n])
        build_search_index(catalog, backend, IndexConfig(**index_cfg), args.cache_dir, progress=True)
        print(f"[serve] cache and index ready in {time.perf_counter() - started:.0f} s; starting the server",
              flush=True)
        del catalog
        gc.collect()
        with tempfile.TemporaryDirectory(prefix="bench-index-") as workdir:
            overrides = {
                "server": {"request_timeout_ms": 30000},
                "model": {"dtype": args.dtype},
                "catalog": {"num_products": n, "num_queries": 500, "cache_dir": args.cache_dir},
                "index": index_cfg,
                "batching": {"max_queue_size": 4 * args.concurrency + 64},
                "request_log": {"enabled": False},
                "model_repository": {"enabled": False},   # config.model: the same fingerprint as the cache
            }
            server = start_inference_server(Path(workdir), overrides=overrides, timeout=1800)
            with running(server):
                port = int(server.url.rsplit(":", 1)[1])
                results[n] = run_client(closed_loop(port, terms[:500], args.concurrency, args.duration, 10))
        r = results[n]
        print(f"[serve] {n:>9,} products: {r['qps']:.1f} q/s  p50 {r['p50_ms']:.1f} ms  p95 {r['p95_ms']:.1f} ms  "
              f"p99 {r['p99_ms']:.1f} ms  ({r['ok']} ok, {r['failed']} failed)", flush=True)
    small, large = results[5000], results[args.products]
    print(f"\n/v1/search p99 at {args.products:,} products is {large['p99_ms'] / small['p99_ms']:.2f}x its p99 at "
          f"5,000 (target <= 1.5x); index {args.kind}, {args.concurrency} closed-loop clients, "
          f"{args.duration:.0f} s each. Machine shared and contended: one run.")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    from inference_server.models.backend import ModelSpec
    from inference_server.models.registry import create_backend

    backend = create_backend(ModelSpec(dtype=args.dtype))
    if args.serve:
        terms, real = real_vectors(args.cache_dir, backend)
        return serve_phase(args, backend, real, terms)
    print(f"[1/4] real vectors: Home Depot catalog embeddings from {args.cache_dir}", flush=True)
    terms, real = real_vectors(args.cache_dir, backend)
    queries = encode_texts(backend, terms[:args.queries], desc="embedding queries")
    backend.close()
    print(f"[2/4] {args.products:,} vectors ({len(real):,} real + derived)", flush=True)
    vectors, sigma, target = derived_set(real, args.products, args.seed)
    print(f"      derived noise sigma {sigma:.4f} (median real nearest-neighbour cosine {target:.4f})", flush=True)

    results = []
    for label, data in (("real", real), ("full", vectors)):
        ids = [f"p{i}" for i in range(len(data))]
        exact = VectorIndex(ids, data)
        print(f"[3/4] {label} set ({len(data):,}): exact ground truth for {len(queries)} queries", flush=True)
        began = time.perf_counter()
        _, truth = exact.search(queries, 10)
        truth_s = time.perf_counter() - began
        for kind in args.kinds.split(","):
            if kind == "exact":
                sub = queries[:args.exact_queries]
                qps, p99, _ = timed(exact, sub, args.batch, min(args.latency_queries, args.exact_queries))
                results.append((label, len(data), "exact", "fp32", 1.0, qps, p99, 0.0, exact.memory_bytes))
                continue
            cfg = IndexConfig(kind=kind, quantization=args.quantization, nlist=args.nlist, nprobe=args.nprobe,
                              candidates=args.candidates, pq_m=args.pq_m)
            print(f"[4/4] {label} set: building {kind} ({args.quantization})", flush=True)
            ann = AnnIndex.build_ann(exact, cfg, None, "bench", label, progress=True)
            qps, p99, rows = timed(ann, queries, args.batch, args.latency_queries)
            results.append((label, len(data), kind, args.quantization, recall_at(rows, truth), qps, p99,
                            ann.ann_seconds, ann.memory_bytes))
            del ann
            gc.collect()
        del exact
        gc.collect()
        print(f"      (exact ground truth took {truth_s:.1f} s)", flush=True)

    print("\nset   products   index  codes  recall@10  queries/s  p99 ms  build s  index MB  bytes/product")
    for label, n, kind, codes, recall, qps, p99, build_s, memory in results:
        print(f"{label:5} {n:>9,}  {kind:6} {codes:5}  {recall:9.4f}  {qps:9.1f}  {p99:6.2f}  {build_s:7.1f}  "
              f"{memory / 1e6:8.1f}  {memory / n:13.0f}")
    for label in ("real", "full"):
        rows = {r[2]: r for r in results if r[0] == label}
        if "exact" in rows:
            for kind, row in rows.items():
                if kind != "exact":
                    print(f"{label}: {kind} runs at {row[5] / rows['exact'][5]:.1f}x the exact index's queries/s, "
                          f"recall@10 {row[4]:.4f}, {row[8] / row[1] * 1e6 / 1e9:.3f} GB per million products")
    print(f"\nqueries: {len(queries)} Home Depot search terms (MiniLM {args.dtype}); batch {args.batch}; "
          f"ivf nprobe {args.nprobe}, candidates re-scored {args.candidates}. Machine shared and contended: "
          f"ratios are from this one run.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
