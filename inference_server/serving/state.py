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
import inspect
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterator, Literal, Optional, Sequence

import numpy as np

from inference_server.catalog import Catalog, CatalogBundle
from inference_server.catalog.index import VectorIndex
from inference_server.config import AppConfig, BatchingConfig
from inference_server.models.backend import EncoderBackend, ModelSpec, create_backend

from inference_server.serving.batching import DynamicBatcher, EncodeResult
from inference_server.errors import ApiError
from inference_server.serving.metrics import ServerMetrics

__all__ = [
    "BackendFactory",
    "ModelVersion",
    "RoutingContext",
    "RoutingDecision",
    "ServedResponse",
    "ServingState",
    "VersionState",
    "choose_version",
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
            "index_products": len(self.index.ids) if self.index is not None else None,
            "batching": {
                "enabled": self.batching.enabled,
                "max_batch_size": self.batching.max_batch_size,
                "max_queue_delay_ms": self.batching.max_queue_delay_ms,
                "max_queue_size": self.batching.max_queue_size,
            },
        }


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
        activate: bool = True,
        progress: bool = False,
    ) -> ModelVersion:
        """Load weights, build (or read) the catalog index and warm up, off the event loop.

        The version is registered as `loading` at once (visible in `/v1/models` and metrics). On
        success it becomes `ready` when `activate` (else it stays `loading` for the caller to check
        and flip); on failure it is `failed` with `error` set and the exception re-raised.
        """
        if self.catalog is None:
            raise RuntimeError("load the catalog before loading model versions")
        key = (spec.name, spec.version)
        existing = self._versions.get(key)
        if existing is not None and existing.state in ("loading", "ready"):
            raise ValueError(f"model {spec.name} version {spec.version} is already {existing.state}")
        batching = batching or self.config.batching
        mv = ModelVersion(spec, batching)
        self.install_version(mv)  # visible as `loading` at once
        await self._populate(mv, progress)
        if activate:
            mv.state = "ready"
        return mv

    async def reload_version(
        self, spec: ModelSpec, *, batching: Optional[BatchingConfig] = None, drain_timeout: float = 30.0
    ) -> ModelVersion:
        """Load a fresh copy of a loaded version and swap it in atomically.

        The old copy keeps serving until the new one is ready (if loading fails, it simply stays);
        requests already running on the old copy finish there, then it is closed. Traffic weight,
        shadow flag and health entries carry over.
        """
        key = (spec.name, spec.version)
        old = self._versions.get(key)
        if old is None:
            raise KeyError(f"model {spec.name} version {spec.version} is not loaded")
        new = ModelVersion(spec, batching or old.batching)
        await self._populate(new, progress=False)
        new.traffic_weight, new.shadow = old.traffic_weight, old.shadow
        new.health = {**old.health, **new.health}
        new.state = "ready" if old.state == "ready" else old.state
        self.install_version(new)  # the swap: routing sees the new copy from here on
        old.state = "unloaded"
        await old.drain(drain_timeout)
        await old.close()
        return new

    async def _populate(self, mv: ModelVersion, progress: bool) -> None:
        """Fill `mv` with backend, index and batcher (loaded in a worker thread); `failed` on error."""
        spec, batching = mv.spec, mv.batching
        loop = asyncio.get_running_loop()
        try:
            backend, index, load_s, warm_s = await loop.run_in_executor(
                None, self._load_blocking, spec, batching, progress
            )
        except Exception as exc:
            mv.state = "failed"
            mv.error = f"{type(exc).__name__}: {exc}"
            log.error("model %s version %s failed to load: %s", spec.name, spec.version, mv.error)
            raise
        mv.backend, mv.index = backend, index
        mv.load_seconds, mv.warmup_seconds = load_s, warm_s
        mv.index_seconds, mv.index_from_cache = index.build_seconds, index.from_cache
        mv.loaded_at = time.time()
        self.index_build_seconds = index.build_seconds
        mv.health["warmup"] = {"ok": True, "detail": f"{warm_s:.3f} s"}
        mv.batcher = DynamicBatcher(
            backend, batching, self.metrics, model=spec.name, version=spec.version,
            retry_after_s=self.config.server.retry_after_s, searcher=index.search,
        )
        mv.batcher.start()
        log.info("model %s version %s loaded on %s/%s (load %.1f s, index %.1f s%s, warm-up %.1f s)",
                 spec.name, spec.version, backend.device, backend.dtype, load_s, index.build_seconds,
                 " from cache" if index.from_cache else "", warm_s)

    def _load_blocking(self, spec: ModelSpec, batching: BatchingConfig, progress: bool):
        started = time.perf_counter()
        backend = self.backend_factory(spec)
        load_s = time.perf_counter() - started
        try:
            index = VectorIndex.build(self.catalog, backend, self.config.catalog.cache_dir, progress=progress)
            sizes = sorted({1, min(8, batching.effective_batch_size), batching.effective_batch_size})
            warm_s = backend.warmup(sizes)
        except BaseException:
            backend.close()
            raise
        return backend, index, load_s, warm_s

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
