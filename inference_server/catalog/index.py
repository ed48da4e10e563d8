"""Exact vector index over catalog embeddings, cached on disk per (model, catalog) fingerprint.

Embedding a catalog is the slow part of start-up (minutes for 50k products on a CPU), so the
matrix is stored in `cache_dir` as `<model_fp[:16]>-<catalog_fp[:16]>.npy` beside a
`.ids.json` naming the full fingerprints and product ids. Files are written to a temporary name
and renamed into place, so a crash never leaves a half-written cache, and are verified on load
(shape, dtype, ids, fingerprints); anything that does not match is rebuilt.

Search is exact: rows are unit vectors, so the inner product is the cosine similarity; one matrix
product plus `np.argpartition` gives the top k in O(n) per query, which is fast enough for 50k+
products on a CPU without an approximate index.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Collection, Optional, Sequence

import numpy as np
from tqdm import tqdm

from inference_server.models.backend import EncoderBackend
from inference_server.catalog.types import Catalog

__all__ = ["VectorIndex", "cache_paths", "encode_texts"]

log = logging.getLogger(__name__)

# Score matrix budget per block of queries (float32 entries): bounds memory for large batches.
_BLOCK_ENTRIES = 1 << 24

_blas_limited = False


def limit_blas_threads() -> None:
    """One BLAS thread per call, process-wide (once).

    Searches are small matrix products issued from the model instances' worker threads, one per
    core; OpenBLAS's own thread pool then spins against the model's threads. Measured on the 2-core
    dev machine (bf16 MiniLM + top-k over 5,000 products, in-process): 1.5-2x the throughput with one
    BLAS thread.
    """
    global _blas_limited
    if _blas_limited:
        return
    _blas_limited = True
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a declared dependency
        return
    threadpool_limits(limits=1, user_api="blas")


def cache_paths(cache_dir: str | Path, model_fingerprint: str, catalog_fingerprint: str) -> tuple[Path, Path]:
    """(embeddings .npy, ids .json) for a model/catalog pair."""
    stem = f"{model_fingerprint[:16]}-{catalog_fingerprint[:16]}"
    directory = Path(cache_dir)
    return directory / f"{stem}.npy", directory / f"{stem}.ids.json"


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; the cache is shared like any build output
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def encode_texts(backend: EncoderBackend, texts: Sequence[str], batch_size: int = 256,
                 progress: bool = True, desc: str = "encoding") -> np.ndarray:
    """Embed many texts in batches of similar length (little padding), rows in input order."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    embeddings = np.zeros((len(texts), backend.dim), dtype=np.float32)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    with tqdm(total=len(texts), desc=desc, unit="text", disable=not progress, dynamic_ncols=True) as bar:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            embeddings[chunk] = backend.encode([texts[i] for i in chunk])
            bar.update(len(chunk))
    return embeddings


