"""Catalog updates without a restart: the one place a change reaches the catalog and every index.

`CatalogUpdater.submit(changes)` queues a change (admin endpoint, catalog-file watcher); one worker
thread applies what is pending, coalesced into one change, in this order:

1. the next catalog (`apply_changes`);
2. for every loaded model version (each has its own vectors): embed the upserted products with that
   version's encoder, in batches, and `index.apply` them (new rows searchable, removed rows dead);
3. every `CatalogChangeListener` in `listeners` (the lexical index of hybrid retrieval plugs in here);
4. the new catalog becomes the served one; `submit` returns (the change is searchable now);
5. then, off the request path, each version's vectors of the new catalog are written to the
   embedding cache under (model fingerprint, new catalog fingerprint), so a restart with the
   updated catalog loads them instead of re-embedding.

Removed products are dead in every index before `submit` returns, so no search that starts
afterwards can return them.
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from inference_server.catalog import Catalog, CatalogBundle, CatalogError, load_catalog
from inference_server.catalog.changes import CatalogChangeListener, CatalogChanges, apply_changes, diff_catalogs
from inference_server.catalog.index import encode_texts, store_cached
from inference_server.serving.state import ModelVersion, ServingState

__all__ = ["CatalogFileWatcher", "CatalogIndexCollector", "CatalogUpdater", "UpdateResult"]

log = logging.getLogger(__name__)


@dataclass
class UpdateResult:
    """What an applied change did."""

    upserted: int
    removed: int
    catalog_products: int
    apply_seconds: float
    versions: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    changes: CatalogChanges
    future: asyncio.Future


class CatalogUpdater:
    """Applies queued catalog changes to the catalog and to every index, one batch at a time."""

    def __init__(self, state: ServingState, *, persist: bool = True) -> None:
        self.state = state
        self.persist = persist
        self.listeners: list[CatalogChangeListener] = []
        self._pending: list[_Pending] = []
        self._runner: Optional[asyncio.Task] = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-update")
        self.applied = 0                      # change batches applied
        self.last_apply_seconds: Optional[float] = None
        self.last_persist_seconds: Optional[float] = None

    @property
    def pending(self) -> int:
        """Products (upserts + removals) waiting to be applied."""
        return sum(len(p.changes) for p in self._pending)

    async def submit(self, changes: CatalogChanges) -> UpdateResult:
        """Queue a change; returns once it is applied to the catalog and every index."""
        if self.state.catalog is None:
            raise CatalogError("the catalog is not loaded yet")
        loop = asyncio.get_running_loop()
        item = _Pending(changes, loop.create_future())
        self._pending.append(item)
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._drain(), name="catalog-update")
        return await asyncio.shield(item.future)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch, self._pending = self._pending, []
            merged = batch[0].changes
            for item in batch[1:]:
                merged = merged.merge(item.changes)
            versions = [mv for mv in self.state.versions() if mv.index is not None and mv.backend is not None]
            try:
                catalog, result = await loop.run_in_executor(self._executor, self._apply, merged, versions)
            except Exception as exc:  # noqa: BLE001 - handed to every submitter of the batch
                log.exception("catalog update of %d products failed", len(merged))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            bundle = self.state.bundle
            self.state.bundle = CatalogBundle(catalog, bundle.queries if bundle is not None else [])
            self.applied += 1
            self.last_apply_seconds = result.apply_seconds
            log.info("catalog update: %d upserted, %d removed -> %d products (%.2f s)", result.upserted,
                     result.removed, result.catalog_products, result.apply_seconds)
            for item in batch:
                if not item.future.done():
                    item.future.set_result(result)
            if self.persist and not self._pending:
                await loop.run_in_executor(self._executor, self._persist, catalog, versions)

    def _apply(self, changes: CatalogChanges, versions: list[ModelVersion]) -> tuple[Catalog, UpdateResult]:
        """Worker thread: next catalog, each version's vectors and index, then the listeners."""
        started = time.perf_counter()
        catalog = apply_changes(self.state.catalog, changes)
        texts = [p.text() for p in changes.upserts]
        ids = [p.id for p in changes.upserts]
        embedded = []   # every version's vectors first: an encoder failure leaves every index untouched
        for mv in versions:
            vectors = encode_texts(mv.backend, texts, batch_size=mv.batching.effective_batch_size,
                                   progress=False) if texts else np.zeros((0, mv.index.dim), np.float32)
            if not np.isfinite(vectors).all():
                raise RuntimeError(f"model {mv.name} version {mv.version} produced non-finite embeddings")
            embedded.append((mv, vectors))
        for mv, vectors in embedded:
            mv.index.apply(list(zip(ids, vectors)), changes.removals)
        for listener in self.listeners:
            listener.apply(changes, catalog)
        return catalog, UpdateResult(len(changes.upserts), len(changes.removals), len(catalog),
                                     time.perf_counter() - started, [f"{mv.name}/{mv.version}" for mv in versions])

    def _persist(self, catalog: Catalog, versions: list[ModelVersion]) -> None:
        """Worker thread: each version's vectors of `catalog`, in catalog order, into the embedding cache."""
        started = time.perf_counter()
        cache_dir = self.state.config.catalog.cache_dir
        for mv in versions:
            index, backend = mv.index, mv.backend
            if index is None or backend is None:
                continue
            rows = [index.row(pid) for pid in catalog.ids()]
            if any(r is None for r in rows):   # a later change is already in the index: its turn will come
                continue
            try:
                store_cached(cache_dir, backend.fingerprint(), catalog, index.vectors(rows))
            except OSError as exc:
                log.warning("could not write the embedding cache after a catalog update: %s", exc)
        self.last_persist_seconds = time.perf_counter() - started

    async def close(self) -> None:
        """Finish what is pending (and its cache write), then stop the worker thread."""
        if self._runner is not None:
            await asyncio.gather(self._runner, return_exceptions=True)
        await asyncio.to_thread(self._executor.shutdown, True)


