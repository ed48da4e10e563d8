"""Wires the model lifecycle into the aiohttp app: initial load from the model repository, routes
(feedback, admin, Alertmanager webhook), the fault-drill hook and shutdown."""
from __future__ import annotations

from aiohttp import web

from inference_server.admin import add_admin_routes
from inference_server.alerts_webhook import add_alert_routes
from inference_server.feedback_api import add_feedback_routes
from inference_server.lifecycle import LIFECYCLE, ModelLifecycle, lifecycle_context
from inference_server.server.context import CONFIG, METRICS, SERVING_STATE

__all__ = ["install_lifecycle"]


def install_lifecycle(app: web.Application, initial_load: dict) -> ModelLifecycle:
    """Attach a `ModelLifecycle` to `app`; `initial_load` is the app's INITIAL_LOAD holder."""
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
