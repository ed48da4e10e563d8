"""The observing middleware: request id, JSON errors, metrics and the request log for every request.

It is the only place that turns exceptions into answers: `ApiError` -> its status and JSON body,
aiohttp's own HTTP errors (404, 405, 413, ...) -> the same JSON error shape instead of HTML, and
anything unexpected -> a logged, counted JSON 500 (a bug: tests assert no input gets there).
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web

from inference_server.api.context import (
    CONFIG,
    METRICS,
    REQUEST_CONTEXT,
    REQUEST_LOG,
    RequestContext,
    request_id_from,
    route_spec_for,
)
from inference_server.api.connections import CONNECTION_GUARD, ConnectionGuard
from inference_server.api.responses import json_response
from inference_server.api.schemas import BODY_TIMEOUT
from inference_server.errors import INTERNAL_ERROR, REJECTION_REASONS, ApiError, error_body

__all__ = ["observe_requests"]

log = logging.getLogger(__name__)

CLIENT_CLOSED = 499  # nginx's "client closed request": counted, never a 5xx

_HTTP_CODES = {
    400: "validation",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
    415: "unsupported_media_type",
    401: "unauthorized",
    403: "forbidden",
    409: "conflict",
}


def _from_http_exception(exc: web.HTTPException, request: web.Request) -> tuple[web.StreamResponse, str | None]:
    """aiohttp's HTTP errors as JSON errors; non-error HTTP exceptions (redirects) pass through."""
    if exc.status < 400:
        return exc, None
    code = _HTTP_CODES.get(exc.status, "validation" if exc.status < 500 else INTERNAL_ERROR)
    if code == "not_found":
        message = f"no route for {request.method} {request.path}"
    elif code == "method_not_allowed":
        allowed = exc.headers.get("Allow", "")
        message = f"method {request.method} is not allowed on {request.path}; allowed: {allowed}"
    elif code == "body_too_large":
        message = f"request body is larger than the limit of {request.app[CONFIG].server.max_body_bytes} bytes"
    else:
        message = exc.text or exc.reason
    headers = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after", "www-authenticate")}
    return json_response(error_body(code, message), status=exc.status, headers=headers), code


@web.middleware
async def observe_requests(request: web.Request, handler) -> web.StreamResponse:
    app = request.app
    metrics = app[METRICS]
    loop = asyncio.get_running_loop()
    config = app[CONFIG]
    spec = route_spec_for(request)
    endpoint = spec.endpoint if spec is not None else "other"
    ctx = RequestContext(
        request_id=request_id_from(request),
        endpoint=endpoint,
        started=time.perf_counter(),
        deadline=loop.time() + config.server.request_timeout_ms / 1000.0,
    )
    request[REQUEST_CONTEXT] = ctx
    request[BODY_TIMEOUT] = config.server.body_timeout_s
    guard = app[CONNECTION_GUARD]
    in_flight = metrics.child(metrics.in_flight, endpoint)
    in_flight.inc()
    guard.in_flight += 1
    try:
        try:
            _admit(guard)
            response = await handler(request)
        except ApiError as exc:
            response, ctx.error_code = error_response(exc), exc.code
            if exc.status == 408 or guard.draining:
                response.force_close()
        except web.HTTPException as exc:
            response, ctx.error_code = _from_http_exception(exc, request)
        except asyncio.CancelledError:
            raise  # the client went away; nothing to answer
        except ConnectionError:
            # The client closed the connection mid-request (e.g. mid-body): its doing, not a 5xx.
            log.info("client closed the connection during %s %s (request_id=%s)", request.method, request.path,
                     ctx.request_id)
            response = json_response(error_body("client_closed", "the client closed the connection"),
                                     status=CLIENT_CLOSED)
            ctx.error_code = "client_closed"
        except Exception:
            log.exception("unhandled error on %s %s (request_id=%s)", request.method, request.path, ctx.request_id)
            response = json_response(
                error_body(INTERNAL_ERROR, f"internal error; quote request id {ctx.request_id}"), status=500
            )
            ctx.error_code = INTERNAL_ERROR
    finally:
        in_flight.dec()
        guard.in_flight -= 1
    response.headers["X-Request-ID"] = ctx.request_id
    elapsed = time.perf_counter() - ctx.started
    status = response.status
    metrics.child(metrics.requests, endpoint, ctx.model, ctx.version, str(status)).inc()
    metrics.child(metrics.request_duration, endpoint, ctx.model, ctx.version).observe(
        elapsed, exemplar={"request_id": ctx.request_id}
    )
    if ctx.error_code in REJECTION_REASONS:
        metrics.child(metrics.rejected, endpoint, ctx.error_code).inc()
    if spec is None or spec.log_requests or ctx.error_code == INTERNAL_ERROR:
        app[REQUEST_LOG].write(
            request_id=ctx.request_id,
            method=request.method,
            path=request.path,
            endpoint=endpoint,
            status=status,
            total_seconds=elapsed,
            model=ctx.model,
            version=ctx.version,
            queue_seconds=ctx.queue_seconds,
            compute_seconds=ctx.compute_seconds,
            result_ids=ctx.result_ids,
            user_id=ctx.user_id,
            error=ctx.error_code,
            query=ctx.query,
        )
    return response


def _admit(guard: ConnectionGuard) -> None:
    """Refuse new work while shutting down or beyond `server.max_requests_in_flight`."""
    if guard.draining:
        raise ApiError(503, "not_ready", "the server is shutting down; retry on another instance",
                       retry_after=guard.config.not_ready_retry_after_s)
    if guard.in_flight > guard.config.max_requests_in_flight:
        raise ApiError(503, "overloaded", f"the server is handling its maximum of "
                       f"{guard.config.max_requests_in_flight} requests (server.max_requests_in_flight)",
                       retry_after=guard.config.retry_after_s)


def error_response(exc: ApiError) -> web.Response:
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    return json_response(error_body(exc.code, exc.message, exc.field), status=exc.status, headers=headers)
