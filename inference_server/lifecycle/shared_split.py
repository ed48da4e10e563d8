"""One traffic split for every replica: the router follows a shared document, changes go through it.

Every change (set, promote, rollback, drain, a shadow dropped at unload) is made on the latest stored
split and written back with compare-and-swap (split_store.py). When another replica won the race, the
change is re-applied on the fresh split, up to `traffic.store.max_attempts` times, then refused (409):
two concurrent changes are both applied in turn, or one is refused, never silently lost. Every replica
polls the document every `poll_interval_s` and adopts a newer one, so a rollback delivered to one
replica (Alertmanager's webhook goes through a Service to one pod) reaches all of them within a poll.

With `traffic.store.kind: memory` (one process) nothing is shared and changes apply directly, as before.
Store calls of a change are synchronous (a file operation, or one GET and one PUT to the API server):
admin actions are rare and must answer with the outcome; polling runs in a worker thread.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from pathlib import Path
from typing import Callable, Optional, TypeVar

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from inference_server.config import ConfigError, SplitStoreConfig
from inference_server.lifecycle.split_store import (
    ConfigMapSplitStore,
    FileSplitStore,
    SplitConflict,
    SplitStore,
    SplitStoreError,
    StoredSplit,
)
from inference_server.serving.traffic import Split, TrafficError, TrafficRouter

__all__ = ["SharedSplit", "open_store"]

log = logging.getLogger(__name__)
T = TypeVar("T")
SCHEMA = 1


def open_store(cfg: SplitStoreConfig, model: str, state_dir: str) -> Optional[SplitStore]:
    """The configured store, or None for `memory`."""
    if cfg.kind == "file":
        return FileSplitStore(Path(cfg.path) if cfg.path else Path(state_dir) / "traffic" / f"{model}.json")
    if cfg.kind == "configmap":
        try:
            return ConfigMapSplitStore.in_cluster(cfg.configmap, cfg.namespace)
        except Exception as exc:  # noqa: BLE001 - no service account, no kubeconfig, kubernetes missing
            raise ConfigError("traffic.store.kind", f"configmap: no Kubernetes API access ({type(exc).__name__}: "
                                                    f"{exc}); run in a pod with a ServiceAccount or set a kubeconfig")
    return None


def _same(a: tuple[Split, tuple[Split, ...]], b: tuple[Split, tuple[Split, ...]]) -> bool:
    return (a[0].same_as(b[0]) and len(a[1]) == len(b[1])
            and all(x.same_as(y) for x, y in zip(a[1], b[1])))


class SplitMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.updates = Counter("inference_traffic_split_updates_total",
                               "Traffic split changes applied by this replica, by origin (local: made here; "
                               "remote: adopted from the shared store).", ("model", "origin"), registry=registry)
        self.conflicts = Counter("inference_traffic_split_conflicts_total",
                                 "Compare-and-swap writes of the shared split lost to a concurrent change.",
                                 ("model",), registry=registry)
        self.errors = Counter("inference_traffic_split_store_errors_total",
                              "Reads or writes of the shared split store that failed.", ("model",), registry=registry)


class SplitCollector(Collector):
    """The revision of the split this replica applies and when it last agreed with the store."""

    def __init__(self, shared: "SharedSplit") -> None:
        self._shared = shared

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        revision = GaugeMetricFamily("inference_traffic_split_revision",
                                     "Revision of the shared traffic split this replica applies (0: not shared).",
                                     labels=("model",))
        synced = GaugeMetricFamily("inference_traffic_split_last_sync_timestamp_seconds",
                                   "When this replica last read or wrote the shared split store (Unix time).",
                                   labels=("model",))
        return [revision, synced]

    def describe(self):
        return self._families()

    def collect(self):
        revision, synced = self._families()
        s = self._shared
        revision.add_metric((s.model,), float(s.revision))
        if s.store is not None and s.last_sync:
            synced.add_metric((s.model,), s.last_sync)
        return [revision, synced]


class SharedSplit:
    """Keeps `router` in step with `store` (None: in-process only)."""

    def __init__(self, model: str, router: TrafficRouter, store: Optional[SplitStore], *, registry: CollectorRegistry,
                 poll_interval_s: float = 1.0, max_attempts: int = 5,
                 on_change: Callable[[], None] = lambda: None) -> None:
        self.model, self.router, self.store = model, router, store
        self.poll_interval_s, self.max_attempts = poll_interval_s, max_attempts
        self.on_change = on_change
        self.metrics = SplitMetrics(registry)
        for origin in ("local", "remote"):
            self.metrics.updates.labels(model, origin)
        self.metrics.conflicts.labels(model)
        self.metrics.errors.labels(model)
        self.revision = 0
        self.last_sync = 0.0
        self._token: Optional[str] = None
        self._local_changes = 0  # bumped by every local write; a poll that raced one is discarded
        self.replica = f"{socket.gethostname()}:{os.getpid()}"
        registry.register(SplitCollector(self))

    @property
    def shared(self) -> bool:
        return self.store is not None

    # ---- document <-> router -------------------------------------------------------------------
    def _document(self, action: str) -> dict:
        split, stable = self.router.snapshot()
        return {"schema": SCHEMA, "model": self.model, "revision": self.revision + 1, "split": split.as_json(),
                "stable": [s.as_json() for s in stable], "updated_by": self.replica, "action": action,
                "updated_at": time.time()}

    def _adopt(self, stored: StoredSplit) -> None:
        doc = stored.doc
        if doc.get("model") not in (None, self.model):
            raise SplitStoreError(f"{self.store.description} holds the split of model {doc.get('model')!r}, "
                                  f"not {self.model!r}")
        try:
            split = Split.from_json(doc.get("split") or {})
            stable = [Split.from_json(s) for s in doc.get("stable") or []]
        except TrafficError as exc:
            raise SplitStoreError(f"{self.store.description}: invalid split document: {exc}") from None
        self.router.restore(split, stable)
        self._token = stored.token
        self.revision = int(doc.get("revision") or 0)

    # ---- start ---------------------------------------------------------------------------------
    def start(self, configured: Optional[Split]) -> None:
        """At start-up: adopt the stored split (a late replica joins the current one), or publish the
        configured split when there is none yet."""
        if self.store is None:
            if configured is not None:
                self.router.reset(configured)
            return
        for _ in range(self.max_attempts):
            stored = self.store.read()
            if stored is not None and stored.doc:
                self._adopt(stored)
                self.last_sync = time.time()
                log.info("traffic split of %s adopted from %s (revision %d): %s", self.model,
                         self.store.description, self.revision, self.router.split.as_percent())
                return
            if configured is not None:
                self.router.reset(configured)
            try:
                self._token = self.store.write(self._document("initial"), stored.token if stored else None)
            except SplitConflict:
                continue  # another replica published first: adopt theirs
            self.revision += 1
            self.last_sync = time.time()
            log.info("traffic split of %s published to %s: %s", self.model, self.store.description,
                     self.router.split.as_percent())
            return
        raise SplitConflict(f"{self.store.description}: kept changing during start-up")

    # ---- changing ------------------------------------------------------------------------------
    def change(self, op: Callable[[TrafficRouter], T], action: str) -> T:
        """Apply `op` to the latest shared split and store the result (compare-and-swap, retried).

        Raises TrafficError from `op`, SplitConflict when every attempt lost a race, SplitStoreError when
        the store fails; in every failure the router keeps the split it had before (or the latest stored one).
        """
        if self.store is None:
            result = op(self.router)
            self.metrics.updates.labels(self.model, "local").inc()
            return result
        self._local_changes += 1
        before = self.router.snapshot()
        try:
            for attempt in range(1, self.max_attempts + 1):
                stored = self.store.read()
                if stored is not None and stored.doc and stored.token != self._token:
                    self._adopt(stored)
                    self.metrics.updates.labels(self.model, "remote").inc()
                    self.on_change()
                    before = self.router.snapshot()
                result = op(self.router)
                if _same(before, self.router.snapshot()):
                    return result  # nothing changed (e.g. draining a drained version): no write
                try:
                    self._token = self.store.write(self._document(action), stored.token if stored else None)
                except SplitConflict:
                    self.metrics.conflicts.labels(self.model).inc()
                    self.router.restore(*before)
                    log.info("traffic split of %s changed concurrently (attempt %d/%d of %s); retrying",
                             self.model, attempt, self.max_attempts, action)
                    continue
                self.revision += 1
                self.last_sync = time.time()
                self.metrics.updates.labels(self.model, "local").inc()
                return result
        except SplitStoreError:
            self.metrics.errors.labels(self.model).inc()
            self.router.restore(*before)
            raise
        except TrafficError:
            self.router.restore(*before)
            raise
        raise SplitConflict(f"{action}: the traffic split of {self.model} changed concurrently "
                            f"{self.max_attempts} times in a row; read it again and retry")

    # ---- following -----------------------------------------------------------------------------
    async def sync(self) -> bool:
        """Read the store once and adopt a newer split; True when the router changed."""
        if self.store is None:
            return False
        marker = self._local_changes
        try:
            stored = await asyncio.to_thread(self.store.read)
        except SplitStoreError as exc:
            self.metrics.errors.labels(self.model).inc()
            log.warning("traffic split store %s not readable (keeping the current split): %s",
                        self.store.description, exc)
            return False
        if marker != self._local_changes:
            return False  # a local change was written meanwhile; this read may predate it
        self.last_sync = time.time()
        if stored is None or not stored.doc or stored.token == self._token:
            return False
        try:
            self._adopt(stored)
        except SplitStoreError as exc:
            self.metrics.errors.labels(self.model).inc()
            log.error("%s (keeping the current split)", exc)
            return False
        self.metrics.updates.labels(self.model, "remote").inc()
        log.info("traffic split of %s follows %s (revision %d, %s by %s): %s", self.model,
                 self.store.description, self.revision, stored.doc.get("action"), stored.doc.get("updated_by"),
                 self.router.split.as_percent())
        self.on_change()
        return True

    async def follow(self) -> None:
        """Poll the store forever (a background task of the lifecycle)."""
        while True:
            await asyncio.sleep(self.poll_interval_s)
            try:
                await self.sync()
            except Exception:  # noqa: BLE001 - the follower must survive anything
                log.exception("following the shared traffic split failed")
