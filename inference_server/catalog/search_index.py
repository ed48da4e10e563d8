"""The one place a catalog's search index is made: exact (the reference) or approximate, per config."""
from __future__ import annotations

from pathlib import Path

from inference_server.catalog.ann import AnnIndex
from inference_server.catalog.index import VectorIndex
from inference_server.catalog.types import Catalog, IndexConfig
from inference_server.models.backend import EncoderBackend

__all__ = ["build_search_index"]


def build_search_index(catalog: Catalog, backend: EncoderBackend, cfg: IndexConfig, cache_dir: str | Path,
                       progress: bool = False) -> VectorIndex:
    """Embeddings from the cache (or the model), then the index `cfg.kind` asks for."""
    if cfg.kind == "exact":
        return VectorIndex.build(catalog, backend, cache_dir, progress=progress)
    base = VectorIndex.build(catalog, backend, cache_dir, progress=progress, mmap=True)
    return AnnIndex.build_ann(base, cfg, cache_dir, backend.fingerprint(), catalog.fingerprint(), progress)
