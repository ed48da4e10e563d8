"""`POST /v1/alerts`: Alertmanager's webhook receiver (payload version 4) that rolls back bad versions.

A *firing* alert labelled `action="rollback"` with `model` and `version` labels sets that version's
traffic weight to 0 and re-normalises the rest of the split (when it held all live traffic, the most
recent stable split without it comes back). Resolved alerts and alerts without `action="rollback"`
change nothing. Handling is idempotent (Alertmanager re-sends notifications every `repeat_interval`
and retries failures): a version already at weight 0 is a `noop`. The answer is 200 whenever the
payload is valid, so Alertmanager does not retry alerts that cannot be acted on (those are logged and
counted with outcome `error`).

Token: `Authorization: Bearer <token>` as configured in Alertmanager's
`http_config.authorization.credentials_file`; `admin.alerts_token_file`/`alerts_token_env`, else the
admin token. Counted in `inference_alert_webhook_actions_total{action, outcome}`: action `rollback` or
`ignored`; outcome `ok`, `noop`, `error`, `invalid`, `resolved`, `no_action`, `other_model`,
`unauthorized`, `forbidden`.
"""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from inference_server.api.admin_routes import AdminAuth, AdminConfig, read_secret
from inference_server.lifecycle.manager import LIFECYCLE, ModelLifecycle
from inference_server.api.context import CONFIG, REQUEST_CONTEXT, RouteSpec, add_route
from inference_server.errors import ApiError
from inference_server.api.schemas import read_json

__all__ = ["ALERTS_AUTH", "add_alert_routes", "parse_payload"]

log = logging.getLogger(__name__)

ALERTS_AUTH = web.AppKey("alerts_auth", AdminAuth)
MAX_ALERTS = 1000


def _labels(value: Any, path: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise ApiError.validation(f"{path} must be an object of string labels", path)
    return value


def parse_payload(body: Any) -> list[dict[str, Any]]:
    """The alerts of a valid v4 payload ([{status, labels}]); 400 `validation` naming the field otherwise."""
    if not isinstance(body, dict):
        raise ApiError.validation("body must be an Alertmanager webhook payload (a JSON object)")
    if body.get("version") != "4":
        raise ApiError.validation(f"version must be \"4\" (Alertmanager webhook payload v4), got {body.get('version')!r}",
                                  "version")
    if body.get("status") not in ("firing", "resolved"):
        raise ApiError.validation("status must be \"firing\" or \"resolved\"", "status")
    for key in ("groupLabels", "commonLabels"):
        if key in body:
            _labels(body[key], key)
    alerts = body.get("alerts")
    if not isinstance(alerts, list):
        raise ApiError.validation("alerts must be an array", "alerts")
    if len(alerts) > MAX_ALERTS:
        raise ApiError.validation(f"alerts has {len(alerts)} entries, over the limit of {MAX_ALERTS}", "alerts")
    parsed = []
    for i, alert in enumerate(alerts):
        if not isinstance(alert, dict):
            raise ApiError.validation(f"alerts[{i}] must be an object", f"alerts[{i}]")
        if alert.get("status") not in ("firing", "resolved"):
            raise ApiError.validation(f"alerts[{i}].status must be \"firing\" or \"resolved\"", f"alerts[{i}].status")
        parsed.append({"status": alert["status"], "labels": _labels(alert.get("labels"), f"alerts[{i}].labels"),
                       "fingerprint": alert.get("fingerprint") if isinstance(alert.get("fingerprint"), str) else None})
    return parsed


def _act(lc: ModelLifecycle, alert: dict[str, Any]) -> dict[str, Any]:
    labels = alert["labels"]
    out = {"alertname": labels.get("alertname"), "model": labels.get("model"), "version": labels.get("version"),
           "fingerprint": alert["fingerprint"]}
    if labels.get("action") != "rollback":
        return {**out, "action": "ignored", "outcome": "no_action"}
    if alert["status"] != "firing":
        return {**out, "action": "ignored", "outcome": "resolved"}
    model, version = labels.get("model"), labels.get("version")
    if not model or not version:
        return {**out, "action": "rollback", "outcome": "invalid",
                "detail": "a rollback alert needs non-empty model and version labels"}
    if model != lc.model:
        return {**out, "action": "ignored", "outcome": "other_model", "detail": f"this server serves {lc.model!r}"}
    try:
        split, changed = lc.drain(version)
    except ApiError as exc:
        return {**out, "action": "rollback", "outcome": "error", "detail": exc.message}
    return {**out, "action": "rollback", "outcome": "ok" if changed else "noop", "weights": split.as_percent()}


async def receive_alerts(request: web.Request) -> web.Response:
    """Alertmanager webhook (v4): firing `action="rollback"` alerts drain the named version."""
    lc: ModelLifecycle = request.app[LIFECYCLE]
    ctx = request[REQUEST_CONTEXT]
    counter = lc.metrics.webhook_actions
    try:
        request.app[ALERTS_AUTH].check(request)
    except ApiError as exc:
        counter.labels("ignored", exc.code).inc()
        log.warning("alert webhook refused (%s) request_id=%s remote=%s", exc.code, ctx.request_id, request.remote)
        raise
    alerts = parse_payload(await read_json(request, request.app[CONFIG].server.max_body_bytes))
    results = []
    for alert in alerts:
        result = _act(lc, alert)
        counter.labels(result["action"], result["outcome"]).inc()
        level = logging.WARNING if result["action"] == "rollback" else logging.INFO
        log.log(level, "alert %s (%s) model=%s version=%s -> %s %s%s request_id=%s", result["alertname"],
                alert["status"], result["model"], result["version"], result["action"], result["outcome"],
                f": {result['detail']}" if result.get("detail") else "", ctx.request_id)
        results.append(result)
    split = lc.router.split
    return web.json_response({"results": results, "traffic": {"weights": split.as_percent(),
                                                               "shadow": sorted(split.shadow)}})


def add_alert_routes(app: web.Application) -> None:
    cfg: AdminConfig = app[CONFIG].admin
    token = read_secret(cfg.alerts_token_file, cfg.alerts_token_env, "admin.alerts_token_file")
    if token is None:
        token = read_secret(cfg.token_file, cfg.token_env, "admin.token_file")
    app[ALERTS_AUTH] = AdminAuth(token, "inference-alerts")
    add_route(app, RouteSpec("POST", "/v1/alerts", receive_alerts, "alerts",
                             "Alertmanager webhook (payload v4): firing action=\"rollback\" alerts drain a version",
                             tag="admin", response_schema={"type": "object"}, error_statuses=(400, 401, 403, 415),
                             security=[{"bearerAuth": []}]))
