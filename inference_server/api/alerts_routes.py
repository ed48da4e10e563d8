"""`POST /v1/alerts`: Alertmanager's webhook receiver (payload version 4) that rolls back bad versions
and promotes canaries that won their A/B test.

A *firing* alert labelled `action="rollback"` with `model` and `version` labels sets that version's
traffic weight to 0 and re-normalises the rest of the split (when it held all live traffic, the most
recent stable split without it comes back). Resolved alerts and alerts without `action="rollback"`
change nothing. Handling is idempotent (Alertmanager re-sends notifications every `repeat_interval`
and retries failures): a version already at weight 0 is a `noop`. The answer is 200 whenever the
payload is valid, so Alertmanager does not retry alerts that cannot be acted on (those are logged and
counted with outcome `error`).

A firing `action="promote"` alert gives all live traffic to its version, but only while that version's
A/B test (lifecycle/ab_test.py) says "better": a stale or forged alert cannot promote a version the
statistics do not back (outcome `error`); a version already holding all traffic is a `noop`.

Token: `Authorization: Bearer <token>` as configured in Alertmanager's
`http_config.authorization.credentials_file`; `admin.alerts_token_file`/`alerts_token_env`, its own
token (never the admin token: without one the webhook is off, and the same token as admin's is a
config error). Counted in `inference_alert_webhook_actions_total{action, outcome}`: action `rollback`,
`promote` or `ignored`; outcome `ok`, `noop`, `error`, `invalid`, `resolved`, `no_action`, `other_model`,
`unauthorized`, `forbidden`.
"""
from __future__ import annotations

import logging
from typing import Any

from aiohttp import web

from inference_server.api.admin_routes import AdminConfig
from inference_server.api.auth import BearerAuth, read_secret
from inference_server.api.context import LIFECYCLE
from inference_server.lifecycle.manager import ModelLifecycle
from inference_server.api.context import CONFIG, REQUEST_CONTEXT, RouteSpec, add_route
from inference_server.config import ConfigError
from inference_server.errors import ApiError
from inference_server.api.responses import json_response
from inference_server.api.schemas import AlertmanagerPayload, read_json, validate_model

__all__ = ["ALERTS_AUTH", "add_alert_routes", "parse_payload"]

log = logging.getLogger(__name__)

ALERTS_AUTH = web.AppKey("alerts_auth", BearerAuth)


def parse_payload(body: Any) -> list[dict[str, Any]]:
    """The alerts of a valid v4 payload ([{status, labels, fingerprint}]); 400 `validation` naming the field otherwise."""
    return [alert.model_dump() for alert in validate_model(AlertmanagerPayload, body).alerts]


def _act(lc: ModelLifecycle, alert: dict[str, Any]) -> dict[str, Any]:
    labels = alert["labels"]
    out = {"alertname": labels.get("alertname"), "model": labels.get("model"), "version": labels.get("version"),
           "fingerprint": alert["fingerprint"]}
    action = labels.get("action")
    if action not in ("rollback", "promote"):
        return {**out, "action": "ignored", "outcome": "no_action"}
    if alert["status"] != "firing":
        return {**out, "action": "ignored", "outcome": "resolved"}
    model, version = labels.get("model"), labels.get("version")
    if not model or not version:
        return {**out, "action": action, "outcome": "invalid",
                "detail": f"a {action} alert needs non-empty model and version labels"}
    if model != lc.model:
        return {**out, "action": "ignored", "outcome": "other_model", "detail": f"this server serves {lc.model!r}"}
    if action == "promote":
        return _promote(lc, version, out)
    try:
        split, changed = lc.drain(version)
    except ApiError as exc:
        return {**out, "action": "rollback", "outcome": "error", "detail": exc.message}
    return {**out, "action": "rollback", "outcome": "ok" if changed else "noop", "weights": split.as_percent()}


def _promote(lc: ModelLifecycle, version: str, out: dict[str, Any]) -> dict[str, Any]:
    """All live traffic to `version`, only while its A/B test says "better" (a stale alert changes nothing)."""
    if lc.router.split.weight(version) >= 1.0:
        return {**out, "action": "promote", "outcome": "noop", "weights": lc.router.split.as_percent()}
    decision = lc.ab_test.decision(version)
    if decision != "better":
        return {**out, "action": "promote", "outcome": "error",
                "detail": f"version {version}'s A/B test decision is {decision or 'none (no running test)'}, not better"}
    try:
        split = lc.promote(version)
    except ApiError as exc:
        return {**out, "action": "promote", "outcome": "error", "detail": exc.message}
    return {**out, "action": "promote", "outcome": "ok", "weights": split.as_percent()}


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
        level = logging.WARNING if result["action"] in ("rollback", "promote") else logging.INFO
        log.log(level, "alert %s (%s) model=%s version=%s -> %s %s%s request_id=%s", result["alertname"],
                alert["status"], result["model"], result["version"], result["action"], result["outcome"],
                f": {result['detail']}" if result.get("detail") else "", ctx.request_id)
        results.append(result)
    split = lc.router.split
    return json_response({"results": results, "traffic": {"weights": split.as_percent(),
                                                           "shadow": sorted(split.shadow)}})


def add_alert_routes(app: web.Application) -> None:
    cfg: AdminConfig = app[CONFIG].admin
    token = read_secret(cfg.alerts_token_file, cfg.alerts_token_env, "admin.alerts_token_file")
    if token is None:
        log.warning("no alerts token (admin.alerts_token_file or $%s): the rollback webhook POST /v1/alerts is off",
                    cfg.alerts_token_env)
    elif token == read_secret(cfg.token_file, cfg.token_env, "admin.token_file"):
        raise ConfigError("admin.alerts_token_file", "the alerts token must differ from the admin token "
                          "(Alertmanager must not be able to load, unload or inject faults)")
    app[ALERTS_AUTH] = BearerAuth(token, "inference-alerts")
    add_route(app, RouteSpec("POST", "/v1/alerts", receive_alerts, "alerts",
                             "Alertmanager webhook (payload v4): firing action=\"rollback\" alerts drain a version, "
                             "action=\"promote\" alerts promote an A/B winner",
                             tag="admin", request_schema=AlertmanagerPayload, response_schema={"type": "object"},
                             error_statuses=(400, 401, 403, 415),
                             security=[{"bearerAuth": []}]))
