"""API errors: one exception type carrying the HTTP status, the machine-readable code and the field.

`code` is also the `reason` label of `inference_rejected_requests_total`, so the set of codes is
closed (`REJECTION_REASONS`); `internal_error` (500) is the only code that is not a rejection.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["ApiError", "REJECTION_REASONS", "error_body"]

REJECTION_REASONS = frozenset(
    {
        "invalid_json",
        "invalid_encoding",
        "validation",
        "body_too_large",
        "not_found",
        "method_not_allowed",
        "unsupported_media_type",
        "unknown_product",
        "queue_full",
        "overloaded",           # 503: shed by admission control (predicted to miss its deadline)
        "deadline_exceeded",
        "not_ready",
        "model_error",
        "unauthorized",
        "forbidden",
        "unknown_request",
        "expired_request",
        "not_shown",            # feedback: the product was not in that answer
        "repeat_click",         # feedback: a second click on the same (request, product)
        "repeat_add_to_cart",   # feedback: a second add-to-cart on the same (request, product)
        "quantity_exceeded",    # feedback: more units bought than feedback.max_quantity
        "price_mismatch",       # feedback: a client price that disagrees with the catalog
        "rate_limited",         # 429: an event source over its rate limit
        "client_closed",        # 499: the client closed the connection before the answer
        "timeout",              # 408: the client sent its request too slowly
        "conflict",             # 409: admin action not possible in the version's current state
        "health_check_failed",  # 422: a load/reload whose health checks failed
        "injected_fault",       # 503: fault drill
        "split_store_unavailable",  # 503: the shared traffic split could not be read or written
    }
)

INTERNAL_ERROR = "internal_error"


class ApiError(Exception):
    """An error answer: raised anywhere in a handler, rendered by the error middleware."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: Optional[str] = None,
        retry_after: Optional[int] = None,
        headers: Optional[dict[str, str]] = None,
    ) -> None:
        if code not in REJECTION_REASONS and code != INTERNAL_ERROR:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    @classmethod
    def validation(cls, message: str, field: Optional[str] = None) -> "ApiError":
        return cls(400, "validation", message, field=field)

    @classmethod
    def unknown_product(cls, product_id: str, field: str) -> "ApiError":
        return cls(422, "unknown_product", f"unknown product id {product_id!r}", field=field)


def error_body(code: str, message: str, field: Optional[str] = None) -> dict:
    error: dict = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return {"error": error}
