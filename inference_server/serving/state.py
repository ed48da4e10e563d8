"""Serving state: the loaded model versions, the shared catalog, and the routing hook.

Several versions of a model can be loaded side by side, keyed by (name, version); each has its own
backend, dynamic batcher and catalog index (embeddings depend on the model). Requests reach a
version only through `ServingState.route`, which calls the replaceable `router` (default:
`choose_version`); the traffic policy of the model lifecycle installs its own router there.
`response_observers` are told about every served response (feedback joins, drift windows,
shadow traffic hook in there).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Literal, Optional, Sequence

import numpy as np

from inference_server.catalog import Catalog, CatalogBundle
from inference_server.catalog.index import VectorIndex
from inference_server.catalog.search_index import build_search_index
from inference_server.config import AppConfig, BatchingConfig
from inference_server.models.backend import EncoderBackend, ModelSpec
from inference_server.models.parity import enforce_parity
from inference_server.models.registry import create_backend

from inference_server.serving.batching import DynamicBatcher, EncodeResult
from inference_server.serving.retrieval import Retrieval
from inference_server.serving.vector_search import VectorSearchBatcher
from inference_server.errors import ApiError
from inference_server.serving.metrics import ServerMetrics

__all__ = [
    "BackendFactory",
    "LoadedParts",
    "ModelVersion",
    "RoutingContext",
    "RoutingDecision",
    "ServedResponse",
    "ServingState",
    "VersionState",
    "choose_version",
    "warm_up",
]

log = logging.getLogger(__name__)

VersionState = Literal["loading", "ready", "failed", "unloaded"]
BackendFactory = Callable[[ModelSpec], EncoderBackend]


class ModelVersion:
    """One loaded (or loading, or failed) version of a model with its batcher and index."""

    def __init__(self, spec: ModelSpec, batching: BatchingConfig) -> None:
        self.spec = spec
        self.name = spec.name
        self.version = spec.version
        self.batching = batching
        self.state: VersionState = "loading"
        self.error: Optional[str] = None
        self.backend: Optional[EncoderBackend] = None
        self.batcher: Optional[DynamicBatcher] = None
        self.index: Optional[VectorIndex] = None
        self.searcher: Optional[VectorSearchBatcher] = None   # full-catalog searches by vector, off the loop
        self.retrieval: Optional[Retrieval] = None            # dense / lexical / hybrid (None = dense)
        self.artifacts: Any = None                            # what the builder registered it with (lifecycle)
        self.load_seconds: Optional[float] = None
        self.warmup_seconds: Optional[float] = None
        self.index_seconds: Optional[float] = None
        self.index_from_cache: Optional[bool] = None
        self.loaded_at: Optional[float] = None
        self.traffic_weight: float = 1.0
        self.shadow: bool = False
        # Named checks -> {"ok": bool, "detail": str}; the lifecycle adds finite_weights/golden_set.
        self.health: dict[str, dict[str, Any]] = {}
        self._in_flight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def key(self) -> tuple[str, str]:
        return (self.name, self.version)

    @property
    def is_ready(self) -> bool:
        return self.state == "ready" and self.batcher is not None and self.index is not None

    async def encode(
        self, texts: Sequence[str], *, deadline: float, request_id: str, top_k: Optional[int] = None
    ) -> EncodeResult:
        """Encode through this version's batcher; with top_k, also its catalog hits (one text)."""
        batcher, index = self.batcher, self.index
        if batcher is None or index is None or self.state not in ("ready", "loading"):
            raise ApiError(503, "not_ready", f"model {self.name} version {self.version} is {self.state}",
                           retry_after=1)
        if top_k is not None and batcher.searcher is None:
            # A batcher built without a searcher: search here, one query at a time.
            result = await batcher.encode(texts, deadline=deadline, request_id=request_id)
            scores, rows = index.search(result.vectors[:1], top_k)
            result.scores, result.rows = scores[0], rows[0]
            return result
        return await batcher.encode(texts, deadline=deadline, request_id=request_id, top_k=top_k)

    async def search_vector(self, vector: np.ndarray, k: int, exclude=()) -> tuple[np.ndarray, np.ndarray]:
        """Top-k catalog rows for a query vector, searched in a worker thread (coalesced with others)."""
        searcher = self.searcher
        if searcher is None or self.state not in ("ready", "loading"):
            raise ApiError(503, "not_ready", f"model {self.name} version {self.version} is {self.state}",
                           retry_after=1)
        return await searcher.search(vector, k, exclude)

    def attach(self, parts: "LoadedParts", metrics: ServerMetrics, retry_after_s: int) -> None:
        """Take the loaded backend and index, start the batchers (on the event loop)."""
        self.backend, self.index, self.artifacts = parts.backend, parts.index, parts.artifacts
        self.retrieval = parts.retrieval
        self.load_seconds, self.warmup_seconds = parts.load_seconds, parts.warmup_seconds
        self.index_seconds, self.index_from_cache = parts.index.build_seconds, parts.index.from_cache
        self.loaded_at = time.time()
        self.batcher = DynamicBatcher(parts.backend, self.batching, metrics, model=self.name, version=self.version,
                                      retry_after_s=retry_after_s, searcher=parts.index.search)
        self.batcher.start()
        self.searcher = VectorSearchBatcher(parts.index.search, name=f"search-{self.name}-{self.version}")

    @contextlib.contextmanager
    def in_use(self) -> Iterator["ModelVersion"]:
        """Mark a request as running on this version, so an unload can wait for it (`drain`)."""
        self._in_flight += 1
        self._idle.clear()
        try:
            yield self
        finally:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.set()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    async def drain(self, timeout: Optional[float] = None) -> bool:
        """Wait until no request uses this version; False if `timeout` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self) -> None:
        """Stop the batcher and free the model (state becomes `unloaded`)."""
        self.state = "unloaded"
        if self.batcher is not None:
            await self.batcher.close()
            self.batcher = None
        if self.searcher is not None:
            await self.searcher.close()
            self.searcher = None
        backend, self.backend = self.backend, None
        self.index = None
        if backend is not None:
            await asyncio.get_running_loop().run_in_executor(None, backend.close)

    def describe(self) -> dict[str, Any]:
        """The `/v1/models` entry."""
        backend = self.backend
        return {
            "name": self.name,
            "version": self.version,
            "state": self.state,
            "backend": backend.backend_name if backend else self.spec.backend,
            "device": backend.device if backend else self.spec.device,
            "dtype": backend.dtype if backend else self.spec.dtype,
            "traffic_weight": self.traffic_weight,
            "shadow": self.shadow,
            "health": dict(self.health),
            "error": self.error,
            "load_seconds": self.load_seconds,
            "warmup_seconds": self.warmup_seconds,
            "index_seconds": self.index_seconds,
            "index_products": len(self.index) if self.index is not None else None,
            "index_kind": self.index.kind if self.index is not None else None,
            "retrieval": self.retrieval.describe() if self.retrieval is not None else {"mode": "dense"},
            "batching": {
                "enabled": self.batching.enabled,
                "max_batch_size": self.batching.max_batch_size,
                "max_queue_delay_ms": self.batching.max_queue_delay_ms,
                "max_queue_size": self.batching.max_queue_size,
            },
        }


@dataclass
class LoadedParts:
    """What a version builder produced in its worker thread."""

    backend: EncoderBackend
    index: VectorIndex
    load_seconds: float
    warmup_seconds: float
    artifacts: Any = None
    retrieval: Optional[Retrieval] = None


# Runs in a worker thread: loads, checks and warms up a version's parts; raises when a check fails.
VersionBuilder = Callable[[ModelVersion], LoadedParts]


def warm_up(backend: EncoderBackend, batching: BatchingConfig) -> float:
    """Warm-up passes at the batch sizes the batcher will use; raises on non-finite output. Seconds spent."""
    size = batching.effective_batch_size
    seconds = backend.warmup(sorted({1, min(8, size), size}))
    if not np.isfinite(backend.encode(["warm-up check"])).all():
        raise ValueError("warm-up produced non-finite embeddings")
    return seconds


@dataclass(frozen=True)
class RoutingContext:
    """What the router may look at: never the query text."""

    endpoint: str
    request_id: str
    user_id: Optional[str] = None
    model: Optional[str] = None     # requested model name; None -> the default model


@dataclass(frozen=True)
class RoutingDecision:
    primary: ModelVersion
    shadows: tuple[ModelVersion, ...] = ()


@dataclass
class ServedResponse:
    """A successful model response, for observers (feedback store, drift windows, shadow runs)."""

    endpoint: str
    request_id: str
    model: str
    version: str
    user_id: Optional[str]
    result_ids: list[str]
    scores: list[float]
    query_tokens: Optional[int]
    k: int
    served_at: float = field(default_factory=time.time)
    request: dict[str, Any] = field(default_factory=dict)   # the validated body (for shadow replays)
    shadows: tuple[ModelVersion, ...] = ()


Router = Callable[[RoutingContext, "ServingState"], RoutingDecision]
Observer = Callable[[ServedResponse], Optional[Awaitable[None]]]
RequestHook = Callable[[ModelVersion], Awaitable[None]]


@functools.lru_cache(maxsize=4096)   # routing sorts versions on every request; versions are few
def _version_sort_key(version: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"[._-]", version))


def choose_version(ctx: RoutingContext, state: "ServingState") -> RoutingDecision:
    """Default router: the ready version with the largest traffic weight (ties: the newest)."""
    model = ctx.model or state.default_model
    candidates = [mv for mv in state.ready_versions(model) if mv.traffic_weight > 0] or state.ready_versions(model)
    if not candidates:
        raise state.not_ready_error(model)
    best = max(candidates, key=lambda mv: (mv.traffic_weight, _version_sort_key(mv.version)))
    return RoutingDecision(best)


class ServingState:
    """Everything the request handlers serve from; owned by the app (see `app.SERVING_STATE`)."""

    def __init__(
        self,
        config: AppConfig,
        metrics: ServerMetrics,
        *,
        backend_factory: Optional[BackendFactory] = None,
    ) -> None:
        self.config = config
        self.metrics = metrics
        self.backend_factory: BackendFactory = backend_factory or create_backend
        self.default_model = config.model.name
        self.bundle: Optional[CatalogBundle] = None
        self.index_build_seconds: Optional[float] = None
        self.startup_error: Optional[str] = None
        self.router: Router = choose_version
        self.response_observers: list[Observer] = []
        # Awaited after routing, before the model work of search/rank/recommend (e.g. fault drills:
        # added latency, injected errors); a hook may raise ApiError.
        self.request_hooks: list[RequestHook] = []
        self._versions: dict[tuple[str, str], ModelVersion] = {}
        self._background: set[asyncio.Task] = set()
        self._retiring: set[asyncio.Task] = set()    # displaced instances draining, then closing

    # -- versions ----------------------------------------------------------------------------

    @property
    def catalog(self) -> Optional[Catalog]:
        return self.bundle.catalog if self.bundle is not None else None

    def versions(self) -> list[ModelVersion]:
        return sorted(self._versions.values(), key=lambda mv: (mv.name, _version_sort_key(mv.version)))

    def get(self, name: str, version: str) -> Optional[ModelVersion]:
        return self._versions.get((name, version))

    def ready_versions(self, model: Optional[str] = None) -> list[ModelVersion]:
        return [mv for mv in self.versions() if mv.is_ready and (model is None or mv.name == model)]

    @property
    def is_ready(self) -> bool:
        return bool(self.ready_versions())

    def not_ready_error(self, model: Optional[str] = None) -> ApiError:
        retry = self.config.server.not_ready_retry_after_s
        if self.startup_error:
            return ApiError(503, "not_ready", f"server failed to start: {self.startup_error}", retry_after=retry)
        what = f"model {model!r}" if model else "any model"
        return ApiError(503, "not_ready", f"no version of {what} is ready yet (loading)", retry_after=retry)

    async def run_request_hooks(self, mv: ModelVersion) -> None:
        for hook in self.request_hooks:
            await hook(mv)

    def install_version(self, mv: ModelVersion) -> Optional[ModelVersion]:
        """Put `mv` under its (name, version) key in one assignment and return what it replaced.

        For versions built off to the side (load, health checks, warm-up): installing over a loaded
        copy is the atomic swap of a reload; the caller drains and closes the replaced one.
        """
        replaced = self._versions.get(mv.key)
        self._versions[mv.key] = mv
        self.metrics.init_version(mv.name, mv.version)
        return replaced

    def route(self, ctx: RoutingContext) -> RoutingDecision:
        """The version that serves a request (via the installed router)."""
        if self.catalog is None:
            raise self.not_ready_error(ctx.model)
        decision = self.router(ctx, self)
        if decision is None or decision.primary is None or not decision.primary.is_ready:
            raise self.not_ready_error(ctx.model)  # e.g. the router picked a version being unloaded
        return decision

    # -- loading -----------------------------------------------------------------------------

    async def load_catalog(self) -> CatalogBundle:
        from inference_server.catalog import load_catalog

        started = time.perf_counter()
        self.bundle = await asyncio.get_running_loop().run_in_executor(None, load_catalog, self.config.catalog)
        log.info("catalog %s: %d products, %d judged queries (%.1f s)", self.bundle.catalog.name,
                 len(self.bundle.catalog), len(self.bundle.queries), time.perf_counter() - started)
        return self.bundle

    async def load_version(
        self,
        spec: ModelSpec,
        *,
        batching: Optional[BatchingConfig] = None,
        build: Optional[VersionBuilder] = None,
        replace: Optional[ModelVersion] = None,
        progress: bool = False,
        drain_timeout: float = 30.0,
    ) -> ModelVersion:
        """The one way a version gets loaded: build its parts off the event loop, then serve it.

        `build` (default: weights -> catalog index -> warm-up) runs in a worker thread; the model
        lifecycle passes one with health checks. Without `replace`, the version is visible as
        `loading` at once and becomes `ready` on success (`failed`, with `error`, on failure; the
        exception is re-raised); an instance it displaces (failed or unloaded) is closed. With
        `replace` (a reload), the new instance is built beside the serving one and swapped in
        atomically; requests already running on the old one finish there, then it is closed.
        """
        if self.catalog is None:
            raise RuntimeError("load the catalog before loading model versions")
        key = (spec.name, spec.version)
        mv = ModelVersion(spec, batching or (replace.batching if replace is not None else self.config.batching))
        if replace is None:
            existing = self._versions.get(key)
            if existing is not None and existing.state in ("loading", "ready"):
                raise ValueError(f"model {spec.name} version {spec.version} is already {existing.state}")
            self._retire(self.install_version(mv), drain_timeout)   # visible as `loading` at once
        build = build or functools.partial(self.build_version, progress=progress)
        try:
            parts = await asyncio.get_running_loop().run_in_executor(None, build, mv)
        except Exception as exc:
            mv.state = "failed"
            mv.error = f"{type(exc).__name__}: {exc}"
            log.error("model %s version %s failed to load: %s", spec.name, spec.version, mv.error)
            raise
        mv.attach(parts, self.metrics, self.config.server.retry_after_s)
        self.index_build_seconds = parts.index.build_seconds
        if replace is not None:
            mv.traffic_weight, mv.shadow = replace.traffic_weight, replace.shadow
            mv.health = {**replace.health, **mv.health}
            mv.state = "ready"
            self._retire(self.install_version(mv), drain_timeout)   # the swap: new requests get `mv`
        else:
            mv.state = "ready"
        log.info("model %s version %s loaded on %s/%s (load %.1f s, index %.1f s%s, warm-up %.1f s)",
                 spec.name, spec.version, mv.backend.device, mv.backend.dtype, parts.load_seconds,
                 parts.index.build_seconds, " from cache" if parts.index.from_cache else "", parts.warmup_seconds)
        return mv

    async def reload_version(self, spec: ModelSpec, *, batching: Optional[BatchingConfig] = None,
                             drain_timeout: float = 30.0) -> ModelVersion:
        """Load a fresh copy of a loaded version, swap it in (see `load_version(replace=...)`) and
        return once the old copy has drained and been closed."""
        old = self._versions.get((spec.name, spec.version))
        if old is None:
            raise KeyError(f"model {spec.name} version {spec.version} is not loaded")
        mv = await self.load_version(spec, batching=batching, replace=old, drain_timeout=drain_timeout)
        await self.wait_retired()
        return mv

    async def wait_retired(self) -> None:
        """Wait until every displaced instance has drained and been closed."""
        while self._retiring:
            await asyncio.gather(*list(self._retiring), return_exceptions=True)

    def build_version(self, mv: ModelVersion, *, progress: bool = False) -> LoadedParts:
        """Default builder (worker thread): weights -> parity gate -> catalog index -> warm-up."""
        started = time.perf_counter()
        backend = self.backend_factory(mv.spec)
        load_s = time.perf_counter() - started
        try:
            parity = enforce_parity(backend)   # refuses a backend/precision unlike the float32 reference
            mv.health["parity"] = {"ok": True, "detail": parity.summary()}
            index = build_search_index(self.catalog, backend, self.config.index, self.config.catalog.cache_dir,
                                       progress=progress)
            warm_s = warm_up(backend, mv.batching)
        except BaseException:
            backend.close()
            raise
        mv.health["warmup"] = {"ok": True, "detail": f"{warm_s:.3f} s"}
        return LoadedParts(backend, index, load_s, warm_s)

    def _retire(self, old: Optional[ModelVersion], drain_timeout: float) -> None:
        """Close a displaced instance once the requests that started on it have finished."""
        if old is None:
            return

        async def retire() -> None:
            if not await old.drain(drain_timeout):
                log.warning("model %s version %s: %d requests still running on the replaced instance after "
                            "%.0f s; closing it", old.name, old.version, old.in_flight, drain_timeout)
            await old.close()

        task = asyncio.get_running_loop().create_task(retire(), name=f"retire-{old.name}-{old.version}")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def unload_version(self, name: str, version: str, *, drain_timeout: float = 30.0) -> ModelVersion:
        """Take a version out of routing, let its in-flight requests finish, then free it."""
        mv = self._versions.get((name, version))
        if mv is None:
            raise KeyError(f"model {name} version {version} is not loaded")
        mv.state = "unloaded"
        await mv.drain(drain_timeout)
        await mv.close()
        if self._versions.get((name, version)) is mv:
            del self._versions[(name, version)]
        return mv

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
        await self.wait_retired()
        for mv in list(self._versions.values()):
            await mv.close()
        self._versions.clear()

    # -- observers ---------------------------------------------------------------------------

    def notify(self, served: ServedResponse) -> None:
        """Tell every observer about a served response; observer errors are logged, never raised."""
        for observer in self.response_observers:
            try:
                result = observer(served)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._background.add(task)
                    task.add_done_callback(self._observer_done)
            except Exception:
                log.exception("response observer %r failed", observer)

    def _observer_done(self, task: asyncio.Task) -> None:
        self._background.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("response observer task failed", exc_info=task.exception())


def normalise(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector
