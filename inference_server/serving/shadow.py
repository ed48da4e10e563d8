"""Score a served request again on a shadow version: same body, that version's model and index.

The answer is only measured (overlap with the live answer, drift window, the version's own latency
and batch metrics), never returned. Bodies were validated by the live handler already.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from inference_server.errors import ApiError
from inference_server.serving.state import ModelVersion, normalise

__all__ = ["score_on_version"]


async def score_on_version(mv: ModelVersion, endpoint: str, body: dict[str, Any], catalog, *, deadline: float,
                           request_id: str) -> tuple[list[str], list[float], Optional[int]]:
    """(ids, scores, query tokens) that `mv` would have answered for `body` on `endpoint`."""
    index = mv.index
    if index is None:
        raise ApiError(503, "not_ready", f"version {mv.version} has no index")
    if endpoint == "search":
        encoded = await mv.encode([body["query"]], deadline=deadline, request_id=request_id)
        scores, rows = index.search(encoded.vectors, min(int(body.get("k", 10)), len(index.ids)))
        return [index.ids[r] for r in rows[0]], [float(s) for s in scores[0]], encoded.tokens[0]
    if endpoint == "rank":
        items = body["items"]
        titled = [i for i, it in enumerate(items) if "title" in it]
        encoded = await mv.encode([body["query"]] + [items[i]["title"] for i in titled], deadline=deadline,
                                  request_id=request_id)
        vectors = np.empty((len(items), encoded.vectors.shape[1]), dtype=np.float32)
        if titled:
            vectors[titled] = encoded.vectors[1:]
        from_catalog = [i for i, it in enumerate(items) if "title" not in it]
        if from_catalog:
            vectors[from_catalog] = index.vectors([index.row(items[i]["id"]) for i in from_catalog])
        scores = vectors @ encoded.vectors[0]
        k = min(body.get("k") or len(items), len(items))
        order = np.argsort(-scores, kind="stable")[:k]
        return [items[i]["id"] for i in order], [float(scores[i]) for i in order], encoded.tokens[0]
    if endpoint == "recommend":
        rows = [index.row(pid) for pid in body["history"]]
        if any(r is None for r in rows):
            raise ApiError(422, "unknown_product", "history holds products this version's index does not know")
        profile = normalise(index.vectors(rows).mean(axis=0)).astype(np.float32)
        k = min(int(body.get("k", 10)), len(index.ids) - len(set(rows)))
        if k <= 0:
            return [], [], None
        scores, found = index.search(profile[None, :], k, exclude=[set(rows)])
        return [index.ids[r] for r in found[0]], [float(s) for s in scores[0]], None
    raise ValueError(f"no shadow scoring for endpoint {endpoint!r}")
