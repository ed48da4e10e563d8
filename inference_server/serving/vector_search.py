"""Catalog searches by vector (recommend, shadow traffic), run off the event loop and coalesced.

A full-catalog search costs milliseconds at tens of thousands of products: run on the event loop it
stalls every other request. `VectorSearchBatcher` hands searches to a worker thread instead, and every
search that arrives while one runs joins the next pass, which searches all of them with one matrix
product (like the encoder's dynamic batching, without a delay: the pass starts as soon as the worker
is free).
"""
from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Collection, Optional, Sequence

import numpy as np

__all__ = ["VectorSearchBatcher", "IndexSearch"]

# (query vectors (m, dim), k, exclude per query) -> (scores (m, k'), rows (m, k')), like VectorIndex.search.
IndexSearch = Callable[[np.ndarray, int, Optional[Sequence[Collection[int]]]], tuple[np.ndarray, np.ndarray]]


@dataclass
class _Search:
    vector: np.ndarray
    k: int
    exclude: frozenset[int]
    future: asyncio.Future


class VectorSearchBatcher:
    """Coalesces concurrent vector searches on one index into passes on one worker thread."""

    def __init__(self, search: IndexSearch, *, name: str = "vector-search") -> None:
        self._search = search
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._pending: list[_Search] = []
        self._runner: Optional[asyncio.Task] = None
        self._closed = False
        self.passes = 0          # search passes run (tests and metrics read it)

    async def search(self, vector: np.ndarray, k: int,
                     exclude: Collection[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, rows) for one query vector, `exclude` rows left out."""
        if self._closed:
            raise RuntimeError("the vector search batcher is closed")
        loop = asyncio.get_running_loop()
        item = _Search(np.asarray(vector, dtype=np.float32).reshape(-1), int(k), frozenset(exclude),
                       loop.create_future())
        self._pending.append(item)
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._drain(), name="vector-search-pass")
        return await item.future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            batch = [s for s in batch if not s.future.done()]   # cancelled callers
            if not batch:
                continue
            try:
                scores, rows = await loop.run_in_executor(self._executor, self._run_pass, batch)
            except Exception as exc:  # noqa: BLE001 - handed to every caller of the pass
                for s in batch:
                    if not s.future.done():
                        s.future.set_exception(exc)
                continue
            self.passes += 1
            for at, s in enumerate(batch):
                if not s.future.done():
                    s.future.set_result((scores[at][: s.k], rows[at][: s.k]))

    def _run_pass(self, batch: list[_Search]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """Worker thread: one search per distinct k (usually one), rows sliced per caller."""
        by_k: dict[int, list[int]] = {}
        for at, s in enumerate(batch):
            by_k.setdefault(s.k, []).append(at)
        scores: list[np.ndarray] = [np.zeros(0, np.float32)] * len(batch)
        rows: list[np.ndarray] = [np.zeros(0, np.int64)] * len(batch)
        for k, members in by_k.items():
            found_scores, found_rows = self._search(np.stack([batch[i].vector for i in members]), k,
                                                    [batch[i].exclude for i in members])
            for j, i in enumerate(members):
                scores[i], rows[i] = found_scores[j], found_rows[j]
        return scores, rows

    async def close(self) -> None:
        """Finish what is queued, then stop the worker thread."""
        self._closed = True
        if self._runner is not None:
            try:
                await self._runner
            except Exception:  # noqa: BLE001
                pass
        await asyncio.get_running_loop().run_in_executor(None, self._executor.shutdown, True)
