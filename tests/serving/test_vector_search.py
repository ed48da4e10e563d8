"""Full-catalog searches by vector run in a worker thread, coalesced, with the index's own answers."""
from __future__ import annotations

import asyncio
import threading

import numpy as np

from inference_server.catalog.index import VectorIndex
from inference_server.serving.vector_search import VectorSearchBatcher


def _index(n: int = 500, dim: int = 16) -> VectorIndex:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return VectorIndex([f"p{i}" for i in range(n)], vectors, 0.0, from_cache=False)


async def test_searches_run_off_the_event_loop_and_match_the_index():
    index = _index()
    threads: list[int] = []

    def search(queries, k, exclude):
        threads.append(threading.get_ident())
        return index.search(queries, k, exclude=exclude)

    batcher = VectorSearchBatcher(search)
    rng = np.random.default_rng(1)
    queries = rng.normal(size=(24, index.dim)).astype(np.float32)
    excludes = [{i, i + 1} for i in range(24)]
    try:
        results = await asyncio.gather(*(batcher.search(q, 5 + i % 3, exclude=ex)
                                         for i, (q, ex) in enumerate(zip(queries, excludes))))
    finally:
        await batcher.close()
    assert threads and threading.get_ident() not in threads
    assert batcher.passes < len(queries)          # concurrent searches shared passes
    for i, (scores, rows) in enumerate(results):
        want_scores, want_rows = index.search(queries[i][None, :], 5 + i % 3, exclude=[excludes[i]])
        assert rows.tolist() == want_rows[0].tolist()
        np.testing.assert_allclose(scores, want_scores[0], rtol=1e-5)
        assert not set(rows.tolist()) & excludes[i]


async def test_a_failing_pass_fails_its_callers_not_the_batcher():
    calls = 0

    def search(queries, k, exclude):
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("index gone")
        return _index().search(queries, k, exclude=exclude)

    batcher = VectorSearchBatcher(search)
    try:
        try:
            await batcher.search(np.ones(16, np.float32), 3)
            raise AssertionError("the failing pass should raise")
        except RuntimeError as exc:
            assert "index gone" in str(exc)
        scores, rows = await batcher.search(np.ones(16, np.float32), 3)
        assert len(rows) == 3
    finally:
        await batcher.close()