class CatalogFileWatcher:
    """Polls the catalog file (csv source) and submits the difference when it changes."""

    def __init__(self, updater: CatalogUpdater, path: str | Path, interval_s: float) -> None:
        self.updater = updater
        self.path = Path(path)
        self.interval_s = interval_s
        self._seen = self._stamp()
        self.errors = 0

    def _stamp(self) -> Optional[tuple[int, int]]:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        cfg = self.updater.state.config.catalog
        while True:
            await asyncio.sleep(self.interval_s)
            stamp = self._stamp()
            if stamp is None or stamp == self._seen or self.updater.state.catalog is None:
                continue
            self._seen = stamp
            try:
                bundle = await loop.run_in_executor(None, load_catalog, cfg)
            except CatalogError as exc:   # a half-written or broken file: keep serving the last good one
                self.errors += 1
                log.error("catalog file %s changed but is not valid, keeping the current catalog: %s", self.path, exc)
                continue
            changes = diff_catalogs(self.updater.state.catalog, bundle.catalog.products)
            if len(changes):
                log.info("catalog file %s changed: %d upserts, %d removals", self.path, len(changes.upserts),
                         len(changes.removals))
                try:
                    await self.updater.submit(changes)
                except Exception:  # noqa: BLE001 - logged by the updater; the watcher keeps watching
                    self.errors += 1


class CatalogIndexCollector(Collector):
    """Catalog-update and index gauges, read at scrape time (bounded labels: model, version, kind)."""

    def __init__(self, updater: CatalogUpdater) -> None:
        self.updater = updater

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        return [
            GaugeMetricFamily("inference_catalog_pending_changes",
                              "Products (upserts + removals) waiting to be applied to the catalog."),
            GaugeMetricFamily("inference_catalog_update_duration_seconds",
                              "Time to apply the last catalog change to the catalog and every index."),
            GaugeMetricFamily("inference_index_memory_bytes", "Memory the search index of a version holds.",
                              labels=["model", "version", "kind"]),
            GaugeMetricFamily("inference_index_products", "Live products in the search index of a version.",
                              labels=["model", "version", "kind"]),
            GaugeMetricFamily("inference_index_merge_duration_seconds",
                              "Time of the last catalog change merged into the index of a version.",
                              labels=["model", "version", "kind"]),
            GaugeMetricFamily("inference_index_version_build_duration_seconds",
                              "Time to build (or load from cache) the search index of a version.",
                              labels=["model", "version", "kind"]),
        ]

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return self._families()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        pending, update, memory, products, merge, build = families = self._families()
        pending.add_metric([], self.updater.pending)
        if self.updater.last_apply_seconds is not None:
            update.add_metric([], self.updater.last_apply_seconds)
        for mv in self.updater.state.versions():
            index = mv.index
            if index is None:
                continue
            labels = [mv.name, mv.version, index.kind]
            memory.add_metric(labels, index.memory_bytes)
            products.add_metric(labels, len(index))
            build.add_metric(labels, index.build_seconds)
            if index.merge_seconds is not None:
                merge.add_metric(labels, index.merge_seconds)
        return families
