"""Ranking quality with an approximate index vs exact search: NDCG@10 and MRR on the Home Depot TEST split.

    python benchmarks/index_quality.py                      # exact vs ivf (sq8), full-catalog retrieval
    python benchmarks/index_quality.py --kinds exact,ivf,hnsw --help

The TEST split is the model loop's: key = search_term.strip().lower(), a query is TEST when
int(md5(key).hexdigest(), 16) % 10 == 0. Retrieval is full-catalog (all 54,667 products, top
`--depth`), scored like `python -m inference_server.evaluate --full-catalog` (unjudged = gain 0,
ideal DCG from the query's judged labels). Catalog embeddings come from the embedding cache.
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from inference_server.catalog import load_homedepot  # noqa: E402
from inference_server.catalog.index import encode_texts  # noqa: E402
from inference_server.catalog.search_index import build_search_index  # noqa: E402
from inference_server.catalog.types import IndexConfig  # noqa: E402
from inference_server.evaluate import ndcg_at_k, reciprocal_rank  # noqa: E402


def is_test(search_term: str) -> bool:
    key = search_term.strip().lower()
    return int(hashlib.md5(key.encode("utf-8")).hexdigest(), 16) % 10 == 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kinds", default="exact,ivf", help="comma list of exact, ivf, hnsw")
    parser.add_argument("--quantization", default="sq8", choices=("sq8", "pq", "pq4fs", "fp16", "flat"))
    parser.add_argument("--nlist", type=int, default=None)
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--pq-m", type=int, default=48)
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument("--candidates", type=int, default=40)
    parser.add_argument("--depth", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--cache-dir", default=str(REPO / "var" / "cache" / "embeddings"))
    args = parser.parse_args(argv)
    from inference_server.models.backend import ModelSpec
    from inference_server.models.registry import create_backend

    bundle = load_homedepot(None, None)
    queries = [q for q in bundle.queries if q.judgments and is_test(q.text)]
    backend = create_backend(ModelSpec(dtype=args.dtype))
    vectors = encode_texts(backend, [q.text.strip() for q in queries], desc="encoding TEST queries")
    print(f"Home Depot TEST split: {len(queries)} queries, {len(bundle.catalog):,} products, depth {args.depth}")
    results = {}
    for kind in args.kinds.split(","):
        codes = args.quantization if kind != "hnsw" or args.quantization not in ("pq", "pq4fs") else "sq8"
        cfg = IndexConfig(kind=kind, quantization=codes, nlist=args.nlist, nprobe=args.nprobe, pq_m=args.pq_m,
                          ef_search=args.ef_search, candidates=args.candidates)
        index = build_search_index(bundle.catalog, backend, cfg, args.cache_dir, progress=True)
        started = time.perf_counter()
        _, rows = index.search(vectors, args.depth)
        seconds = time.perf_counter() - started
        ndcg, rr = [], []
        for query, found in zip(queries, rows):
            labels = [query.judgments.get(index.ids[r], 0.0) for r in found]
            value = ndcg_at_k(labels, list(query.judgments.values()), args.k)
            if value is not None:
                ndcg.append(value)
            if any(g >= 2.5 for g in query.judgments.values()):
                rr.append(reciprocal_rank(labels, 2.5))
        results[kind] = (float(np.mean(ndcg)), float(np.mean(rr)), rows)
        print(f"{kind:6} NDCG@{args.k} {results[kind][0]:.4f}  MRR(rel>=2.5) {results[kind][1]:.4f}  "
              f"search {seconds:.2f} s  index build/load {index.build_seconds:.1f} s")
    backend.close()
    if "exact" in results:
        exact_rows = results["exact"][2]
        for kind, (ndcg, _, rows) in results.items():
            if kind == "exact":
                continue
            overlap = np.mean([len(set(a[:10]) & set(b[:10])) / 10 for a, b in zip(rows, exact_rows)])
            print(f"{kind}: NDCG@{args.k} {ndcg - results['exact'][0]:+.4f} vs exact "
                  f"(target within 0.002), recall@10 vs exact {overlap:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
