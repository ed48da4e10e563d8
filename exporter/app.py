"""The exporter's aiohttp application: one registry, several components, /metrics and /healthz."""
from __future__ import annotations

import asyncio
import contextvars
import importlib
import logging
import time
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from exporter import __version__
from exporter.component import ComponentContext, ExporterComponent
from exporter.config import ConfigError, ExporterConfig
from exporter.selfmetrics import SelfMetrics

log = logging.getLogger(__name__)

CONFIG_KEY = web.AppKey("config", ExporterConfig)
REGISTRY_KEY = web.AppKey("registry", CollectorRegistry)
SELF_METRICS_KEY = web.AppKey("self_metrics", SelfMetrics)
COMPONENTS_KEY = web.AppKey("components", list)

ANOMALY_FACTORY = "exporter.anomaly.component"

# Render time per component during one /metrics request (set by the handler, filled by _TimedCollector).
_collect_seconds: contextvars.ContextVar[dict[str, float] | None] = contextvars.ContextVar("collect_seconds", default=None)


class _TimedCollector(Collector):
    """Wraps a component's collector to add its render time to the component's scrape duration."""

    def __init__(self, component: str, inner: Collector) -> None:
        self._component = component
        self._inner = inner

    def describe(self) -> list:
        describe = getattr(self._inner, "describe", None)
        return list(describe()) if describe is not None else []

    def collect(self) -> Iterator[Any]:
        start = time.perf_counter()
        metrics = list(self._inner.collect())
        timings = _collect_seconds.get()
        if timings is not None:
            timings[self._component] = timings.get(self._component, 0.0) + time.perf_counter() - start
        return iter(metrics)


def build_components(
    config: ExporterConfig, self_metrics: SelfMetrics, config_dir: Path, nvml_module: Any = None
) -> list[ExporterComponent]:
    """The components named by the config; raises ConfigError for a bad section."""
    components: list[ExporterComponent] = []
    if config.nvml.enabled:
        from exporter.nvml.component import NvmlComponent

        components.append(NvmlComponent(config.nvml, self_metrics, nvml=nvml_module))
    if config.anomaly is not None:
        try:
            factory = importlib.import_module(ANOMALY_FACTORY)
        except ImportError as exc:
            raise ConfigError("anomaly", f"the anomaly runtime is not available: {exc}") from None
        context = ComponentContext(self_metrics=self_metrics, config_dir=config_dir)
        components.append(factory.build_component(config.anomaly, context))
    return components


def _json_error(status: int, code: str, message: str, headers: dict | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


@web.middleware
async def _error_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error answer is JSON `{"error": {"code", "message"}}`; nothing escapes as a bare 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status, "http_error")
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _json_error(exc.status, code, exc.reason, headers)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("unhandled error on %s", request.path)
        return _json_error(500, "internal", "internal error")


async def _refresh(component: ExporterComponent, self_metrics: SelfMetrics) -> float:
    start = time.perf_counter()
    try:
        await component.refresh()
    except Exception as exc:  # a component must not take /metrics down with it
        log.warning("refresh of %s failed: %r", component.name, exc)
        self_metrics.record_error(component.name, "refresh", type(exc).__name__.lower())
    return time.perf_counter() - start


async def metrics_handler(request: web.Request) -> web.Response:
    app = request.app
    components: list[ExporterComponent] = app[COMPONENTS_KEY]
    self_metrics = app[SELF_METRICS_KEY]
    refreshed = await asyncio.gather(*(_refresh(c, self_metrics) for c in components))
    timings: dict[str, float] = {}
    token = _collect_seconds.set(timings)
    try:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(app[REGISTRY_KEY])
    finally:
        _collect_seconds.reset(token)
    for component, seconds in zip(components, refreshed):
        self_metrics.observe_scrape(component.name, seconds + timings.get(component.name, 0.0))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def healthz_handler(request: web.Request) -> web.Response:
    """Liveness of the exporter itself: 200 while it serves, whatever the GPUs or Prometheus do."""
    details = {}
    for component in request.app[COMPONENTS_KEY]:
        health = getattr(component, "health", None)
        details[component.name] = health() if callable(health) else {}
    return web.json_response({"status": "ok", "version": __version__, "components": details})


def _component_context(component: ExporterComponent):
    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await component.start()
        try:
            yield
        finally:
            await component.stop()

    return lifecycle


def create_app(
    config: ExporterConfig,
    *,
    config_dir: Path | None = None,
    nvml_module: Any = None,
    components: list[ExporterComponent] | None = None,
) -> web.Application:
    """App factory. `nvml_module` injects the NVML binding (tests pass a fake); `components`
    replaces the config-built list entirely (tests of the hosting itself)."""
    registry = CollectorRegistry()
    self_metrics = SelfMetrics(registry, __version__)
    if components is None:
        components = build_components(config, self_metrics, config_dir or Path.cwd(), nvml_module)
    names = [c.name for c in components]
    if len(set(names)) != len(names):
        raise ConfigError("", f"component names must be unique, got {names}")
    for component in components:
        for collector in component.collectors():
            registry.register(_TimedCollector(component.name, collector))

    app = web.Application(middlewares=[_error_middleware])
    app[CONFIG_KEY] = config
    app[REGISTRY_KEY] = registry
    app[SELF_METRICS_KEY] = self_metrics
    app[COMPONENTS_KEY] = components
    for component in components:
        app.cleanup_ctx.append(_component_context(component))
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/healthz", healthz_handler)
    return app
