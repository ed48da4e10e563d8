"""Offline search quality: NDCG@k and MRR of the model's ranking on judged queries, with baselines.

Two protocols:

judged pairs (default)
    For each query, rank only its judged products by the model's cosine score (query embedding
    . product embedding, both L2-normalised: exactly what /v1/search scores). Gains are the human
    labels (Home Depot: mean of raters' 1-3 scores; synthetic: 1-3 by construction). NDCG@k uses
    the log2(rank + 1) discount and the ideal DCG of that query's own judged labels sorted
    descending. This isolates ranking quality from retrieval; note that every judged product has
    gain >= 1, so even a random order scores high; read the model against the baselines.
    A second NDCG column uses gain = label - 1 (so "irrelevant" = 0); queries whose judged
    products all have label 1 have no ideal gain there and are left out of that column.

--full-catalog
    Retrieve the top `--depth` products from the whole catalog (exact search over the cached
    VectorIndex), unjudged products count as gain 0. The ideal DCG still comes from the query's
    judged labels. MRR is cut off at `--depth`.

MRR: reciprocal rank of the first product whose label >= the threshold (2.5: "perfect match" on
the 1-3 scale, i.e. at least half the raters said 3; also printed at 2.0), averaged over the
queries that have at least one such judged product.

Baselines on the same queries and candidates: BM25 over the same product text the model embeds
(k1 = 1.2, b = 0.75, lowercase alphanumeric tokens, plural "s" stripped; ties broken at random
with the seed) and a random order (mean over `--random-repeats` shuffles).

    python -m inference_server.evaluate                       # Home Depot, judged pairs
    python -m inference_server.evaluate --full-catalog        # Home Depot, retrieve from 54,667 products
    python -m inference_server.evaluate --catalog synthetic   # synthetic catalog
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

import numpy as np
from scipy import sparse
from tqdm import tqdm

from inference_server.catalog import CatalogBundle, CatalogConfig, JudgedQuery, VectorIndex, load_catalog
from inference_server.catalog.index import encode_texts

__all__ = [
    "BM25",
    "EvaluationResult",
    "dcg",
    "evaluate_bundle",
    "main",
    "ndcg_at_k",
    "reciprocal_rank",
]

MRR_THRESHOLDS = (2.5, 2.0)


# --------------------------------------------------------------------------- metrics


def dcg(gains: Sequence[float], k: int) -> float:
    """Discounted cumulative gain of the first k gains: sum gain_i / log2(i + 1), i = 1-based rank."""
    return float(sum(g / math.log2(rank + 2) for rank, g in enumerate(list(gains)[:k])))


def ndcg_at_k(ranked_gains: Sequence[float], judged_gains: Sequence[float], k: int) -> Optional[float]:
    """DCG@k of the ranking divided by the DCG@k of the judged gains sorted descending; None when
    the ideal DCG is 0 (no positive gain to find, so NDCG is undefined)."""
    ideal = dcg(sorted(judged_gains, reverse=True), k)
    if ideal <= 0:
        return None
    return dcg(ranked_gains, k) / ideal


def reciprocal_rank(ranked_labels: Sequence[float], threshold: float) -> float:
    """1 / rank of the first label >= threshold; 0 when none is in the list."""
    for rank, label in enumerate(ranked_labels, start=1):
        if label >= threshold:
            return 1.0 / rank
    return 0.0


# --------------------------------------------------------------------------- lexical baseline

_TOKEN = re.compile(r"[a-z0-9]+(?:\.[0-9]+)?")


def tokenize(text: str) -> list[str]:
    """Lowercase alphanumeric tokens with a plural "s" stripped ("faucets" -> "faucet")."""
    tokens = []
    for token in _TOKEN.findall(text.lower()):
        if len(token) > 3 and token.endswith("s") and not token.endswith("ss") and not token[-2].isdigit():
            token = token[:-1]
        tokens.append(token)
    return tokens


class BM25:
    """Okapi BM25 over a fixed document set, as a sparse (documents x terms) weight matrix."""

    def __init__(self, documents: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        self.vocabulary: dict[str, int] = {}
        rows, cols, counts = [], [], []
        lengths = np.zeros(len(documents), dtype=np.float64)
        for doc, text in enumerate(documents):
            tokens = tokenize(text)
            lengths[doc] = len(tokens)
            tf: dict[int, int] = {}
            for token in tokens:
                term = self.vocabulary.setdefault(token, len(self.vocabulary))
                tf[term] = tf.get(term, 0) + 1
            for term, count in tf.items():
                rows.append(doc)
                cols.append(term)
                counts.append(count)
        shape = (len(documents), max(1, len(self.vocabulary)))
        tf_matrix = sparse.csr_matrix((np.asarray(counts, dtype=np.float64), (rows, cols)), shape=shape)
        n_docs = max(1, len(documents))
        df = np.bincount(np.asarray(cols, dtype=np.int64), minlength=shape[1])
        idf = np.log1p((n_docs - df + 0.5) / (df + 0.5))
        avg_length = lengths.mean() if len(documents) else 1.0
        norm = k1 * (1.0 - b + b * lengths / max(avg_length, 1e-9))
        weights = tf_matrix.copy()
        row_of_entry = np.repeat(np.arange(shape[0]), np.diff(tf_matrix.indptr))
        weights.data = idf[tf_matrix.indices] * tf_matrix.data * (k1 + 1.0) / (tf_matrix.data + norm[row_of_entry])
        self.weights = weights.tocsr()

    def query_matrix(self, queries: Sequence[str]) -> sparse.csr_matrix:
        """Binary (queries x terms) matrix of the query terms present in the vocabulary."""
        rows, cols = [], []
        for i, text in enumerate(queries):
            for term in dict.fromkeys(tokenize(text)):
                column = self.vocabulary.get(term)
                if column is not None:
                    rows.append(i)
                    cols.append(column)
        data = np.ones(len(rows), dtype=np.float64)
        return sparse.csr_matrix((data, (rows, cols)), shape=(len(queries), self.weights.shape[1]))

    def pair_scores(self, query_matrix: sparse.csr_matrix, query_rows: np.ndarray, doc_rows: np.ndarray) -> np.ndarray:
        """BM25 score of each (query_rows[i], doc_rows[i]) pair."""
        products = self.weights[doc_rows].multiply(query_matrix[query_rows])
        return np.asarray(products.sum(axis=1)).ravel()


# --------------------------------------------------------------------------- evaluation


@dataclass
class MethodScores:
    ndcg: float
    ndcg_queries: int
    ndcg_label_minus_one: Optional[float]
    ndcg_label_minus_one_queries: int
    mrr: dict[str, float]
    mrr_queries: dict[str, int]


@dataclass
class EvaluationResult:
    catalog: str
    protocol: str
    k: int
    depth: Optional[int]
    queries: int
    judged_pairs: int
    products: int
    model: dict[str, object]
    methods: dict[str, MethodScores] = field(default_factory=dict)
    seconds: float = 0.0


class _Accumulator:
    def __init__(self, k: int) -> None:
        self.k = k
        self.ndcg: list[float] = []
        self.ndcg_minus_one: list[float] = []
        self.rr: dict[float, list[float]] = {t: [] for t in MRR_THRESHOLDS}

    def add(self, ranked_ids: Sequence[str], judgments: dict[str, float]) -> None:
        labels = [judgments.get(pid, 0.0) for pid in ranked_ids]
        judged = list(judgments.values())
        value = ndcg_at_k(labels, judged, self.k)
        if value is not None:
            self.ndcg.append(value)
        value = ndcg_at_k([max(0.0, g - 1.0) for g in labels], [max(0.0, g - 1.0) for g in judged], self.k)
        if value is not None:
            self.ndcg_minus_one.append(value)
        for threshold in MRR_THRESHOLDS:
            if any(g >= threshold for g in judged):
                self.rr[threshold].append(reciprocal_rank(labels, threshold))

    def result(self, repeats: int = 1) -> MethodScores:
        """Means over everything added; `repeats` = rankings added per query (random baseline)."""
        def mean(values: list[float]) -> float:
            return float(np.mean(values)) if values else float("nan")

        return MethodScores(
            ndcg=mean(self.ndcg),
            ndcg_queries=len(self.ndcg) // repeats,
            ndcg_label_minus_one=mean(self.ndcg_minus_one) if self.ndcg_minus_one else None,
            ndcg_label_minus_one_queries=len(self.ndcg_minus_one) // repeats,
            mrr={f"{t:g}": mean(v) for t, v in self.rr.items()},
            mrr_queries={f"{t:g}": len(v) // repeats for t, v in self.rr.items()},
        )


def _order(scores: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """Indices by score descending, ties by `tie_break` ascending."""
    return np.lexsort((tie_break, -scores))


def evaluate_bundle(bundle: CatalogBundle, backend, *, k: int = 10, full_catalog: bool = False,
                    depth: int = 100, seed: int = 0, random_repeats: int = 10,
                    cache_dir: str = "var/cache/embeddings", batch_size: int = 256,
                    progress: bool = True, log: Callable[[str], None] = print) -> EvaluationResult:
    """Score the model, BM25 and random ordering on the bundle's judged queries."""
    started = time.perf_counter()
    catalog = bundle.catalog
    queries: list[JudgedQuery] = [q for q in bundle.queries if q.judgments]
    if not queries:
        raise ValueError(f"catalog {catalog.name!r} has no judged queries to evaluate")
    rng = np.random.default_rng(seed)
    result = EvaluationResult(
        catalog=catalog.name,
        protocol="full-catalog" if full_catalog else "judged-pairs",
        k=k, depth=depth if full_catalog else None, queries=len(queries),
        judged_pairs=sum(len(q.judgments) for q in queries), products=len(catalog),
        model=backend.describe(),
    )

    index = VectorIndex.build(catalog, backend, cache_dir, batch_size=batch_size, progress=progress)
    log(f"catalog embeddings: {'loaded from cache' if index.from_cache else 'computed'} in {index.build_seconds:.1f} s")
    query_vectors = encode_texts(backend, [q.text.strip() for q in queries], batch_size, progress, desc="encoding queries")
    bm25 = BM25([p.text() for p in catalog.products])
    query_terms = bm25.query_matrix([q.text for q in queries])

    model_acc, bm25_acc, random_acc = _Accumulator(k), _Accumulator(k), _Accumulator(k)
    ids = index.ids
    if not full_catalog:
        query_rows = np.concatenate([np.full(len(q.judgments), i) for i, q in enumerate(queries)])
        missing = [pid for q in queries for pid in q.judgments if index.row(pid) is None]
        if missing:
            raise ValueError(f"{len(missing)} judged products are not in the catalog, e.g. {missing[0]!r}")
        doc_rows = np.asarray([index.row(pid) for q in queries for pid in q.judgments], dtype=np.int64)
        cosine = np.einsum("ij,ij->i", query_vectors[query_rows], index.embeddings[doc_rows])
        lexical = bm25.pair_scores(query_terms, query_rows, doc_rows)
        starts = np.concatenate([[0], np.cumsum([len(q.judgments) for q in queries])])
        for i, query in enumerate(tqdm(queries, desc="scoring", unit="query", disable=not progress, dynamic_ncols=True)):
            lo, hi = starts[i], starts[i + 1]
            candidates = [ids[r] for r in doc_rows[lo:hi]]
            judgments = dict(query.judgments)
            n = hi - lo
            model_acc.add([candidates[j] for j in _order(cosine[lo:hi], np.arange(n))], judgments)
            bm25_acc.add([candidates[j] for j in _order(lexical[lo:hi], rng.permutation(n))], judgments)
            for _ in range(random_repeats):
                random_acc.add([candidates[j] for j in rng.permutation(n)], judgments)
    else:
        depth = min(depth, len(catalog))
        block = 128
        for start in tqdm(range(0, len(queries), block), desc="retrieving", unit="block", disable=not progress, dynamic_ncols=True):
            stop = min(len(queries), start + block)
            _, rows = index.search(query_vectors[start:stop], depth)
            lexical = (query_terms[start:stop] @ bm25.weights.T).toarray()
            for offset, i in enumerate(range(start, stop)):
                judgments = dict(queries[i].judgments)
                model_acc.add([ids[r] for r in rows[offset]], judgments)
                scores = lexical[offset]
                top = np.argpartition(-scores, depth - 1)[:depth] if depth < len(scores) else np.arange(len(scores))
                # ties (common: many documents share a score, or score 0) broken at random
                top = top[_order(scores[top], rng.random(len(top)))]
                bm25_acc.add([ids[r] for r in top], judgments)
                for _ in range(random_repeats):
                    random_acc.add([ids[r] for r in rng.choice(len(ids), size=depth, replace=False)], judgments)

    result.methods = {
        "model": model_acc.result(),
        "bm25": bm25_acc.result(),
        "random": random_acc.result(repeats=random_repeats),
    }
    result.seconds = time.perf_counter() - started
    return result


