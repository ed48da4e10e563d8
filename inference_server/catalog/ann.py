"""Approximate nearest-neighbour index over catalog embeddings: faiss IVF or HNSW, quantised, persisted.

At millions of products an exact scan per query neither fits (5M x 384 fp32 = 7.7 GB) nor keeps up.
`AnnIndex` keeps the exact index's row bookkeeping (rows never renumbered, removed rows dead,
`apply` for catalog changes) and searches a faiss index over quantised codes (int8 scalar
quantisation by default, product quantisation or fp16 selectable) instead of scanning. The full fp32
matrix stays memory-mapped from the embedding cache: it is read only for the candidates a search
returns (re-scored exactly, so scores equal the exact index's) and for rank/recommend lookups.
faiss was chosen over usearch by measurement (docs/catalog.md): usearch's int8 assumes values in
[-1, 1] and loses recall on 384-dim unit vectors, where faiss trains the quantiser's ranges.

- `ivf` (default approximate kind): IVF with `nlist` lists, `nprobe` searched; adds and removes in
  place (catalog changes), smallest memory, fastest build.
- `hnsw`: HNSW graph; faiss cannot remove from it, so removed rows are filtered after the search.

The index is saved beside the embedding cache as `<model_fp[:16]>-<catalog_fp[:16]>-<params_fp[:12]>.faiss`
(+ `.json` with the full keys) and reloaded when all three match; anything else rebuilds it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from pathlib import Path
from typing import Collection, Optional, Sequence

import faiss
import numpy as np
from tqdm import tqdm

from inference_server.catalog.index import VectorIndex, _atomic_write
from inference_server.catalog.types import IndexConfig

__all__ = ["AnnIndex", "ann_paths", "params_fingerprint"]

log = logging.getLogger(__name__)

_BUILD_CHUNK = 50_000      # vectors per add call (progress bar granularity)
_TRAIN_PER_LIST = 64       # training vectors per IVF list (faiss wants >= 39)
_QUANTIZERS = {"sq8": faiss.ScalarQuantizer.QT_8bit, "fp16": faiss.ScalarQuantizer.QT_fp16}


def params_fingerprint(cfg: IndexConfig, n: int) -> str:
    """sha256 of the parameters that shape the index (search-time settings excluded)."""
    shaping = {"kind": cfg.kind, "quantization": cfg.quantization, "library": f"faiss-{faiss.__version__}"}
    if cfg.kind == "ivf":
        shaping.update(nlist=nlist_for(cfg, n), pq_m=cfg.pq_m if cfg.quantization in ("pq", "pq4fs") else None)
    else:
        shaping.update(hnsw_m=cfg.hnsw_m, ef_construction=cfg.ef_construction)
    return hashlib.sha256(json.dumps(shaping, sort_keys=True).encode()).hexdigest()


def nlist_for(cfg: IndexConfig, n: int) -> int:
    """Configured lists, or 4*sqrt(n); never more than the training data supports."""
    wanted = cfg.nlist or int(4 * math.sqrt(max(n, 1)))
    return max(1, min(wanted, n // 39 if n >= 39 else 1))


def ann_paths(cache_dir: str | Path, model_fp: str, catalog_fp: str, cfg: IndexConfig, n: int) -> tuple[Path, Path]:
    stem = f"{model_fp[:16]}-{catalog_fp[:16]}-{params_fingerprint(cfg, n)[:12]}"
    return Path(cache_dir) / f"{stem}.faiss", Path(cache_dir) / f"{stem}.faiss.json"


def _new_index(dim: int, cfg: IndexConfig, n: int) -> faiss.Index:
    ip = faiss.METRIC_INNER_PRODUCT
    if cfg.kind == "hnsw":
        if cfg.quantization == "flat":
            index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, ip)
        else:
            index = faiss.IndexHNSWSQ(dim, _QUANTIZERS[cfg.quantization], cfg.hnsw_m, ip)
        index.hnsw.efConstruction = cfg.ef_construction
        return index
    quantizer = faiss.IndexFlatIP(dim)
    lists = nlist_for(cfg, n)
    if cfg.quantization in ("pq", "pq4fs") and dim % cfg.pq_m:
        raise ValueError(f"index.pq_m ({cfg.pq_m}) must divide the embedding dimension {dim}")
    if cfg.quantization == "pq4fs":
        return faiss.index_factory(dim, f"IVF{lists},PQ{cfg.pq_m}x4fs", ip)
    if cfg.quantization == "pq":
        index = faiss.IndexIVFPQ(quantizer, dim, lists, cfg.pq_m, 8, ip)
    elif cfg.quantization == "flat":
        index = faiss.IndexIVFFlat(quantizer, dim, lists, ip)
    else:
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, lists, _QUANTIZERS[cfg.quantization], ip)
    return index


def _configure_search(index: faiss.Index, cfg: IndexConfig) -> None:
    if cfg.kind == "hnsw":
        faiss.downcast_index(index).hnsw.efSearch = cfg.ef_search
    else:
        faiss.extract_index_ivf(index).nprobe = cfg.nprobe


def index_memory_bytes(index: faiss.Index, kind: str) -> int:
    """Bytes the faiss structures hold: codes, ids, lists' centroids or graph links."""
    n = index.ntotal
    if kind == "hnsw":
        hnsw_index = faiss.downcast_index(index)
        storage = faiss.downcast_index(hnsw_index.storage)
        code = getattr(storage, "code_size", index.d * 4)
        hnsw = hnsw_index.hnsw
        return int(n * code + hnsw.neighbors.size() * 4 + hnsw.levels.size() * 4 + hnsw.offsets.size() * 8)
    ivf = faiss.extract_index_ivf(index)
    code = ivf.code_size
    if isinstance(ivf, faiss.IndexIVFFastScan):
        code = ivf.M2 // 2          # 4-bit codes, packed in blocks of 32
    return int(n * (code + 8) + ivf.nlist * index.d * 4)


