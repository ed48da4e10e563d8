"""The aiohttp application factory.

`create_app(config)` wires configuration, metrics, the request log and the serving state into one
`web.Application`. The model is loaded in a background task started by a cleanup context, so the
listener is up at once: `/healthz` answers immediately and `/readyz` says 503 until the first
model version is loaded, indexed and warmed up.

Extension point for other components: `ROUTE_GROUPS` lists the functions that add route groups
(``add_<group>_routes(app)``) and `STARTUP_HOOKS` the cleanup contexts run after the initial model
is loaded (e.g. a model repository that loads more versions and installs a traffic router on the
serving state).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import AsyncIterator, Awaitable, Callable, Optional

from aiohttp import web

from inference_server.config import AppConfig
from inference_server.api.admin_routes import add_admin_routes
from inference_server.api.alerts_routes import add_alert_routes
from inference_server.api.feedback_routes import add_feedback_routes
from inference_server.lifecycle.manager import ModelLifecycle

from inference_server.api.context import (
    CATALOG_UPDATER,
    CONFIG,
    LIFECYCLE,
    METRICS,
    REQUEST_LOG,
    ROUTE_SPECS,
    SCHEMAS,
    SERVING_STATE,
)
from inference_server.api.serving_routes import add_serving_routes
from inference_server.serving.catalog_updates import CatalogFileWatcher, CatalogIndexCollector, CatalogUpdater
from inference_server.serving.metrics import ServerMetrics, ServingStateCollector
from inference_server.api.ops_routes import add_ops_routes
from inference_server.serving.request_log import RequestLog
from inference_server.serving.state import BackendFactory, ServingState
from inference_server.api.middleware import observe_requests
from inference_server.api.connections import CONNECTION_GUARD, ConnectionGuard, run_server
from inference_server.api.schemas import request_models

__all__ = ["INITIAL_LOAD", "ROUTE_GROUPS", "STARTUP_HOOKS", "create_app", "load_configured_model"]

log = logging.getLogger(__name__)

RouteGroup = Callable[[web.Application], None]
CleanupContext = Callable[[web.Application], AsyncIterator[None]]

# Route groups, in registration order. Other components append theirs (admin, feedback, alerts).
ROUTE_GROUPS: list[RouteGroup] = [add_serving_routes, add_ops_routes]

# Cleanup contexts of other components, entered after the serving state exists (in this order).
STARTUP_HOOKS: list[CleanupContext] = []

InitialLoader = Callable[[ServingState], Awaitable[None]]

# {"loader": InitialLoader, "task": asyncio.Task}; await the task to wait for the initial load.
INITIAL_LOAD = web.AppKey("initial_load", dict)


async def _serving_state_context(app: web.Application) -> AsyncIterator[None]:
    """Start loading the catalog and the model(s) in the background; tear down on exit."""
    state = app[SERVING_STATE]
    holder = app[INITIAL_LOAD]
    holder["task"] = asyncio.get_running_loop().create_task(
        _guarded_initial_load(state, holder["loader"]), name="initial-model-load"
    )
    try:
        yield
    finally:
        task = holder["task"]
        if not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        await state.close()


async def load_configured_model(state: ServingState) -> None:
    """Default initial loader: the catalog, then the single model version of `config.model`."""
    await state.load_catalog()
    await state.load_version(state.config.model, progress=True)


async def _guarded_initial_load(state: ServingState, loader: InitialLoader) -> None:
    try:
        await loader(state)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        state.startup_error = f"{type(exc).__name__}: {exc}"
        log.exception("initial model load failed; /readyz stays 503")


async def _catalog_updates_context(app: web.Application) -> AsyncIterator[None]:
    """Watch the catalog file when `catalog.watch` is on; finish pending catalog changes on exit."""
    updater, cfg = app[CATALOG_UPDATER], app[CONFIG].catalog
    watcher = None
    if cfg.watch and cfg.source == "csv" and cfg.path:
        watcher = asyncio.get_running_loop().create_task(
            CatalogFileWatcher(updater, cfg.path, cfg.watch_interval_s).run(), name="catalog-file-watcher")
    try:
        yield
    finally:
        if watcher is not None:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        await updater.close()


async def _request_log_context(app: web.Application) -> AsyncIterator[None]:
    try:
        yield
    finally:
        app[REQUEST_LOG].close()


def create_app(
    config: AppConfig,
    *,
    backend_factory: Optional[BackendFactory] = None,
    metrics: Optional[ServerMetrics] = None,
    load_on_startup: bool = True,
    initial_loader: Optional[InitialLoader] = None,
) -> web.Application:
    """Build the application.

    backend_factory replaces `create_backend` (tests wrap a shared model with it); metrics lets a
    caller own the registry; initial_loader replaces `load_configured_model` (e.g. load the
    versions of a model repository); load_on_startup=False leaves loading to the caller. Without an
    initial_loader and with `model_repository.enabled` (the default), the model lifecycle is
    installed: versions come from the model repository (docs/lifecycle.md).
    """
    app = web.Application(middlewares=[observe_requests], client_max_size=config.server.max_body_bytes)
    metrics = metrics or ServerMetrics()
    state = ServingState(config, metrics, backend_factory=backend_factory)
    metrics.registry.register(ServingStateCollector(lambda: state))
    app[CONFIG] = config
    app[METRICS] = metrics
    app[SERVING_STATE] = state
    app[CATALOG_UPDATER] = CatalogUpdater(state)
    metrics.registry.register(CatalogIndexCollector(app[CATALOG_UPDATER]))
    app[REQUEST_LOG] = RequestLog(config.request_log, on_error=metrics.request_log_errors.inc)
    app[SCHEMAS] = request_models(config.server.limits)
    app[ROUTE_SPECS] = []
    app[CONNECTION_GUARD] = ConnectionGuard(config.server)
    app[INITIAL_LOAD] = {"loader": initial_loader or load_configured_model}
    for add_group in ROUTE_GROUPS:
        add_group(app)
    app.cleanup_ctx.append(_request_log_context)
    app.cleanup_ctx.append(_catalog_updates_context)
    if load_on_startup:
        app.cleanup_ctx.append(_serving_state_context)
    else:
        app.on_cleanup.append(lambda a: a[SERVING_STATE].close())
    app.cleanup_ctx.extend(STARTUP_HOOKS)
    if initial_loader is None and config.model_repository.enabled:
        # Versions from the model repository, traffic policy, feedback, admin and alert routes
        # (docs/lifecycle.md). Installed last so that its shutdown runs first.
        install_lifecycle(app, app[INITIAL_LOAD])
    return app


def install_lifecycle(app: web.Application, initial_load: dict) -> ModelLifecycle:
    """Attach a `ModelLifecycle` to `app`: versions from the model repository, routes (feedback, admin,
    Alertmanager webhook), the fault-drill hook and shutdown. `initial_load` is the INITIAL_LOAD holder."""
    state = app[SERVING_STATE]
    lifecycle = ModelLifecycle(state, app[CONFIG], app[METRICS].registry)
    app[LIFECYCLE] = lifecycle

    async def load_from_repository(_state) -> None:
        await lifecycle.start()

    initial_load["loader"] = load_from_repository
    state.request_hooks.append(lifecycle.before_execute)
    add_feedback_routes(app)
    add_admin_routes(app)
    add_alert_routes(app)
    app.cleanup_ctx.append(lifecycle_context)
    return lifecycle


async def lifecycle_context(app: web.Application) -> AsyncIterator[None]:
    """Cleanup context: stop the lifecycle's background work and close the feedback join windows."""
    try:
        yield
    finally:
        lifecycle = app.get(LIFECYCLE)
        if lifecycle is not None:
            await lifecycle.close()


def serve(config: AppConfig, *, backend_factory: Optional[BackendFactory] = None) -> None:
    """Run the server until SIGINT/SIGTERM, then drain (the CLI's last step; `backend_factory` as in
    `create_app`)."""
    app = create_app(config, backend_factory=backend_factory)
    access_log = logging.getLogger("aiohttp.access") if config.server.access_log else None
    sys.setswitchinterval(config.server.gil_switch_interval_ms / 1000.0)
    with asyncio.Runner(loop_factory=event_loop_factory(config.server.event_loop)) as runner:
        runner.run(run_server(app, config, access_log=access_log))


def event_loop_factory(choice: str):
    """The event loop `serve` runs (None: asyncio's own): uvloop's runs socket I/O and callbacks in
    libuv, leaving more of a small machine to the model's threads (on the serving benchmark here the
    loop thread went from about 0.28 to 0.26 cores, within noise of the throughput)."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise RuntimeError("server.event_loop is 'uvloop' but uvloop is not installed (pip install uvloop)") from None
        return None
    return uvloop.new_event_loop
