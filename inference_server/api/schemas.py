"""Request bodies as pydantic models: what the handlers validate with and what /openapi.json documents.

One model per body, so the published schema (``model_json_schema``) and the server cannot disagree.
Validation is strict (no ``"5"`` -> 5 coercion) and rejects unknown fields; a JSON ``null`` for an
optional field means "absent". The serving bodies depend on the configured `server.limits`, so their
models are built per `LimitsConfig` (`request_models`, cached). A bad body is a 400 `validation`
`ApiError` whose `field` is the JSON path (``items[2].title``), like every other rejection.

Also here: the strict JSON body reader (415/413/400 before validation even starts).
"""

from __future__ import annotations

import asyncio
import functools
import json
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Optional, TypeVar, Union, get_args

from aiohttp import web
from pydantic import (AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, TypeAdapter,
                      ValidationError, model_validator)

from typed_config import error_key_and_message, invalid

from inference_server.config import LimitsConfig
from inference_server.errors import ApiError

__all__ = [
    "AlertmanagerPayload",
    "CatalogChangeRequest",
    "CatalogProductBody",
    "FaultRequest",
    "FeedbackBatch",
    "FeedbackEvent",
    "FEEDBACK_BODY",
    "PromoteRequest",
    "RequestBody",
    "RequestModels",
    "TrafficRequest",
    "BODY_TIMEOUT",
    "read_json",
    "read_json_body",
    "request_models",
    "validate_body",
    "validate_model",
    "validate_version",
]

M = TypeVar("M", bound=BaseModel)

USER_ID_MAX_CHARS = 256
EventType = Literal["click", "add_to_cart", "purchase"]
EVENT_TYPES = get_args(EventType)
FEEDBACK_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
FEEDBACK_PRODUCT_ID_MAX_CHARS = 256


def _unique(values: list, key: Optional[str] = None) -> list:
    """Refuse a repeated value (or a repeated `key` attribute), naming the position of the repeat."""
    seen: set = set()
    for i, value in enumerate(values):
        item = getattr(value, key) if key else value
        if item in seen:
            raise invalid((i, key) if key else i, f"duplicate value {item!r}")
        seen.add(item)
    return values


def text(max_length: int, description: Optional[str] = None) -> Any:
    """A non-empty string of at most `max_length` characters (pydantic refuses lone surrogates)."""
    return Annotated[str, Field(min_length=1, max_length=max_length, description=description)]


def phrase(max_length: int, description: Optional[str] = None) -> Any:
    """Text with a non-blank character, surrounding whitespace removed (before the length checks)."""
    return Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=max_length, pattern=r"\S"),
                     Field(description=description)]


def default_when_null(default: Any) -> BeforeValidator:
    """JSON ``null`` for a field with a default means "absent": the default applies."""
    return BeforeValidator(lambda value: default if value is None else value)


Version = Annotated[str, Field(min_length=1, max_length=16, pattern=r"^[1-9][0-9]*$", description="version number")]
UserId = text(USER_ID_MAX_CHARS, "opaque shopper id; hashed in logs, used for sticky traffic assignment")


class RequestBody(BaseModel):
    """Base of every JSON body: strict types, unknown fields refused.

    ``null`` for an optional field means "absent" (fields default to None, or use `default_when_null`).
    """

    model_config = ConfigDict(extra="forbid", strict=True)


# ---------------------------------------------------------------------------------------------
# Serving: /v1/search, /v1/rank, /v1/recommend (limits from `server.limits`)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestModels:
    search: type[RequestBody]
    rank: type[RequestBody]
    recommend: type[RequestBody]


@functools.lru_cache(maxsize=8)
def request_models(limits: LimitsConfig) -> RequestModels:
    """The models of the serving bodies under the configured limits (one set per distinct limits)."""
    Query = phrase(limits.max_query_chars, "the shopper's query")
    ProductId = text(limits.max_id_chars, "catalog product id")
    K = Annotated[int, Field(ge=1, le=limits.max_k, description="number of results"), default_when_null(10)]

    class RankItem(RequestBody):
        id: ProductId
        title: Optional[phrase(limits.max_title_chars)] = Field(
            None, description="text to embed; without it, id must be a catalog product")

    class SearchRequest(RequestBody):
        query: Query
        k: K = 10
        user_id: Optional[UserId] = None

    class RankRequest(RequestBody):
        query: Query
        items: Annotated[list[RankItem], Field(min_length=1, max_length=limits.max_items),
                         AfterValidator(functools.partial(_unique, key="id"))] = Field(
            description="candidates to re-rank; ids must be distinct")
        k: Optional[Annotated[int, Field(ge=1, le=limits.max_items)]] = Field(
            None, description="results to return (default: all items)")
        user_id: Optional[UserId] = None

    class RecommendRequest(RequestBody):
        history: Annotated[list[ProductId], Field(min_length=1, max_length=limits.max_history),
                           AfterValidator(_unique)] = Field(
            description="product ids the shopper viewed or bought, most relevant first; distinct")
        k: K = 10
        user_id: Optional[UserId] = None

    return RequestModels(SearchRequest, RankRequest, RecommendRequest)