class AnnIndex(VectorIndex):
    """faiss IVF/HNSW search over the rows of a `VectorIndex`; candidates re-scored exactly."""

    def __init__(self, base: VectorIndex, ann: faiss.Index, cfg: IndexConfig, ann_seconds: float = 0.0,
                 ann_from_cache: bool = False) -> None:
        super().__init__(base.ids, base.embeddings, base.build_seconds + ann_seconds,
                         base.from_cache and ann_from_cache)
        self.cfg = cfg
        self.kind = cfg.kind
        self.ann_seconds = ann_seconds
        self._ann = ann
        self._ann_lock = threading.Lock()   # faiss adds/removes must not overlap a search
        self._removes = cfg.kind == "ivf" and cfg.quantization != "pq4fs"   # remove_ids in place
        _configure_search(ann, cfg)

    @property
    def memory_bytes(self) -> int:
        """The faiss codes and structures, plus fp32 rows added since the build and the live mask."""
        extra, alive, _ = self._live
        return int(index_memory_bytes(self._ann, self.kind) + extra.nbytes
                   + (alive.nbytes if alive is not None else 0))

    @classmethod
    def build_ann(cls, base: VectorIndex, cfg: IndexConfig, cache_dir: Optional[str | Path],
                  model_fp: str, catalog_fp: str, progress: bool = True) -> "AnnIndex":
        """The faiss index for `base`'s rows: loaded from `cache_dir` when the keys match, else built (and saved)."""
        if cfg.threads:
            faiss.omp_set_num_threads(cfg.threads)
        started = time.perf_counter()
        n = len(base.ids)
        paths = ann_paths(cache_dir, model_fp, catalog_fp, cfg, n) if cache_dir is not None else None
        meta = {"model_fingerprint": model_fp, "catalog_fingerprint": catalog_fp,
                "params_fingerprint": params_fingerprint(cfg, n), "size": n, "dim": base.dim}
        ann = cls._load(paths, meta) if paths else None
        if ann is not None:
            return cls(base, ann, cfg, time.perf_counter() - started, ann_from_cache=True)
        ann = _new_index(base.dim, cfg, n)
        if not ann.is_trained:
            lists = nlist_for(cfg, n) if cfg.kind == "ivf" else 1
            sample = min(n, max(_TRAIN_PER_LIST * lists, 10_000))
            rows = np.sort(np.random.default_rng(0).choice(n, sample, replace=False))
            ann.train(np.asarray(base.embeddings[rows], dtype=np.float32))
        with tqdm(total=n, desc=f"building {cfg.kind} index ({cfg.quantization})", unit="vec",
                  disable=not progress, dynamic_ncols=True) as bar:
            for start in range(0, n, _BUILD_CHUNK):
                stop = min(n, start + _BUILD_CHUNK)
                _add(ann, cfg.kind, np.arange(start, stop), np.asarray(base.embeddings[start:stop], np.float32))
                bar.update(stop - start)
        if paths is not None:
            ann_path, meta_path = paths
            _atomic_write(ann_path, lambda handle: handle.write(faiss.serialize_index(ann).tobytes()))
            _atomic_write(meta_path, lambda handle: handle.write(json.dumps(meta).encode("utf-8")))
        return cls(base, ann, cfg, time.perf_counter() - started, ann_from_cache=False)

    @staticmethod
    def _load(paths: tuple[Path, Path], expected: dict) -> Optional[faiss.Index]:
        ann_path, meta_path = paths
        if not (ann_path.is_file() and meta_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            ann = faiss.read_index(str(ann_path))
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("ignoring unreadable ANN index %s: %s", ann_path, exc)
            return None
        if any(meta.get(key) != value for key, value in expected.items()) or ann.ntotal != expected["size"]:
            log.warning("rebuilding ANN index %s: keys or size differ", ann_path)
            return None
        return ann

    def _apply_rows(self, added: list[int], vectors: np.ndarray, removed: list[int]) -> None:
        with self._ann_lock:
            if removed and self._removes:      # hnsw and fast-scan lists cannot remove: dead rows are filtered
                self._ann.remove_ids(np.asarray(removed, dtype=np.int64))
            if added:
                _add(self._ann, self.kind, np.asarray(added), vectors)

    def search(self, queries: np.ndarray, k: int,
               exclude: Optional[Sequence[Collection[int]]] = None) -> tuple[np.ndarray, np.ndarray]:
        """Like `VectorIndex.search`, from the faiss index: `candidates` (at least k + exclusions) nearest
        rows re-scored with the fp32 vectors. A query left with fewer than k' rows after exclusions
        (rare: a long history of near-duplicates) is answered by the exact scan."""
        queries = self._query_matrix(queries, k)
        extra, alive, live = self._live
        m, n = queries.shape[0], len(self.embeddings) + len(extra)
        if exclude is not None and len(exclude) != m:
            raise ValueError(f"exclude has {len(exclude)} entries for {m} queries")
        excluded = [set(int(r) for r in rows if 0 <= int(r) < n and (alive is None or alive[int(r)]))
                    for rows in (exclude if exclude is not None else [()] * m)]
        most_excluded = max((len(rows) for rows in excluded), default=0)
        k_out = min(k, live - most_excluded)
        if m == 0 or k_out <= 0:
            return np.zeros((m, 0), dtype=np.float32), np.zeros((m, 0), dtype=np.int64)
        dead = 0 if self._removes else n - live     # still in the index, filtered below
        count = min(n if dead else live, max(k + most_excluded, self.cfg.candidates) + dead)
        with self._ann_lock:
            _, keys = self._ann.search(queries, count)
        out_scores = np.empty((m, k_out), dtype=np.float32)
        out_rows = np.empty((m, k_out), dtype=np.int64)
        for i in range(m):
            rows = keys[i]
            rows = rows[(rows >= 0) & (rows < n)]
            if alive is not None:
                rows = rows[alive[rows]]
            if excluded[i]:
                rows = rows[~np.isin(rows, np.fromiter(excluded[i], dtype=np.int64))]
            if len(rows) < k_out:
                scores, exact_rows = super().search(queries[i:i + 1], k_out, [excluded[i]])
                out_scores[i], out_rows[i] = scores[0], exact_rows[0]
                continue
            scores = self.vectors(rows) @ queries[i]
            order = np.lexsort((rows, -scores))[:k_out]
            out_scores[i], out_rows[i] = scores[order], rows[order]
        return out_scores, out_rows


def _add(ann: faiss.Index, kind: str, rows: np.ndarray, vectors: np.ndarray) -> None:
    """Add vectors under their row numbers (hnsw numbers them in order, which rows always are)."""
    if kind == "hnsw":
        if ann.ntotal != int(rows[0]):
            raise RuntimeError(f"hnsw index holds {ann.ntotal} rows, cannot add row {int(rows[0])}")
        ann.add(vectors)
    else:
        ann.add_with_ids(vectors, rows.astype(np.int64))
