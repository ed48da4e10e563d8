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
import threading
import time
from pathlib import Path
from typing import Collection, Optional, Sequence

import numpy as np
from tqdm import tqdm

from inference_server.models.backend import EncoderBackend
from inference_server.catalog.types import Catalog

__all__ = ["VectorIndex", "cache_paths", "encode_texts", "store_cached"]

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


def store_cached(cache_dir: str | Path, model_fingerprint: str, catalog: Catalog, embeddings: np.ndarray) -> Path:
    """Write a catalog's embeddings (rows in catalog order) to the cache; returns the .npy path."""
    catalog_fp, ids = catalog.fingerprint(), catalog.ids()
    if embeddings.shape[0] != len(ids):
        raise ValueError(f"{embeddings.shape[0]} embeddings for {len(ids)} products")
    npy_path, ids_path = cache_paths(cache_dir, model_fingerprint, catalog_fp)
    _atomic_write(npy_path, lambda handle: np.save(handle, np.asarray(embeddings, np.float32), allow_pickle=False))
    meta = {"model_fingerprint": model_fingerprint, "catalog_fingerprint": catalog_fp,
            "catalog": catalog.name, "dim": int(embeddings.shape[1]), "ids": ids}
    _atomic_write(ids_path, lambda handle: handle.write(json.dumps(meta).encode("utf-8")))
    return npy_path


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
    """Unit-norm product embeddings (row i = `ids[i]`) with exact top-k inner-product search.

    The exact index is the reference every approximate index is measured against. Catalog changes
    (`apply`) never renumber rows: an added or updated product gets a new row at the end, a removed
    or replaced one becomes a dead row that searches skip, so rows handed out by a running search
    keep naming the product they named. What searches read (matrix, live mask) is published as one
    tuple, so a search in a worker thread sees either the state before a change or the one after.
    """

    kind = "exact"

    def __init__(self, ids: Sequence[str], embeddings: np.ndarray, build_seconds: float = 0.0,
                 from_cache: bool = False) -> None:
        if not isinstance(embeddings, np.memmap):
            embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        if embeddings.ndim != 2 or embeddings.shape[0] != len(ids):
            raise ValueError(f"embeddings shape {embeddings.shape} does not match {len(ids)} ids")
        self.ids: list[str] = list(ids)
        self.embeddings = embeddings          # the rows the index was built with (later rows: `_extra`)
        self.build_seconds = build_seconds
        self.from_cache = from_cache
        self.merge_seconds: Optional[float] = None   # time of the last `apply`
        self._rows = {product_id: row for row, product_id in enumerate(self.ids)}
        if len(self._rows) != len(self.ids):
            raise ValueError("duplicate product ids in the index")
        # (rows added since the build, live mask over all rows or None when every row is live, live count)
        self._live: tuple[np.ndarray, Optional[np.ndarray], int] = (
            np.zeros((0, embeddings.shape[1]), np.float32), None, len(self.ids))
        self._apply_lock = threading.Lock()

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def __len__(self) -> int:
        """Live products (removed ones not counted)."""
        return self._live[2]

    @property
    def memory_bytes(self) -> int:
        """Bytes of vectors this index holds for searching."""
        extra, alive, _ = self._live
        return int(self.embeddings.nbytes + extra.nbytes + (alive.nbytes if alive is not None else 0))

    @classmethod
    def build(cls, catalog: Catalog, backend: EncoderBackend, cache_dir: str | Path,
              batch_size: int = 256, progress: bool = True, mmap: bool = False) -> "VectorIndex":
        """Load the catalog's embeddings from the cache, or compute (and cache) them. `mmap`: map
        the cached matrix read-only instead of reading it into memory (approximate indexes search
        their own compressed copy and read the full vectors only for rank/recommend lookups)."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        started = time.perf_counter()
        model_fp, catalog_fp = backend.fingerprint(), catalog.fingerprint()
        npy_path, ids_path = cache_paths(cache_dir, model_fp, catalog_fp)
        ids = catalog.ids()
        cached = cls._load_cached(npy_path, ids_path, ids, backend.dim, model_fp, catalog_fp, mmap)
        if cached is not None:
            return cls(ids, cached, time.perf_counter() - started, from_cache=True)

        texts = [product.text() for product in catalog.products]
        embeddings = encode_texts(backend, texts, batch_size, progress, desc=f"embedding {catalog.name} catalog")
        if not np.isfinite(embeddings).all():
            raise RuntimeError(f"the model produced non-finite embeddings for catalog {catalog.name!r}")
        store_cached(cache_dir, model_fp, catalog, embeddings)
        return cls(ids, embeddings, time.perf_counter() - started, from_cache=False)

    @staticmethod
    def _load_cached(npy_path: Path, ids_path: Path, ids: list[str], dim: int,
                     model_fp: str, catalog_fp: str, mmap: bool = False) -> Optional[np.ndarray]:
        if not (npy_path.is_file() and ids_path.is_file()):
            return None
        try:
            meta = json.loads(ids_path.read_text(encoding="utf-8"))
            embeddings = np.load(npy_path, allow_pickle=False, mmap_mode="r" if mmap else None)
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
        """The live row of a product (None for unknown and removed products)."""
        return self._rows.get(product_id)

    def vectors(self, rows: Sequence[int]) -> np.ndarray:
        rows = np.asarray(rows, dtype=np.int64)
        base = len(self.embeddings)
        if not len(rows) or rows.max() < base:
            return np.asarray(self.embeddings[rows], dtype=np.float32)
        extra = self._live[0]
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        old = rows < base
        out[old] = self.embeddings[rows[old]]
        out[~old] = extra[rows[~old] - base]
        return out

    def apply(self, upserts: Sequence[tuple[str, np.ndarray]], removals: Collection[str]) -> list[int]:
        """Apply a catalog change: `upserts` (product id, unit vector) get new rows (an updated
        product's old row dies), `removals` die. Returns the new rows; searches started after this
        returns never see a dead row. Called from one thread at a time per index (the updater)."""
        started = time.perf_counter()
        with self._apply_lock:
            extra, alive, live = self._live
            n_old = len(self.ids)
            vectors = np.asarray([vector for _, vector in upserts], dtype=np.float32).reshape(-1, self.dim)
            dead = [self._rows[pid] for pid in removals if pid in self._rows]
            dead += [self._rows[pid] for pid, _ in upserts if pid in self._rows]
            new_rows = list(range(n_old, n_old + len(upserts)))
            alive = np.ones(n_old, dtype=bool) if alive is None else alive
            alive = np.concatenate([alive, np.ones(len(upserts), dtype=bool)])
            alive[np.asarray(sorted(set(dead)), dtype=np.int64)] = False
            self.ids.extend(pid for pid, _ in upserts)    # rows first, so a published row always has an id
            self._apply_rows(new_rows, vectors, sorted(set(dead)))
            self._live = (np.concatenate([extra, vectors]), alive, int(alive.sum()))
            for pid in removals:
                self._rows.pop(pid, None)
            for row, (pid, _) in zip(new_rows, upserts):
                self._rows[pid] = row
        self.merge_seconds = time.perf_counter() - started
        return new_rows

    def _apply_rows(self, added: list[int], vectors: np.ndarray, removed: list[int]) -> None:
        """Hook for approximate indexes: mirror a change before it is published."""

    def live_ids(self) -> list[str]:
        """Live product ids in row order."""
        alive = self._live[1]
        return self.ids[:] if alive is None else [pid for pid, ok in zip(self.ids, alive) if ok]

    def live_matrix(self) -> tuple[list[str], np.ndarray]:
        """(live ids, their vectors) in row order: what a rebuild or the embedding cache needs."""
        extra, alive, _ = self._live
        if alive is None and not len(extra):
            return self.ids[:], np.asarray(self.embeddings, dtype=np.float32)
        rows = np.flatnonzero(alive) if alive is not None else np.arange(len(self.ids))
        return [self.ids[r] for r in rows], self.vectors(rows)

    def _query_matrix(self, queries: np.ndarray, k: int) -> np.ndarray:
        """Queries as a float32 (m, dim) matrix; ValueError on a bad k or shape."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        limit_blas_threads()
        queries = np.asarray(queries, dtype=np.float32)
        if queries.ndim == 1:
            queries = queries[None, :]
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise ValueError(f"queries must have shape (m, {self.dim}), got {queries.shape}")
        return queries

    def search(self, queries: np.ndarray, k: int,
               exclude: Optional[Sequence[Collection[int]]] = None) -> tuple[np.ndarray, np.ndarray]:
        """Top-k rows by inner product for each query row: (scores (m, k') float32 descending,
        rows (m, k') int64), ties broken by lower row. `exclude[i]` lists rows query i must not
        return. k' = min(k, rows available after exclusions), the same for every query, so every
        returned row is a real, non-excluded product."""
        queries = self._query_matrix(queries, k)
        extra, alive, live = self._live
        m, n = queries.shape[0], len(self.embeddings) + len(extra)
        excluded: list[np.ndarray] = []
        if exclude is not None:
            if len(exclude) != m:
                raise ValueError(f"exclude has {len(exclude)} entries for {m} queries")
            for rows in exclude:
                rows = np.unique(np.fromiter((int(r) for r in rows), dtype=np.int64))
                rows = rows[(rows >= 0) & (rows < n)]
                excluded.append(rows if alive is None else rows[alive[rows]])
        most_excluded = max((len(rows) for rows in excluded), default=0)
        k = min(k, live - most_excluded)
        if m == 0 or k <= 0:
            return np.zeros((m, 0), dtype=np.float32), np.zeros((m, 0), dtype=np.int64)

        out_scores = np.empty((m, k), dtype=np.float32)
        out_rows = np.empty((m, k), dtype=np.int64)
        block = max(1, _BLOCK_ENTRIES // max(n, 1))
        for start in range(0, m, block):
            stop = min(m, start + block)
            scores = queries[start:stop] @ self.embeddings.T
            if len(extra):
                scores = np.hstack([scores, queries[start:stop] @ extra.T])
            if alive is not None:
                scores[:, ~alive] = -np.inf
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