# --------------------------------------------------------------------------- report


def format_report(result: EvaluationResult, random_repeats: int) -> str:
    model = result.model
    title = "judged pairs (rank each query's judged products)" if result.protocol == "judged-pairs" \
        else f"full catalog (retrieve top {result.depth} of {result.products:,}; unjudged = 0)"
    names = {
        "model": f"{model['name']} v{model['version']} (cosine)",
        "bm25": "BM25 lexical baseline",
        "random": f"random order (mean of {random_repeats})",
    }
    mrr_at = f"@{result.depth}" if result.depth else ""
    header = (f"{'method':<34} {'NDCG@' + str(result.k):>8} {'NDCG@' + str(result.k) + ' g=l-1':>14} "
              + " ".join(f"{'MRR' + mrr_at + ' rel>=' + format(t, 'g'):>{16 if mrr_at else 12}}" for t in MRR_THRESHOLDS))
    lines = [
        f"catalog: {result.catalog} - {result.queries:,} judged queries, {result.judged_pairs:,} judged pairs, "
        f"{result.products:,} products",
        f"protocol: {title}",
        f"model: {model['name']} v{model['version']} backend={model['backend']} device={model['device']} "
        f"dtype={model['dtype']} max_seq_length={model['max_seq_length']} fingerprint={str(model['fingerprint'])[:16]}",
        "",
        header,
        "-" * len(header),
    ]
    for key, scores in result.methods.items():
        minus_one = f"{scores.ndcg_label_minus_one:.4f}" if scores.ndcg_label_minus_one is not None else "n/a"
        mrr = " ".join(f"{scores.mrr[format(t, 'g')]:>{16 if mrr_at else 12}.4f}" for t in MRR_THRESHOLDS)
        lines.append(f"{names[key]:<34} {scores.ndcg:>8.4f} {minus_one:>14} {mrr}")
    first = result.methods["model"]
    lines += [
        "",
        f"NDCG over {first.ndcg_queries:,} queries; 'g=l-1' uses gain = label - 1 over the "
        f"{first.ndcg_label_minus_one_queries:,} queries with a label above 1; "
        + "; ".join(f"MRR rel>={t} over {first.mrr_queries[format(t, 'g')]:,} queries with such a product"
                    for t in MRR_THRESHOLDS),
        f"evaluated in {result.seconds:.1f} s",
    ]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference_server.evaluate",
        description="Report NDCG@k and MRR of the model's search ranking on judged queries (Home Depot "
                    "human labels by default), beside a BM25 and a random baseline on the same queries.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--catalog", choices=("homedepot", "synthetic"), default="homedepot", help="judged query set")
    parser.add_argument("--data-dir", default=None,
                        help="Home Depot data directory (default: $HOMEDEPOT_DIR or <repo>/../shared/data/homedepot)")
    parser.add_argument("--max-queries", type=int, default=None,
                        help="evaluate the first N queries only (Home Depot: and only their products)")
    parser.add_argument("--full-catalog", action="store_true",
                        help="retrieve from the whole catalog (unjudged = not relevant) instead of ranking judged pairs")
    parser.add_argument("--k", type=int, default=10, help="NDCG cut-off")
    parser.add_argument("--depth", type=int, default=100, help="retrieval depth (and MRR cut-off) with --full-catalog")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random baseline and of BM25 tie-breaking")
    parser.add_argument("--random-repeats", type=int, default=10, help="shuffles averaged for the random baseline")
    parser.add_argument("--num-products", type=int, default=5000, help="synthetic catalog size")
    parser.add_argument("--num-queries", type=int, default=500, help="synthetic query count")
    parser.add_argument("--synthetic-seed", type=int, default=7, help="synthetic catalog seed")
    parser.add_argument("--weights", default=None, help="model directory (default: bundled all-MiniLM-L6-v2)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--dtype", choices=("auto", "float32", "float16", "bfloat16"), default="auto")
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--num-threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--batch-size", type=int, default=256, help="texts per forward pass")
    parser.add_argument("--cache-dir", default="var/cache/embeddings", help="catalog embedding cache")
    parser.add_argument("--json", dest="json_path", default=None, help="also write the figures as JSON here")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.add_argument("--compare", action="store_true",
                        help="served configurations on one split (make eval): BM25, normalised BM25 and each "
                             "repository version dense and hybrid, through the /v1/search scoring path")
    parser.add_argument("--split", choices=("train", "dev", "test"), default="test", help="with --compare")
    parser.add_argument("--versions", default=None, help="with --compare: comma-separated versions (default: all but drills)")
    parser.add_argument("--config", default=None, help="with --compare: server config (model repository, catalog)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    for name in ("k", "depth", "random_repeats", "batch_size"):
        if getattr(args, name) < 1:
            print(f"error: --{name.replace('_', '-')} must be >= 1", file=sys.stderr)
            return 2
    if args.max_queries is not None and args.max_queries < 1:
        print("error: --max-queries must be >= 1", file=sys.stderr)
        return 2

    from inference_server.catalog import CatalogError
    from inference_server.models import BackendUnavailable, ModelSpec, create_backend

    if args.compare:
        return _main_compare(args)

    cfg = CatalogConfig(source=args.catalog, seed=args.synthetic_seed, num_products=args.num_products,
                        num_queries=args.num_queries, path=args.data_dir, cache_dir=args.cache_dir,
                        max_queries=args.max_queries if args.catalog == "homedepot" else None)
    try:
        bundle = load_catalog(cfg)
    except CatalogError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.max_queries is not None:
        bundle.queries = bundle.queries[: args.max_queries]
    spec = ModelSpec(weights=args.weights, device=args.device, dtype=args.dtype,
                     max_seq_length=args.max_seq_length, num_threads=args.num_threads)
    try:
        backend = create_backend(spec)
    except (BackendUnavailable, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = evaluate_bundle(bundle, backend, k=args.k, full_catalog=args.full_catalog, depth=args.depth,
                                 seed=args.seed, random_repeats=args.random_repeats, cache_dir=args.cache_dir,
                                 batch_size=args.batch_size, progress=not args.no_progress)
    finally:
        backend.close()
    print(format_report(result, args.random_repeats))
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump(asdict(result), handle, indent=2)
            handle.write("\n")
    return 0


def _main_compare(args) -> int:
    from inference_server.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    overrides = {"source": args.catalog, "path": args.data_dir, "cache_dir": args.cache_dir}
    config = config.model_copy(update={"catalog": config.catalog.model_copy(update=overrides)})
    started = time.perf_counter()
    versions = args.versions.split(",") if args.versions else None
    rows = compare_served(config, split=args.split, versions=versions, depth=args.depth, k=args.k,
                          progress=not args.no_progress)
    bundle = load_catalog(config.catalog)
    from inference_server.catalog.splits import select_split

    queries = len([q for q in select_split(bundle.queries, args.split) if q.judgments])
    print(format_comparison(rows, args.split, args.k, args.depth, queries, len(bundle.catalog)))
    print(f"evaluated in {time.perf_counter() - started:.0f} s")
    if args.json_path:
        with open(args.json_path, "w", encoding="utf-8") as handle:
            json.dump({"split": args.split, "rows": dict(rows)}, handle, indent=2)
            handle.write("\n")
    return 0




# --------------------------------------------------------------------------- served configurations (make eval)


def _bm25_plain_retrieval(bundle: CatalogBundle, queries: Sequence[JudgedQuery], depth: int, k: int) -> dict:
    """The plain BM25 baseline (un-normalised text) on full-catalog retrieval, scored like the others."""
    from inference_server.lifecycle.registration import RetrievalMetrics

    catalog = bundle.catalog
    metrics = RetrievalMetrics(k, depth)
    ids = catalog.ids()
    bm25 = BM25([p.text() for p in catalog.products])
    terms = bm25.query_matrix([q.text for q in queries])
    for start in range(0, len(queries), 128):
        block = (terms[start:start + 128] @ bm25.weights.T).toarray()
        for offset, scores in enumerate(block):
            top = np.argpartition(-scores, depth - 1)[:depth]
            top = top[np.lexsort((top, -scores[top]))]
            metrics.add([ids[r] for r in top], dict(queries[start + offset].judgments))
    return metrics.result(len(queries))


def compare_served(config, *, split: str = "test", versions: Optional[Sequence[str]] = None, depth: int = 100,
                   k: int = 10, progress: bool = True, log: Callable[[str], None] = print) -> list[tuple[str, dict]]:
    """Full-catalog retrieval on one split for BM25, normalised BM25, and each repository version in its
    served retrieval mode (and dense), every query answered by the `fuse_search` /v1/search uses."""
    from inference_server.catalog.lexical_index import LexicalIndex
    from inference_server.catalog.splits import select_split
    from inference_server.lifecycle.registration import choose_lexical_weight, evaluate_retrieval, stale_lexical_rules
    from inference_server.lifecycle.repository import ModelRepository
    from inference_server.models import create_backend
    from inference_server.models.degrade import maybe_degrade
    from inference_server.serving.retrieval import Retrieval

    bundle = load_catalog(config.catalog)
    queries = [q for q in select_split(bundle.queries, split) if q.judgments]
    dev = [q for q in select_split(bundle.queries, "dev") if q.judgments]
    repo = ModelRepository.from_config(config.model_repository)
    name = config.model.name
    lexical = LexicalIndex.build(bundle.catalog, config.catalog.cache_dir, progress=progress)
    rows = [("BM25 (plain text)", _bm25_plain_retrieval(bundle, queries, depth, k)),
            ("BM25 normalised (lexical mode)", evaluate_retrieval(queries, None, None, Retrieval("lexical", lexical),
                                                                 k=k, depth=depth))]
    for version in versions or repo.versions(name):
        entry = repo.entry(name, version)
        if entry.config.degrade.active and versions is None:
            continue                                    # drills are not candidates
        spec = entry.model_spec(config.model, repo.state_dir)
        try:
            backend = maybe_degrade(create_backend(spec), entry.config.degrade)
        except Exception as exc:  # noqa: BLE001 - a version whose weights are absent is reported, not fatal
            log(f"version {version}: not evaluated ({type(exc).__name__}: {exc})")
            continue
        try:
            index = VectorIndex.build(bundle.catalog, backend, config.catalog.cache_dir, progress=progress)
            vectors = encode_texts(backend, [q.text.strip() for q in queries], 256, progress, desc=f"v{version}: {split} queries")
            rc = entry.config.retrieval
            art = repo.load_artifacts(name, version, bundle.catalog)
            weight = rc.lexical_weight
            source = "model.yaml"
            if weight is None and art is not None and not stale_lexical_rules(art):
                weight, source = (art.manifest.get("retrieval") or {}).get("lexical_weight"), "registration (DEV)"
            if weight is None:
                dev_vectors = encode_texts(backend, [q.text.strip() for q in dev], 256, progress, desc=f"v{version}: dev queries")
                weight, _ = choose_lexical_weight(dev, index, dev_vectors, lexical, candidates=rc.candidates, k=k, depth=depth)
                source = "chosen on DEV now"
            label = f"v{version}"
            rows.append((f"{label} dense", evaluate_retrieval(queries, index, vectors, Retrieval("dense"), k=k, depth=depth)))
            rows.append((f"{label} hybrid w={weight:.2f} ({source})" + (" [served]" if rc.mode == "hybrid" else ""),
                         evaluate_retrieval(queries, index, vectors, Retrieval("hybrid", lexical, float(weight), rc.candidates),
                                            k=k, depth=depth)))
        finally:
            backend.close()
    return rows


def format_comparison(rows: list[tuple[str, dict]], split: str, k: int, depth: int, queries: int, products: int) -> str:
    header = f"{'method':<58} {'NDCG@' + str(k):>8} {'recall@' + str(depth):>11}"
    lines = [f"{split.upper()} split: {queries:,} judged queries, full-catalog retrieval from {products:,} products "
             f"(NDCG gain = label - 1, unjudged = 0; recall of label >= 2.5)", "", header, "-" * len(header)]
    for label, m in rows:
        lines.append(f"{label:<58} {m[f'ndcg_at_{k}']:>8.4f} {m[f'recall_at_{depth}']:>11.4f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