# ---------------------------------------------------------------------------------------------
# Feedback: /v1/feedback (one event, or a batch whose events are validated one by one)
# ---------------------------------------------------------------------------------------------

FeedbackId = Annotated[str, Field(pattern=FEEDBACK_ID_PATTERN)]


class FeedbackEvent(RequestBody):
    """A shopper event joined to a served answer by `request_id`."""

    request_id: FeedbackId = Field(description="request_id of the served answer")
    event_id: FeedbackId = Field(description="unique per event; repeats are counted once")
    type: EventType
    product_id: text(FEEDBACK_PRODUCT_ID_MAX_CHARS)
    position: Optional[Annotated[int, Field(ge=1)]] = Field(
        None, description="1-based position shown; checked against the answer")
    price: Optional[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        None, description="purchase only: unit price; optional, must match the catalog price (revenue is "
                           "always priced from the catalog)")
    currency: Optional[Annotated[str, Field(pattern=r"^[A-Z]{3}$")]] = Field(
        None, description="purchase only; default: the configured currency")
    quantity: Optional[Annotated[int, Field(ge=1, le=1_000_000)]] = Field(
        None, description="purchase only: units bought (default 1; at most feedback.max_quantity per shown product)")

    @model_validator(mode="after")
    def _price_on_purchase_only(self) -> "FeedbackEvent":
        if self.type != "purchase":
            for name in ("price", "currency", "quantity"):
                if getattr(self, name) is not None:
                    raise invalid(name, f"{name} is only allowed on purchase events")
        return self


class FeedbackBatch(RequestBody):
    """Several events; each is accepted or rejected on its own (the answer lists the rejections)."""

    events: list[FeedbackEvent] = Field(min_length=1, description="at most feedback.max_events_per_request")


# The documented body; the handler checks the envelope and the store validates each event with
# `FeedbackEvent`, so one bad event in a batch does not reject the others.
FEEDBACK_BODY = TypeAdapter(Annotated[Union[FeedbackEvent, FeedbackBatch], Field(title="FeedbackRequest")])


# ---------------------------------------------------------------------------------------------
# Admin: traffic, promote, fault drills
# ---------------------------------------------------------------------------------------------


class TrafficRequest(RequestBody):
    weights: dict[Version, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        description='version -> weight (any non-negative numbers, normalised), e.g. {"1": 90, "2": 10}')
    shadow: Optional[Annotated[list[Version], Field(max_length=16), AfterValidator(_unique)]] = Field(
        None, description="versions that get a copy of traffic")


class PromoteRequest(RequestBody):
    version: Version


class FaultRequest(RequestBody):
    latency_ms: Optional[Annotated[int, Field(ge=0, le=60_000)]] = Field(None, description="added latency per request")
    error_rate: Optional[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        None, description="share of requests answered 503 injected_fault")
    version: Optional[Version] = None
    duration_s: Annotated[float, Field(ge=0.001, le=86_400.0)] = Field(
        description="the fault ends by itself after this")


