"""A version's retrieval: dense (cosine), lexical (BM25 over normalised text) or hybrid (linear fusion).

Hybrid fusion, for one query over the union of the dense top-`candidates` and the lexical
top-`candidates`:

    score = (1 - w) * cosine(query, product) + w * BM25(query, product) / max BM25 over the candidates

BM25 is divided by the query's best candidate BM25 (so it lies in [0, 1] like a cosine of these
models mostly does) and w = `lexical_weight` is chosen on the DEV split at registration. Every
endpoint and shadow traffic reach these functions through `scoring.py`, and offline evaluation calls
the same `fuse_search`, so the figures registration reports are what /v1/search serves.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Collection, Literal, Optional, Sequence

import numpy as np

from inference_server.catalog.index import VectorIndex
from inference_server.catalog.types import Catalog
from inference_server.catalog.lexical_index import LexicalIndex

__all__ = ["DEFAULT_LEXICAL_WEIGHT", "Retrieval", "fuse_scores", "fuse_search"]

RetrievalMode = Literal["dense", "lexical", "hybrid"]
DEFAULT_LEXICAL_WEIGHT = 0.5


@dataclass
class Retrieval:
    """How one loaded version retrieves (from its model.yaml and registration artefacts)."""

    mode: RetrievalMode = "dense"
    lexical: Optional[LexicalIndex] = None
    lexical_weight: float = DEFAULT_LEXICAL_WEIGHT
    candidates: int = 200
    catalog: Optional[Catalog] = None     # product texts for rank items given by id and for recommend

    def product_text(self, product_id: str) -> str:
        product = self.catalog.get(product_id) if self.catalog is not None else None
        return product.text() if product is not None else ""

    def __post_init__(self) -> None:
        if self.mode != "dense" and self.lexical is None:
            raise ValueError(f"{self.mode} retrieval needs a lexical index")

    @property
    def uses_dense(self) -> bool:
        return self.mode != "lexical"

    def depth(self, k: int) -> int:
        """Dense hits to fetch for a top-k answer (all of them when dense is the whole answer)."""
        return k if self.mode == "dense" else max(k, self.candidates)

    def describe(self) -> dict:
        return {"mode": self.mode, "lexical_weight": self.lexical_weight if self.mode == "hybrid" else None,
                "candidates": self.candidates if self.mode == "hybrid" else None}


def fuse_scores(cosine: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    """(1 - w) * cosine + w * lexical / max(lexical) (the lexical term is 0 when nothing matched)."""
    top = float(lexical.max()) if len(lexical) else 0.0
    lexical_part = lexical / top if top > 0 else np.zeros_like(lexical)
    return ((1.0 - weight) * cosine + weight * lexical_part).astype(np.float32)


def fuse_search(retrieval: Retrieval, index: VectorIndex, query: str, query_vector: Optional[np.ndarray],
                dense_scores: Optional[np.ndarray], dense_rows: Optional[np.ndarray], k: int,
                exclude: Collection[int] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Top-k (scores, rows) of a version's retrieval, given the dense top hits already found
    (`retrieval.depth(k)` of them, `exclude` already applied). Best first; ties by row."""
    if retrieval.mode == "dense":
        return np.asarray(dense_scores[:k], dtype=np.float32), np.asarray(dense_rows[:k], dtype=np.int64)
    lexical = retrieval.lexical
    if retrieval.mode == "lexical":
        return lexical.search(query, k, exclude)
    lex_all = lexical.scores(query)
    _, lex_rows = lexical.top(lex_all, retrieval.candidates, exclude) if lex_all.any() else (None, np.zeros(0, np.int64))
    rows = np.unique(np.concatenate([np.asarray(dense_rows, dtype=np.int64), lex_rows]))
    if exclude:
        rows = rows[~np.isin(rows, np.fromiter(exclude, dtype=np.int64))]
    if len(rows) == 0:
        return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
    cosine = index.embeddings[rows] @ np.asarray(query_vector, dtype=np.float32)
    fused = fuse_scores(cosine, lex_all[rows], retrieval.lexical_weight)
    order = np.lexsort((rows, -fused))[:k]
    return fused[order], rows[order]


def fuse_items(retrieval: Retrieval, query: str, cosine: np.ndarray, texts: Sequence[str]) -> np.ndarray:
    """Scores of re-ranked items (/v1/rank): cosine, BM25 of their texts, or the fusion of both."""
    if retrieval.mode == "dense":
        return cosine
    lexical = retrieval.lexical.score_texts(query, texts)
    if retrieval.mode == "lexical":
        return lexical
    return fuse_scores(cosine, lexical, retrieval.lexical_weight)
