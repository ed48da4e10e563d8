"""`POST /v1/feedback`: shopper events joined to served requests (see feedback.py).

The body is one event or `{"events": [...]}`. The answer counts accepted events, duplicates (same
`event_id` seen before: not counted again) and rejected ones with a code per event. A single event that
is rejected gets an error status instead: 404 `unknown_request`, 410 `expired_request` (the request left
the join window), 400 `validation` naming the field. A batch answers 200 with the per-event outcomes, so
one bad event does not make a client resend the good ones.

The events steer canary rollbacks, so only the site's event source may send them: `Authorization:
Bearer <feedback token>` (`feedback.token_file` / `feedback.token_env`; no token configured = the
endpoint is off), and each source (client address) may send at most `feedback.max_events_per_s`
events per second (moving window, the `limits` library): beyond -> 429 `rate_limited` + Retry-After.

Each accepted event is also written to the request log (one `feedback` line, keyed by the served
request's id), so one log holds both halves of the click-log join (`inference_server/click_log.py`).
"""
from __future__ import annotations

import logging
import math
import time

from aiohttp import web
from limits import RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from inference_server.api.auth import BearerAuth, read_secret
from inference_server.api.context import LIFECYCLE
from inference_server.api.context import CONFIG, REQUEST_LOG, RouteSpec, add_route
from inference_server.config import ConfigError, FeedbackConfig
from inference_server.errors import ApiError
from inference_server.api.responses import json_response
from inference_server.api.schemas import FEEDBACK_BODY, read_json
from inference_server.lifecycle.feedback import FeedbackResult

__all__ = ["FEEDBACK_AUTH", "SourceRateLimit", "add_feedback_routes", "feedback_token"]

log = logging.getLogger(__name__)

_STATUS = {"unknown_request": 404, "expired_request": 410, "validation": 400, "not_shown": 422,
           "repeat_click": 409, "repeat_add_to_cart": 409, "quantity_exceeded": 422, "price_mismatch": 422}


class SourceRateLimit:
    """At most `per_second` events per source in any one-second moving window."""

    def __init__(self, per_second: float) -> None:
        self._item = RateLimitItemPerSecond(max(1, math.floor(per_second)))
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def take(self, source: str, events: int) -> None:
        """Count `events` for `source`, or raise 429 `rate_limited` (nothing counted) when over the limit."""
        if events > self._item.amount:
            raise ApiError(429, "rate_limited", f"{events} events in one request is over the per-source limit of "
                           f"{self._item.amount}/s (feedback.max_events_per_s)", retry_after=1)
        if not self._limiter.hit(self._item, source, cost=events):
            reset = self._limiter.get_window_stats(self._item, source).reset_time
            raise ApiError(429, "rate_limited", f"event source over {self._item.amount} events/s "
                           "(feedback.max_events_per_s)", retry_after=max(1, math.ceil(reset - time.time())))


FEEDBACK_AUTH = web.AppKey("feedback_auth", BearerAuth)
FEEDBACK_RATE = web.AppKey("feedback_rate", SourceRateLimit)


def feedback_token(cfg: FeedbackConfig) -> bytes | None:
    return read_secret(cfg.token_file, cfg.token_env, "feedback.token_file")

FEEDBACK_RESPONSE = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer"},
        "duplicates": {"type": "integer"},
        "rejected": {"type": "array", "items": {"type": "object", "properties": {
            "index": {"type": "integer"}, "code": {"type": "string"}, "message": {"type": "string"},
            "field": {"type": "string"}}}},
    },
}


def _ingest(request: web.Request, events: list) -> FeedbackResult:
    """Join the events and write the accepted ones to the request log."""
    result = request.app[LIFECYCLE].feedback.ingest(events)
    request_log = request.app[REQUEST_LOG]
    for event in result.accepted_events:
        request_log.write_feedback(request_id=event.request_id, event_id=event.event_id, event_type=event.type,
                                   product_id=event.product_id, position=event.position,
                                   endpoint=event.endpoint, model=event.model, version=event.version)
    return result


async def post_feedback(request: web.Request) -> web.Response:
    """Record click / add-to-cart / purchase events against served requests."""
    lifecycle = request.app[LIFECYCLE]
    store = lifecycle.feedback
    request.app[FEEDBACK_AUTH].check(request)
    body = await read_json(request, request.app[CONFIG].server.max_body_bytes)
    source = request.remote or "unknown"
    if not isinstance(body, dict):
        raise ApiError.validation("body must be an event object or {\"events\": [...]}")
    if "events" in body:
        extra = sorted(set(body) - {"events"})
        if extra:
            raise ApiError.validation(f"{extra[0]} is not an accepted field next to events", extra[0])
        events = body["events"]
        if not isinstance(events, list) or not events:
            raise ApiError.validation("events must be a non-empty array of events", "events")
        limit = store.config.max_events_per_request
        if len(events) > limit:
            raise ApiError.validation(f"events has {len(events)} entries, over the limit of {limit}", "events")
        request.app[FEEDBACK_RATE].take(source, len(events))
        return json_response(_ingest(request, events).as_json())
    request.app[FEEDBACK_RATE].take(source, 1)
    result = _ingest(request, [body])
    if result.rejected:
        rejected = result.rejected[0]
        raise ApiError(_STATUS.get(rejected["code"], 400), rejected["code"], rejected["message"],
                       field=rejected.get("field"))
    return json_response(result.as_json())


def add_feedback_routes(app: web.Application) -> None:
    cfg, admin = app[CONFIG].feedback, app[CONFIG].admin
    token = feedback_token(cfg)
    if token is not None and token in (read_secret(admin.token_file, admin.token_env, "admin.token_file"),
                                       read_secret(admin.alerts_token_file, admin.alerts_token_env,
                                                   "admin.alerts_token_file")):
        raise ConfigError("feedback.token_file", "the feedback token must differ from the admin and alerts tokens "
                          "(an event source must not be able to steer the server)")
    if token is None:
        log.warning("no feedback token (feedback.token_file or $%s): POST /v1/feedback is off", cfg.token_env)
    app[FEEDBACK_AUTH] = BearerAuth(token, "inference-feedback")
    app[FEEDBACK_RATE] = SourceRateLimit(cfg.max_events_per_s)
    add_route(app, RouteSpec(
        "POST", "/v1/feedback", post_feedback, "feedback", "Shopper events joined to served requests",
        tag="feedback",
        request_schema=FEEDBACK_BODY,
        response_schema=FEEDBACK_RESPONSE,
        error_statuses=(400, 401, 403, 404, 409, 410, 413, 415, 422, 429),
        security=[{"bearerAuth": []}],
    ))