class CatalogProductBody(RequestBody):
    """A product to add, or to replace (same id); what gets embedded is `Product.text()`."""

    id: text(128)
    title: phrase(1000)
    brand: Optional[text(200)] = None
    category: Optional[text(200)] = None
    price: Optional[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = None
    attributes: dict[text(64), text(200)] = Field(default_factory=dict, max_length=32,
                                                  description="short facets (colour, material, size, ...)")


class CatalogChangeRequest(RequestBody):
    """Products to add or update (`upsert`) and ids to remove; searchable when the answer comes."""

    upsert: Annotated[list[CatalogProductBody], Field(max_length=1000), AfterValidator(lambda v: _unique(v, "id")),
                      default_when_null([])] = Field(default_factory=list)
    remove: Annotated[list[text(128)], Field(max_length=10000), AfterValidator(_unique),
                      default_when_null([])] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_and_disjoint(self) -> "CatalogChangeRequest":
        if not self.upsert and not self.remove:
            raise invalid("upsert", "give at least one product to upsert or one id to remove")
        both = {p.id for p in self.upsert} & set(self.remove)
        if both:
            raise invalid("remove", f"product {sorted(both)[0]!r} is both upserted and removed")
        return self


_VERSION = TypeAdapter(Version)


# ---------------------------------------------------------------------------------------------
# Alertmanager webhook: /v1/alerts (payload version 4; fields this server does not use are ignored)
# ---------------------------------------------------------------------------------------------

MAX_ALERTS = 1000
AlertStatus = Literal["firing", "resolved"]
Labels = dict[str, str]


class WebhookAlert(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)

    status: AlertStatus
    labels: Labels
    # Only echoed back in the answer: anything but a string is dropped rather than refused.
    fingerprint: Annotated[Optional[str], BeforeValidator(lambda v: v if isinstance(v, str) else None)] = None


class AlertmanagerPayload(BaseModel):
    """What Alertmanager POSTs to a webhook receiver (only the fields acted on are checked)."""

    model_config = ConfigDict(extra="ignore", strict=True)

    version: Literal["4"]
    status: AlertStatus
    groupLabels: Optional[Labels] = None
    commonLabels: Optional[Labels] = None
    alerts: list[WebhookAlert] = Field(max_length=MAX_ALERTS)


# ---------------------------------------------------------------------------------------------
# Validation entry points
# ---------------------------------------------------------------------------------------------


def validation_error(exc: ValidationError, model: Optional[type[BaseModel]] = None) -> ApiError:
    """The 400 `validation` error for the first problem pydantic found, naming its JSON path."""
    error = exc.errors()[0]
    field, message = error_key_and_message(error, model=model)
    if error["type"] in ("model_type", "model_attributes_type") and not error["loc"]:
        return ApiError.validation(f"body must be a JSON object, got {type(error['input']).__name__}")
    return ApiError.validation(f"{field}: {message}" if field else message, field or None)


def validate_model(model: type[M], data: Any) -> M:
    """`data` (decoded JSON) checked against `model`; a 400 `validation` ApiError naming the field otherwise."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc, model) from None


def validate_body(model: type[M], data: Any) -> dict:
    """`data` (decoded JSON) checked against `model`, as a dict without the absent optional fields."""
    return validate_model(model, data).model_dump(exclude_none=True)


def validate_version(value: str, field: str) -> str:
    """A version number from the URL or a body key; 400 `validation` naming `field` otherwise."""
    try:
        return _VERSION.validate_python(value)
    except ValidationError as exc:
        raise ApiError.validation(f"{field}: {error_key_and_message(exc.errors()[0])[1]}", field) from None


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


# Request key (set by the middleware): seconds the whole body may take to arrive.
BODY_TIMEOUT = web.RequestKey("body_timeout_s", float)


async def read_json(request: web.Request, max_body_bytes: int) -> Any:
    """The request body parsed as strict UTF-8 JSON, or an ApiError (413/415/400) saying why."""
    content_type = request.content_type
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Type must be application/json, got {request.headers.get('Content-Type') or 'none'}",
        )
    charset = request.charset
    if charset is not None and charset.lower().replace("-", "") != "utf8":
        raise ApiError(415, "unsupported_media_type", f"charset must be utf-8, got {charset}")
    declared = request.content_length
    if declared is not None and declared > max_body_bytes:
        raise _too_large(max_body_bytes)
    if request.content.is_eof():
        # The whole body came with the headers (a small request): nothing to wait for, so no timer.
        body = await request.content.read()
        if len(body) > max_body_bytes:
            raise _too_large(max_body_bytes)
    else:
        body = await _read_slow_body(request, max_body_bytes)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_encoding", f"body is not valid UTF-8 (byte {exc.start})") from None
    if not text.strip():
        raise ApiError(400, "invalid_json", "body is empty; expected a JSON object")
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "invalid_json", f"invalid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "invalid_json", f"invalid JSON: {exc}") from None


async def _read_slow_body(request: web.Request, max_body_bytes: int) -> bytes:
    """A body still arriving: read it within `server.body_timeout_s` and the size limit."""
    chunks: list[bytes] = []
    size = 0
    timeout = request.get(BODY_TIMEOUT)
    try:
        async with asyncio.timeout(timeout):
            while True:
                chunk = await request.content.read(65536)
                if not chunk:
                    break
                size += len(chunk)
                if size > max_body_bytes:
                    raise _too_large(max_body_bytes)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, "timeout", f"the request body did not arrive within {timeout:g} s "
                       f"(server.body_timeout_s; {size} bytes received)") from None
    return b"".join(chunks)


async def read_json_body(request: web.Request, model: type[M], max_body_bytes: int) -> dict:
    """Read, parse and validate a JSON object body against `model` (see `validate_body`)."""
    return validate_body(model, await read_json(request, max_body_bytes))


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"request body is larger than the limit of {limit} bytes")
