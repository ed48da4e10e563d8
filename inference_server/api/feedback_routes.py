"""`POST /v1/feedback`: shopper events joined to served requests (see feedback.py).

The body is one event or `{"events": [...]}`. The answer counts accepted events, duplicates (same
`event_id` seen before: not counted again) and rejected ones with a code per event. A single event that
is rejected gets an error status instead: 404 `unknown_request`, 410 `expired_request` (the request left
the join window), 400 `validation` naming the field. A batch answers 200 with the per-event outcomes, so
one bad event does not make a client resend the good ones.
"""
from __future__ import annotations

from aiohttp import web

from inference_server.api.context import LIFECYCLE
from inference_server.api.context import CONFIG, RouteSpec, add_route
from inference_server.errors import ApiError
from inference_server.api.schemas import FEEDBACK_BODY, read_json

__all__ = ["add_feedback_routes"]

_STATUS = {"unknown_request": 404, "expired_request": 410, "validation": 400}

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


async def post_feedback(request: web.Request) -> web.Response:
    """Record click / add-to-cart / purchase events against served requests."""
    lifecycle = request.app[LIFECYCLE]
    store = lifecycle.feedback
    body = await read_json(request, request.app[CONFIG].server.max_body_bytes)
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
        return web.json_response(store.ingest(events).as_json())
    result = store.ingest([body])
    if result.rejected:
        rejected = result.rejected[0]
        raise ApiError(_STATUS.get(rejected["code"], 400), rejected["code"], rejected["message"],
                       field=rejected.get("field"))
    return web.json_response(result.as_json())


def add_feedback_routes(app: web.Application) -> None:
    add_route(app, RouteSpec(
        "POST", "/v1/feedback", post_feedback, "feedback", "Shopper events joined to served requests",
        tag="feedback",
        request_schema=FEEDBACK_BODY,
        response_schema=FEEDBACK_RESPONSE,
        error_statuses=(400, 404, 410, 413, 415),
    ))
