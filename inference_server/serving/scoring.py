"""What search, rank and recommend compute on one model version: the single scoring path.

The HTTP handlers and shadow traffic both call these functions, so a shadow version is measured on
exactly what it would have answered. Inputs are validated request fields; the heavy work (encoding,
full-catalog search) runs in worker threads through the version's batchers, never on the event loop.
A version's retrieval mode (dense, lexical, hybrid: `retrieval.py`) applies to every endpoint here.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from inference_server.errors import ApiError
from inference_server.serving.retrieval import fuse_items, fuse_search
from inference_server.serving.state import ModelVersion, normalise

__all__ = ["Scored", "score_endpoint", "score_rank", "score_recommend", "score_search"]


@dataclass
class Scored:
    """A version's answer: product ids best first, their scores, and the timing of the model work."""

    ids: list[str]
    scores: list[float]
    query_tokens: Optional[int] = None
    queue_seconds: Optional[float] = None
    compute_seconds: Optional[float] = None
    titles: dict[str, str] = field(default_factory=dict)   # titles the request supplied (rank items)


def _index(mv: ModelVersion):
    index = mv.index
    if index is None:
        raise ApiError(503, "not_ready", f"model {mv.name} version {mv.version} has no index", retry_after=1)
    return index


async def score_search(mv: ModelVersion, query: str, k: int, *, deadline: float, request_id: str) -> Scored:
    """Top-k catalog products for a query (encoded and searched in the same batch)."""
    index = _index(mv)
    retrieval = mv.retrieval
    depth = min(retrieval.depth(k), len(index.ids)) if retrieval is not None else k
    encoded = await mv.encode([query], deadline=deadline, request_id=request_id, top_k=depth)
    scores, rows = encoded.scores, encoded.rows
    if retrieval is not None and retrieval.mode != "dense":
        scores, rows = await asyncio.get_running_loop().run_in_executor(
            None, fuse_search, retrieval, index, query, encoded.vectors[0], scores, rows, k)
    return Scored([index.ids[r] for r in rows], [float(s) for s in scores], encoded.tokens[0],
                  encoded.queue_seconds, encoded.compute_seconds)


async def score_rank(mv: ModelVersion, query: str, items: Sequence[Mapping[str, Any]], k: Optional[int], *,
                     deadline: float, request_id: str) -> Scored:
    """Re-rank `items` ({"id", optional "title"}) for a query; untitled items use the catalog's vectors."""
    index = _index(mv)
    titled = [i for i, it in enumerate(items) if "title" in it]
    from_catalog = [i for i, it in enumerate(items) if "title" not in it]
    rows = [index.row(items[i]["id"]) for i in from_catalog]
    if any(r is None for r in rows):
        raise ApiError(422, "unknown_product", f"items hold products version {mv.version}'s index does not know")
    encoded = await mv.encode([query] + [items[i]["title"] for i in titled], deadline=deadline,
                              request_id=request_id)
    vectors = np.empty((len(items), encoded.vectors.shape[1]), dtype=np.float32)
    if titled:
        vectors[titled] = encoded.vectors[1:]
    if from_catalog:
        vectors[from_catalog] = index.vectors(rows)
    scores = vectors @ encoded.vectors[0]
    if mv.retrieval is not None and mv.retrieval.mode != "dense":
        texts = [it["title"] if "title" in it else mv.retrieval.product_text(it["id"]) for it in items]
        scores = fuse_items(mv.retrieval, query, scores, texts)
    order = np.argsort(-scores, kind="stable")[: min(k or len(items), len(items))]
    return Scored([items[i]["id"] for i in order], [float(scores[i]) for i in order], encoded.tokens[0],
                  encoded.queue_seconds, encoded.compute_seconds,
                  titles={it["id"]: it["title"] for it in items if "title" in it})


async def score_recommend(mv: ModelVersion, history: Sequence[str], k: int) -> Scored:
    """Products closest to the mean vector of a shopper's history, the history itself excluded."""
    index = _index(mv)
    rows = [index.row(product_id) for product_id in history]
    if any(r is None for r in rows):
        raise ApiError(422, "unknown_product", f"history holds products version {mv.version}'s index does not know")
    profile = normalise(index.vectors(rows).mean(axis=0)).astype(np.float32)
    k = min(k, len(index) - len(set(rows)))
    if k <= 0:
        return Scored([], [])
    retrieval = mv.retrieval
    if retrieval is None or retrieval.mode == "dense":
        scores, found = await mv.search_vector(profile, k, exclude=set(rows))
        return Scored([index.ids[r] for r in found], [float(s) for s in scores])
    # lexical / hybrid: the history's product texts are the lexical query ("more like these")
    depth = min(retrieval.depth(k), len(index.ids) - len(set(rows)))
    dense_scores, dense_rows = await mv.search_vector(profile, depth, exclude=set(rows))
    text = " ".join(retrieval.product_text(pid) for pid in dict.fromkeys(history))
    scores, found = await asyncio.get_running_loop().run_in_executor(
        None, fuse_search, retrieval, index, text, profile, dense_scores, dense_rows, k, set(rows))
    return Scored([index.ids[r] for r in found], [float(s) for s in scores])


async def score_endpoint(mv: ModelVersion, endpoint: str, body: Mapping[str, Any], *, deadline: float,
                         request_id: str) -> Scored:
    """Score a validated request body of `endpoint` on `mv` (shadow traffic replays bodies this way)."""
    if endpoint == "search":
        return await score_search(mv, body["query"], min(int(body.get("k", 10)), len(_index(mv))),
                                  deadline=deadline, request_id=request_id)
    if endpoint == "rank":
        return await score_rank(mv, body["query"], body["items"], body.get("k"), deadline=deadline,
                                request_id=request_id)
    if endpoint == "recommend":
        return await score_recommend(mv, body["history"], int(body.get("k", 10)))
    raise ValueError(f"no scoring for endpoint {endpoint!r}")
