"""Model lifecycle: versions from the repository, loaded side by side, checked, routed and observed.

`ModelLifecycle` owns, for the served model (`model.name`):
- loading: a version is read from the model repository, its weights loaded, checked (finite weights),
  indexed, golden-checked against its registration artefacts (written first when missing) and warmed
  up, all in a worker thread; only then is it installed in the serving state in one step. A reload
  builds the new instance beside the old one and swaps; requests already running keep the instance
  they started on, which is drained and freed afterwards. Unload drains the same way.
- routing: `route()` is installed as the serving state's router (weighted, sticky; see traffic.py),
  shadows included; only ready versions are considered.
- observing: each served answer is registered for feedback joins, feeds the version's drift window and
  is mirrored to shadow versions (scored and measured, never returned).
- periodic work: expiry of the feedback join window, the golden check every `health.interval_s`.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from typing import Any, Iterable, Optional

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from inference_server.catalog.index import VectorIndex
from inference_server.catalog.lexical_index import LexicalIndex
from inference_server.catalog.search_index import build_search_index
from inference_server.config import AppConfig, ConfigError, TrafficConfig
from inference_server.models.degrade import DegradeConfig, DegradedBackend, maybe_degrade
from inference_server.models.parity import run_gate
from inference_server.lifecycle.ab_test import ABTestCollector, ABTestMonitor, feedback_counts
from inference_server.lifecycle.drift import DriftCollector, DriftConfig, DriftMonitor
from inference_server.lifecycle.faults import FaultInjector, FaultMetrics, InjectedFault
from inference_server.lifecycle.feedback import FeedbackMetrics, FeedbackStore
from inference_server.lifecycle.health import (
    CHECKS,
    CheckResult,
    HealthConfig,
    HealthMetrics,
    check_finite_weights,
    check_golden,
    warmup_result,
)
from inference_server.lifecycle.repository import (
    Artifacts,
    ModelRepository,
    ModelRepositoryConfig,
    RepositoryError,
)
from inference_server.lifecycle.registration import check_registration
from inference_server.models.backend import ModelSpec, resolve_weights_dir
from inference_server.errors import ApiError
from inference_server.lifecycle.shared_split import SharedSplit, open_store
from inference_server.lifecycle.split_store import SplitConflict, SplitStoreError
from inference_server.serving.retrieval import DEFAULT_LEXICAL_WEIGHT, Retrieval
from inference_server.serving.scoring import score_endpoint
from inference_server.serving.state import (
    LoadedParts,
    ModelVersion,
    RoutingContext,
    RoutingDecision,
    ServedResponse,
    ServingState,
    warm_up,
)
from inference_server.serving.traffic import Split, TrafficError, TrafficRouter

__all__ = ["HealthCheckFailed", "ModelLifecycle", "TrafficConfig"]

log = logging.getLogger(__name__)

STATES = ("loading", "ready", "failed", "unloaded")
OVERLAP_BUCKETS = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


class HealthCheckFailed(RuntimeError):
    def __init__(self, result: CheckResult) -> None:
        super().__init__(f"{result.check} check failed: {result.detail}")
        self.result = result


class LifecycleMetrics:
    """Event metrics of the lifecycle (state gauges come from `LifecycleCollector`)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.shadow_requests = Counter("inference_shadow_requests_total", "Requests mirrored to a shadow version.",
                                       ("model", "version"), registry=registry)
        self.shadow_overlap = Histogram("inference_shadow_topk_overlap_ratio",
                                        "Share of the live answer's ids that the shadow version also returned.",
                                        ("model", "version"), buckets=OVERLAP_BUCKETS, registry=registry)
        self.admin_actions = Counter("inference_admin_actions_total", "Admin API actions by outcome.",
                                     ("action", "outcome"), registry=registry)
        self.webhook_actions = Counter("inference_alert_webhook_actions_total",
                                       "Alertmanager webhook alerts handled, by action and outcome.",
                                       ("action", "outcome"), registry=registry)