class VectorIndex:
    """Unit-norm product embeddings (row i = `ids[i]`) with exact top-k inner-product search."""

    def __init__(self, ids: Sequence[str], embeddings: np.ndarray, build_seconds: float = 0.0,
                 from_cache: bool = False) -> None:
        embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(ids):
            raise ValueError(f"embeddings shape {embeddings.shape} does not match {len(ids)} ids")
        self.ids: list[str] = list(ids)
        self.embeddings = embeddings
        self.build_seconds = build_seconds
        self.from_cache = from_cache
        self._rows = {product_id: row for row, product_id in enumerate(self.ids)}
        if len(self._rows) != len(self.ids):
            raise ValueError("duplicate product ids in the index")

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        return len(self.ids)

    @classmethod
    def build(cls, catalog: Catalog, backend: EncoderBackend, cache_dir: str | Path,
              batch_size: int = 256, progress: bool = True) -> "VectorIndex":
        """Load the catalog's embeddings from the cache, or compute (and cache) them."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        started = time.perf_counter()
        model_fp, catalog_fp = backend.fingerprint(), catalog.fingerprint()
        npy_path, ids_path = cache_paths(cache_dir, model_fp, catalog_fp)
        ids = catalog.ids()
        cached = cls._load_cached(npy_path, ids_path, ids, backend.dim, model_fp, catalog_fp)
        if cached is not None:
            return cls(ids, cached, time.perf_counter() - started, from_cache=True)

        texts = [product.text() for product in catalog.products]
        embeddings = encode_texts(backend, texts, batch_size, progress, desc=f"embedding {catalog.name} catalog")
        if not np.isfinite(embeddings).all():
            raise RuntimeError(f"the model produced non-finite embeddings for catalog {catalog.name!r}")

        _atomic_write(npy_path, lambda handle: np.save(handle, embeddings, allow_pickle=False))
        meta = {"model_fingerprint": model_fp, "catalog_fingerprint": catalog_fp,
                "catalog": catalog.name, "dim": backend.dim, "ids": ids}
        _atomic_write(ids_path, lambda handle: handle.write(json.dumps(meta).encode("utf-8")))
        return cls(ids, embeddings, time.perf_counter() - started, from_cache=False)

    @staticmethod
    def _load_cached(npy_path: Path, ids_path: Path, ids: list[str], dim: int,
                     model_fp: str, catalog_fp: str) -> Optional[np.ndarray]:
        if not (npy_path.is_file() and ids_path.is_file()):
            return None
        try:
            meta = json.loads(ids_path.read_text(encoding="utf-8"))
            embeddings = np.load(npy_path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            log.warning("ignoring unreadable embedding cache %s: %s", npy_path, exc)
            return None
        problems = []
        if meta.get("model_fingerprint") != model_fp or meta.get("catalog_fingerprint") != catalog_fp:
            problems.append("fingerprints differ")
        if meta.get("ids") != ids:
            problems.append("product ids differ")
        if embeddings.dtype != np.float32 or embeddings.shape != (len(ids), dim):
            problems.append(f"array is {embeddings.dtype} {embeddings.shape}, expected float32 {(len(ids), dim)}")
        elif not np.isfinite(embeddings).all():
            problems.append("array has non-finite values")
        if problems:
            log.warning("rebuilding embedding cache %s: %s", npy_path, "; ".join(problems))
            return None
        return embeddings

    def row(self, product_id: str) -> Optional[int]:
        return self._rows.get(product_id)

    def vectors(self, rows: Sequence[int]) -> np.ndarray:
        return self.embeddings[np.asarray(rows, dtype=np.int64)]

    def search(self, queries: np.ndarray, k: int,
               exclude: Optional[Sequence[Collection[int]]] = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product for each query row: (scores (m, k') float32 descending,
        rows (m, k') int64), ties broken by lower row. `exclude[i]` lists rows query i must not
        return. k' = min(k, rows available after exclusions), the same for every query, so every
        returned row is a real, non-excluded product."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        limit_blas_threads()
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (m, {self.dim}), got {queries.shape}")
        m, n = queries.shape[0], len(self.ids)
        excluded: list[np.ndarray] = []
        if exclude is not None:
            if len(exclude) != m:
                raise ValueError(f"exclude has {len(exclude)} entries for {m} queries")
            for rows in exclude:
                rows = np.unique(np.fromiter((int(r) for r in rows), dtype=np.int64))
                excluded.append(rows[(rows >= 0) & (rows < n)])
        most_excluded = max((len(rows) for rows in excluded), default=0)
        k = min(k, n - most_excluded)
        if m == 0 or k <= 0:
            return np.zeros((m, 0), dtype=np.float32), np.zeros((m, 0), dtype=np.int64)

        out_scores = np.empty((m, k), dtype=np.float32)
        out_rows = np.empty((m, k), dtype=np.int64)
        block = max(1, _BLOCK_ENTRIES // max(n, 1))
        for start in range(0, m, block):
            stop = min(m, start + block)
            scores = queries[start:stop] @ self.embeddings.T
            for i, rows in enumerate(excluded[start:stop]):
                scores[i, rows] = -np.inf
            if k < n:
                candidates = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            else:
                candidates = np.broadcast_to(np.arange(n, dtype=np.int64), scores.shape)
            candidate_scores = np.take_along_axis(scores, candidates, axis=1)
            order = np.lexsort((candidates, -candidate_scores), axis=1)
            out_rows[start:stop] = np.take_along_axis(candidates, order, axis=1)
            out_scores[start:stop] = np.take_along_axis(candidate_scores, order, axis=1)
        return out_scores, out_rows