class LifecycleCollector(Collector):
    """Traffic, state and health gauges read from the lifecycle at scrape time (never stale)."""

    def __init__(self, lifecycle: "ModelLifecycle") -> None:
        self._lc = lifecycle

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        """The (static) families this collector exports, empty."""
        mv_labels = ("model", "version")
        weight = GaugeMetricFamily("inference_model_traffic_weight_ratio", "Configured share of live traffic, 0..1.", labels=mv_labels)
        shadow = GaugeMetricFamily("inference_model_shadow", "1 when the version receives shadow traffic.", labels=mv_labels)
        state_g = GaugeMetricFamily("inference_model_state", "1 for the current state of a model version.", labels=(*mv_labels, "state"))
        ok = GaugeMetricFamily("inference_model_health_check_ok", "1 when the last health check passed, 0 when it failed.",
                               labels=(*mv_labels, "check"))
        last = GaugeMetricFamily("inference_model_health_check_last_run_timestamp_seconds",
                                 "When the golden check of a version last ran (Unix time).", labels=mv_labels)
        return [weight, shadow, state_g, ok, last]

    def describe(self):
        return self._families()

    def collect(self):
        weight, shadow, state_g, ok, last = self._families()
        lc = self._lc
        split = lc.router.split
        for version, mv in lc.version_view().items():
            labels = (lc.model, version)
            weight.add_metric(labels, split.weight(version))
            shadow.add_metric(labels, 1.0 if version in split.shadow else 0.0)
            current = mv.state if mv is not None else "unloaded"
            for s in STATES:
                state_g.add_metric((*labels, s), 1.0 if s == current else 0.0)
            if mv is None:
                continue
            for check in CHECKS:
                entry = mv.health.get(check)
                if entry is not None:
                    ok.add_metric((*labels, check), 1.0 if entry.get("ok") else 0.0)
            golden = mv.health.get("golden_set")
            if golden is not None and golden.get("checked_at"):
                last.add_metric(labels, float(golden["checked_at"]))
        return [weight, shadow, state_g, ok, last]


class ModelLifecycle:
    """Versions, traffic, health, drift, feedback and fault drills of the served model."""

    def __init__(self, state: ServingState, config: AppConfig, registry: CollectorRegistry) -> None:
        self.state = state
        self.config = config
        self.model = config.model.name
        self.repo_config: ModelRepositoryConfig = config.model_repository
        self.health_config: HealthConfig = config.health
        self.traffic_config: TrafficConfig = config.traffic
        self.drift_config: DriftConfig = config.drift
        self.repository = ModelRepository.from_config(self.repo_config)
        self.metrics = LifecycleMetrics(registry)
        self.health_metrics = HealthMetrics(registry)
        feedback_metrics = FeedbackMetrics(registry)
        self.feedback = FeedbackStore(config.feedback, feedback_metrics, price_of=self._catalog_price)
        self.faults = FaultInjector(FaultMetrics(registry))
        self.router = TrafficRouter(self.model, Split.of({"1": 1.0}), history_size=self.traffic_config.history_size)
        store_cfg = self.traffic_config.store
        self.shared = SharedSplit(self.model, self.router, open_store(store_cfg, self.model, self.repo_config.state_dir),
                                  registry=registry, poll_interval_s=store_cfg.poll_interval_s,
                                  max_attempts=store_cfg.max_attempts, on_change=self._sync_versions)
        self.artifacts: dict[str, Artifacts] = {}
        self.drift: dict[str, DriftMonitor] = {}
        self._degrade: dict[str, DegradeConfig] = {}
        self._lexical: Optional[LexicalIndex] = None     # BM25 of the catalog, shared by lexical/hybrid versions
        self._lexical_lock = threading.Lock()
        self._locks: dict[str, asyncio.Lock] = {}
        self._tasks: set[asyncio.Task] = set()
        self._started = False
        registry.register(LifecycleCollector(self))
        registry.register(DriftCollector(lambda: list(self.drift.values())))
        self.ab_test = ABTestMonitor(self.model, config.ab_test,
                                     feedback_counts(feedback_metrics, self.model, config.ab_test.endpoints))
        registry.register(ABTestCollector(self.ab_test, lambda: self.router.split.weights))
        state.router = self.route
        state.response_observers.append(self.on_served)

    def _catalog_price(self, product_id: str) -> Optional[float]:
        """Unit price of a catalog product (revenue is priced from the catalog, never from the client)."""
        product = self.state.catalog.get(product_id) if self.state.catalog is not None else None
        return product.price if product is not None else None

    # ---- views ---------------------------------------------------------------------------------
    def loaded(self) -> dict[str, ModelVersion]:
        return {mv.version: mv for mv in self.state.versions() if mv.name == self.model}

    def ready(self) -> dict[str, ModelVersion]:
        return {mv.version: mv for mv in self.state.ready_versions(self.model)}

    def version_view(self) -> dict[str, Optional[ModelVersion]]:
        """Every version in the repository or loaded, with its instance (None when not loaded)."""
        loaded = self.loaded()
        versions = set(self.repository.versions(self.model)) | set(loaded)
        return {v: loaded.get(v) for v in sorted(versions, key=lambda v: (len(v), v))}

    def describe(self) -> dict[str, Any]:
        split, stable = self.router.split, self.router.stable
        out = []
        for version, mv in self.version_view().items():
            entry: dict[str, Any] = {"version": version, "state": mv.state if mv else "unloaded",
                                     "traffic_weight": split.weight(version), "shadow": version in split.shadow}
            try:
                cfg = self.repository.entry(self.model, version).config
                entry["description"] = cfg.description
                entry["degrade"] = {"embedding_noise": cfg.degrade.embedding_noise} if cfg.degrade.active else None
            except RepositoryError as exc:
                entry["config_error"] = str(exc)
            if mv is not None:
                entry.update(health=dict(mv.health), error=mv.error, in_flight=mv.in_flight,
                             backend=mv.backend.backend_name if mv.backend else None,
                             device=mv.backend.device if mv.backend else None,
                             dtype=mv.backend.dtype if mv.backend else None)
            art = self.artifacts.get(version)
            if art is not None:
                entry["artifacts"] = str(art.path)
                entry["evaluation"] = art.evaluation
            out.append(entry)
        return {"model": self.model, "versions": out,
                "traffic": {"weights": split.as_percent(), "shadow": sorted(split.shadow),
                            "stable": stable.as_percent()},
                "faults": self.faults.describe(), "ab_tests": self.ab_test.describe()}

    # ---- start / stop --------------------------------------------------------------------------
    async def start(self) -> None:
        """Initial load: the catalog, then the versions of the version policy, then the split."""
        await self.state.load_catalog()
        versions = self.repository.select(self.model, self.repo_config.version_policy)
        loaded, errors = [], []
        for version in versions:
            try:
                await self.load(version)
                loaded.append(version)
            except ApiError as exc:
                errors.append(exc.message)
                log.error("model %s version %s was not loaded at start: %s", self.model, version, exc.message)
        weights = dict(self.traffic_config.weights)
        if not weights and loaded:
            weights = {max(loaded, key=int): 100.0}
        missing = sorted(v for v, w in weights.items() if w > 0 and v not in loaded)
        if missing:
            log.warning("traffic.weights names version(s) %s that are not loaded; they get no traffic until "
                        "loaded", missing)
        configured = None
        if weights:
            try:
                configured = Split.of(weights, self.traffic_config.shadow)
            except TrafficError as exc:
                raise ConfigError("traffic", str(exc)) from exc
        try:
            self.shared.start(configured)  # a shared split already stored wins over the configured one
        except SplitStoreError as exc:
            raise ConfigError("traffic.store", str(exc)) from exc
        self._sync_versions()
        self._start_background()
        if not loaded:
            raise RuntimeError("; ".join(errors) or f"no version of model {self.model} to load")

    def _start_background(self) -> None:
        if self._started:
            return
        self._started = True
        self._spawn(self._sweep_feedback(), "feedback-sweeper")
        if self.health_config.interval_s > 0:
            self._spawn(self._periodic_golden(), "golden-check")
        if self.shared.shared:
            self._spawn(self.shared.follow(), "traffic-split-follower")

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self.feedback.flush()

    # ---- routing and observation ---------------------------------------------------------------
    def route(self, ctx: RoutingContext, state: ServingState) -> RoutingDecision:
        if ctx.model is not None and ctx.model != self.model:
            raise ApiError(404, "not_found", f"model {ctx.model!r} is not served (this server serves {self.model!r})")
        ready = self.ready()
        version = self.router.route(ctx.user_id, ready)
        if version is None:
            if not ready:
                raise state.not_ready_error(self.model)
            # The split names no ready version (e.g. its only version failed): serve the newest ready one.
            version = max(ready, key=int)
        shadows = tuple(ready[v] for v in self.router.shadow_targets(ready) if v != version)
        return RoutingDecision(ready[version], shadows)

    async def before_execute(self, mv: ModelVersion) -> None:
        """Awaited by model requests after routing: fault drills (latency, injected errors)."""
        try:
            await self.faults.apply(mv.name, mv.version)
        except InjectedFault as exc:
            raise ApiError(503, "injected_fault", str(exc), retry_after=self.config.server.retry_after_s) from None

    def on_served(self, served: ServedResponse):
        if served.model != self.model:
            return None
        self.feedback.register(served.request_id, served.endpoint, served.model, served.version,
                               served.result_ids, served.k)
        if served.endpoint == "search":
            monitor = self.drift.get(served.version)
            if monitor is not None:
                monitor.observe_answer(served.scores, served.query_tokens)
        if served.shadows:
            return self._run_shadows(served)
        return None

    async def _run_shadows(self, served: ServedResponse) -> None:
        loop = asyncio.get_running_loop()
        for mv in served.shadows:
            if not mv.is_ready:
                continue
            self.metrics.shadow_requests.labels(mv.name, mv.version).inc()
            try:
                with mv.in_use():
                    scored = await score_endpoint(
                        mv, served.endpoint, served.request,
                        deadline=loop.time() + self.config.server.request_timeout_ms / 1000.0,
                        request_id=f"{served.request_id}.shadow")
            except ApiError as exc:
                log.debug("shadow request on %s/%s not scored: %s", mv.name, mv.version, exc.message)
                continue
            live = set(served.result_ids)
            if live:
                self.metrics.shadow_overlap.labels(mv.name, mv.version).observe(len(live & set(scored.ids)) / len(live))
            if served.endpoint == "search":
                monitor = self.drift.get(mv.version)
                if monitor is not None:
                    monitor.observe_answer(scored.scores, scored.query_tokens)

    # ---- loading -------------------------------------------------------------------------------
    def _lock(self, version: str) -> asyncio.Lock:
        return self._locks.setdefault(version, asyncio.Lock())

    def _entry(self, version: str):
        if version not in self.repository.versions(self.model):
            raise ApiError(404, "not_found", f"model {self.model} has no version {version} in the repository "
                                             f"({self.repository.root / self.model})")
        try:
            return self.repository.entry(self.model, version)
        except RepositoryError as exc:
            raise ApiError(422, "validation", f"model {self.model} version {version}: {exc}") from None

    async def load(self, version: str) -> ModelVersion:
        """Load, check and warm up a version; it takes traffic only once the split gives it a share."""
        async with self._lock(version):
            existing = self.state.get(self.model, version)
            if existing is not None and existing.state in ("loading", "ready"):
                raise ApiError(409, "conflict", f"model {self.model} version {version} is already {existing.state}")
            return await self._load(version, replace=None)

    async def reload(self, version: str) -> ModelVersion:
        """Load a fresh instance beside the serving one and swap atomically; the old one drains."""
        async with self._lock(version):
            existing = self.state.get(self.model, version)
            if existing is None or existing.state != "ready":
                raise ApiError(409, "conflict", f"model {self.model} version {version} is not ready "
                                                f"({existing.state if existing else 'not loaded'}); use load")
            return await self._load(version, replace=existing)

    async def unload(self, version: str) -> None:
        async with self._lock(version):
            mv = self.state.get(self.model, version)
            if mv is None:
                raise ApiError(409, "conflict", f"model {self.model} version {version} is not loaded")
            split = self.router.split
            if split.weight(version) > 0 and mv.state == "ready":
                raise ApiError(409, "conflict", f"version {version} takes {split.weight(version):.0%} of live "
                                                "traffic; move its traffic away (PUT traffic, promote, rollback) first")
            if version in split.shadow:
                self._change(lambda r: r.set_split(Split.of(split.weights, split.shadow - {version}), stable=False),
                             f"unshadow {version}")
            await self.state.unload_version(self.model, version, drain_timeout=self.traffic_config.drain_timeout_s)
            self.router.forget(version)
            self.drift.pop(version, None)
            self.artifacts.pop(version, None)
            self._sync_versions()
            log.info("model %s version %s unloaded", self.model, version)

    async def _load(self, version: str, replace: Optional[ModelVersion]) -> ModelVersion:
        entry = self._entry(version)
        spec = entry.model_spec(self.config.model, self.repository.state_dir)
        try:
            batching = entry.config.batching.apply(self.config.batching)
        except ConfigError as exc:
            raise ApiError(422, "validation", f"{entry.path / 'model.yaml'}: {exc}") from None
        self._degrade[version] = entry.config.degrade
        self.health_metrics.init_version(self.model, version)
        started = time.perf_counter()
        log.info("loading model %s version %s%s", self.model, version, " (reload)" if replace else "")
        try:
            mv = await self.state.load_version(
                spec, batching=batching, replace=replace, drain_timeout=self.traffic_config.drain_timeout_s,
                build=functools.partial(self._build_version, entry=entry, progress=not self._started))
        except Exception as exc:
            failed = isinstance(exc, HealthCheckFailed)
            message = str(exc) if failed else f"{type(exc).__name__}: {exc}"
            current = self.state.get(self.model, version)
            if replace is None and current is not None and current.state == "failed":
                current.error = message
            if failed:
                self.health_metrics.failures.labels(self.model, version, exc.result.check).inc()
            log.error("model %s version %s %s failed: %s; it gets no traffic", self.model, version,
                      "reload" if replace else "load", message)
            if replace is not None:
                replace.health["reload"] = {"ok": False, "detail": f"reload failed, still serving the previous "
                                                                  f"instance: {message}", "checked_at": time.time()}
            raise ApiError(422 if failed else 503, "health_check_failed" if failed else "model_error",
                           f"model {self.model} version {version} failed to load: {message}") from None
        self.artifacts[version] = mv.artifacts
        if self.drift_config.enabled:
            self.drift[version] = DriftMonitor(self.model, version, mv.artifacts.drift_reference, self.drift_config)
        self._sync_versions()
        log.info("model %s version %s ready in %.1f s", self.model, version, time.perf_counter() - started)
        return mv

    def _build_version(self, mv: ModelVersion, *, entry, progress: bool) -> LoadedParts:
        """Builder for `ServingState.load_version` (worker thread): weights -> finite check -> parity gate ->
        index -> registration (artefacts and weights sha256; never written here) -> golden check -> warm-up."""
        started = time.perf_counter()
        degrade = self._degrade.get(mv.version)
        backend = maybe_degrade(self.state.backend_factory(mv.spec), degrade)
        load_s = time.perf_counter() - started
        try:
            self._record(mv, check_finite_weights(backend))
            # The gate measures the undegraded backend (a degrade drill is a deliberate canary).
            parity = run_gate(backend.inner if isinstance(backend, DegradedBackend) else backend)
            self._record(mv, CheckResult("parity", parity.passed,
                                         parity.summary() + ("" if parity.passed else "; " + "; ".join(parity.reasons)),
                                         time.time()))
            index = self._build_index(backend, progress)
            artifacts = self.repository.load_artifacts(self.model, mv.version, self.state.catalog)
            self._record(mv, check_registration(
                artifacts, resolve_weights_dir(ModelSpec(weights=mv.spec.weights)),
                model_yaml_sha256=entry.config.weights_sha256,
                where=f"model {self.model} version {mv.version} on catalog {self.state.catalog.name}"))
            retrieval = self._retrieval(entry, artifacts, progress)
            golden = artifacts.golden
            self._record(mv, check_golden(golden, backend.encode(golden.queries), index,
                                          min_cosine=self.health_config.golden_min_cosine,
                                          min_topk_overlap=self.health_config.golden_min_topk_overlap))
            try:
                warm_s = warm_up(backend, mv.batching)
            except Exception as exc:
                self._record(mv, warmup_result(None, f"{type(exc).__name__}: {exc}"))
                raise
            self._record(mv, warmup_result(warm_s))
        except BaseException:
            backend.close()
            raise
        return LoadedParts(backend, index, load_s, warm_s, artifacts, retrieval)

    def _retrieval(self, entry, artifacts: Artifacts, progress: bool) -> Retrieval:
        """The version's retrieval (model.yaml `retrieval`; the fusion weight fixed there or chosen on DEV at
        registration). The lexical index is shared by all versions of the catalog."""
        cfg = entry.config.retrieval
        if cfg.mode == "dense":
            return Retrieval("dense")
        catalog = self.state.catalog
        with self._lexical_lock:
            if self._lexical is None or self._lexical.catalog_fingerprint != catalog.fingerprint():
                self._lexical = LexicalIndex.build(catalog, self.config.catalog.cache_dir, progress=progress)
        registered = (artifacts.manifest.get("retrieval") or {}).get("lexical_weight")
        weight = cfg.lexical_weight if cfg.lexical_weight is not None else registered
        return Retrieval(cfg.mode, self._lexical, DEFAULT_LEXICAL_WEIGHT if weight is None else float(weight),
                         cfg.candidates, catalog)

    def _build_index(self, backend, progress: bool) -> VectorIndex:
        """The catalog index of a version; a degraded version derives its own from the inner model's
        (cached) one instead of embedding the whole catalog again."""
        catalog, cache_dir = self.state.catalog, self.config.catalog.cache_dir
        if not isinstance(backend, DegradedBackend):
            return build_search_index(catalog, backend, self.config.index, cache_dir, progress=progress)
        started = time.perf_counter()
        base = VectorIndex.build(catalog, backend.inner, cache_dir, progress=progress)
        vectors = backend.perturb(base.embeddings.copy(), [p.text() for p in catalog.products])
        return VectorIndex(base.ids, vectors, time.perf_counter() - started, from_cache=base.from_cache)

    def _record(self, mv: ModelVersion, result: CheckResult) -> None:
        """Keep a check's outcome on the version (`/v1/models`, gauges); raise when it failed."""
        mv.health[result.check] = result.as_json()
        if not result.ok:
            raise HealthCheckFailed(result)
        log.info("model %s version %s: %s ok (%s)", mv.name, mv.version, result.check, result.detail)

    # ---- traffic -------------------------------------------------------------------------------
    def _require_ready(self, versions: Iterable[str], what: str) -> None:
        ready = self.ready()
        known = set(self.repository.versions(self.model)) | set(self.loaded())
        for version in versions:
            if version not in known:
                raise ApiError(404, "not_found", f"{what}: model {self.model} has no version {version}")
            if version not in ready:
                mv = self.state.get(self.model, version)
                raise ApiError(409, "conflict", f"{what}: version {version} is "
                                                f"{mv.state if mv else 'not loaded'}; only ready versions take traffic")

    def set_traffic(self, weights: dict[str, Any], shadow: list[str]) -> Split:
        try:
            split = Split.of(weights, shadow)
        except TrafficError as exc:
            raise ApiError(400, "validation", str(exc), field="weights") from None
        self._require_ready(split.weights, "weights")
        self._require_ready(split.shadow, "shadow")
        self._change(lambda r: r.set_split(split), "set_traffic")
        self._sync_versions()
        log.info("traffic of %s set to %s (shadow %s)", self.model, split.as_percent(), sorted(split.shadow))
        return split

    def promote(self, version: str) -> Split:
        self._require_ready([version], "promote")
        split = self._change(lambda r: r.promote(version), f"promote {version}")
        self._sync_versions()
        log.info("model %s version %s promoted: %s", self.model, version, split.as_percent())
        return split

    def rollback(self) -> Split:
        split = self._change(lambda r: r.rollback(), "rollback")
        self._sync_versions()
        log.info("traffic of %s rolled back to %s", self.model, split.as_percent())
        return split

    def drain(self, version: str) -> tuple[Split, bool]:
        """Weight 0 for `version`, the rest re-normalised (the webhook's rollback). Idempotent."""
        split, changed = self._change(lambda r: r.drain(version), f"drain {version}")
        self._sync_versions()
        return split, changed

    def _change(self, op, action: str):
        """Apply a router change through the (possibly shared) split; errors become API errors."""
        try:
            return self.shared.change(op, action)
        except TrafficError as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        except SplitConflict as exc:
            raise ApiError(409, "conflict", str(exc)) from None
        except SplitStoreError as exc:
            raise ApiError(503, "split_store_unavailable", f"traffic split store: {exc}") from None

    def _sync_versions(self) -> None:
        split = self.router.split
        self.ab_test.update(split.weights)     # a new canary's test counts from this moment
        for version, mv in self.loaded().items():
            mv.traffic_weight = split.weight(version)
            mv.shadow = version in split.shadow

    # ---- background ----------------------------------------------------------------------------
    async def _sweep_feedback(self) -> None:
        interval = self.feedback.config.sweep_interval_s
        while True:
            await asyncio.sleep(interval)
            try:
                self.feedback.sweep()
            except Exception:  # noqa: BLE001 - the sweeper must survive anything
                log.exception("feedback sweep failed")

    async def _periodic_golden(self) -> None:
        while True:
            await asyncio.sleep(self.health_config.interval_s)
            for mv in list(self.ready().values()):
                try:
                    await self.golden_check(mv)
                except Exception:  # noqa: BLE001
                    log.exception("periodic golden check of %s/%s crashed", mv.name, mv.version)

    async def golden_check(self, mv: ModelVersion) -> CheckResult:
        """Run the golden set through the serving path of a ready version; a failure takes it out."""
        artifacts = self.artifacts.get(mv.version)
        if artifacts is None or mv.batcher is None or mv.index is None:
            raise RuntimeError(f"version {mv.version} has no artefacts or is not loaded")
        loop = asyncio.get_running_loop()
        golden = artifacts.golden
        try:
            with mv.in_use():
                encoded = await mv.batcher.encode(golden.queries, deadline=loop.time() + self.health_config.deadline_s,
                                                  request_id=f"golden-{mv.version}")
                result = check_golden(golden, encoded.vectors, mv.index,
                                      min_cosine=self.health_config.golden_min_cosine,
                                      min_topk_overlap=self.health_config.golden_min_topk_overlap)
        except ApiError as exc:
            result = CheckResult("golden_set", False, f"golden queries not served: {exc.message}", time.time())
        mv.health["golden_set"] = result.as_json()
        if result.ok:
            return result
        self.health_metrics.failures.labels(mv.name, mv.version, "golden_set").inc()
        others = [v for v in self.ready() if v != mv.version]
        if others:
            mv.state, mv.error = "failed", f"periodic golden check failed: {result.detail}"
            log.error("model %s version %s failed its periodic golden check (%s); taken out of traffic",
                      mv.name, mv.version, result.detail)
        else:
            log.error("model %s version %s failed its periodic golden check (%s); still serving: no other "
                      "version is ready", mv.name, mv.version, result.detail)
        return result
