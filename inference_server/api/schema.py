"""A small JSON schema language that both validates request bodies and renders OpenAPI 3.1.

One definition per request type serves both purposes, so the published document cannot drift
from what the server accepts. Validation errors name the field by JSON path (``items[2].title``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from inference_server.errors import ApiError

__all__ = [
    "Array",
    "Boolean",
    "Integer",
    "Number",
    "Object",
    "Prop",
    "Schema",
    "String",
]

_MISSING = object()


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


class Schema:
    """Base: `validate` returns the (possibly normalised) value or raises a 400 `validation` ApiError."""

    description: Optional[str] = None

    def validate(self, value: Any, path: str) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def openapi(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def _doc(self, out: dict) -> dict:
        if self.description:
            out["description"] = self.description
        return out


@dataclass
class String(Schema):
    min_length: int = 0
    max_length: Optional[int] = None
    pattern: Optional[str] = None
    strip: bool = False          # validate (and return) the value with surrounding whitespace removed
    description: Optional[str] = None

    def validate(self, value: Any, path: str) -> str:
        if not isinstance(value, str):
            raise ApiError.validation(f"{path} must be a string, got {_describe(value)}", path)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError.validation(f"{path} contains a lone surrogate (\\uD800-\\uDFFF); not valid Unicode", path) from None
        checked = value.strip() if self.strip else value
        if len(checked) < self.min_length:
            what = "empty or whitespace" if self.strip else "empty"
            if self.min_length <= 1:
                raise ApiError.validation(f"{path} must not be {what}", path)
            raise ApiError.validation(f"{path} must have at least {self.min_length} characters", path)
        if self.max_length is not None and len(value) > self.max_length:
            raise ApiError.validation(
                f"{path} is {len(value)} characters long, over the limit of {self.max_length}", path
            )
        if self.pattern is not None and not re.fullmatch(self.pattern, checked):
            raise ApiError.validation(f"{path} must match {self.pattern}", path)
        return checked

    def openapi(self) -> dict:
        out: dict = {"type": "string", "minLength": self.min_length}
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        if self.pattern is not None:
            out["pattern"] = self.pattern
        elif self.strip and self.min_length:
            out["pattern"] = r"\S"
        return self._doc(out)


def _check_range(value: float, minimum: Optional[float], maximum: Optional[float], path: str) -> None:
    """Reject a number outside [minimum, maximum] (either bound may be absent), naming the bounds."""
    below = minimum is not None and value < minimum
    above = maximum is not None and value > maximum
    if not (below or above):
        return
    if minimum is not None and maximum is not None:
        raise ApiError.validation(f"{path} must be between {minimum} and {maximum}, got {value}", path)
    bound = f">= {minimum}" if below else f"<= {maximum}"
    raise ApiError.validation(f"{path} must be {bound}, got {value}", path)


def _range_doc(out: dict, minimum: Optional[float], maximum: Optional[float]) -> dict:
    if minimum is not None:
        out["minimum"] = minimum
    if maximum is not None:
        out["maximum"] = maximum
    return out


@dataclass
class Integer(Schema):
    minimum: Optional[int] = None
    maximum: Optional[int] = None
    description: Optional[str] = None

    def validate(self, value: Any, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError.validation(f"{path} must be an integer, got {_describe(value)}", path)
        _check_range(value, self.minimum, self.maximum, path)
        return value

    def openapi(self) -> dict:
        return self._doc(_range_doc({"type": "integer"}, self.minimum, self.maximum))


@dataclass
class Number(Schema):
    minimum: Optional[float] = None
    maximum: Optional[float] = None
    description: Optional[str] = None

    def validate(self, value: Any, path: str) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ApiError.validation(f"{path} must be a finite number, got {_describe(value)}", path)
        _check_range(value, self.minimum, self.maximum, path)
        return float(value)

    def openapi(self) -> dict:
        return self._doc(_range_doc({"type": "number"}, self.minimum, self.maximum))


@dataclass
class Boolean(Schema):
    description: Optional[str] = None

    def validate(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            raise ApiError.validation(f"{path} must be a boolean, got {_describe(value)}", path)
        return value

    def openapi(self) -> dict:
        return self._doc({"type": "boolean"})


@dataclass
class Array(Schema):
    items: Schema
    min_items: int = 0
    max_items: Optional[int] = None
    unique: bool = False         # items (or their "id" when items are objects) must be distinct
    description: Optional[str] = None

    def validate(self, value: Any, path: str) -> list:
        if not isinstance(value, list):
            raise ApiError.validation(f"{path} must be an array, got {_describe(value)}", path)
        if len(value) < self.min_items:
            raise ApiError.validation(f"{path} must have at least {self.min_items} item(s)", path)
        if self.max_items is not None and len(value) > self.max_items:
            raise ApiError.validation(
                f"{path} has {len(value)} items, over the limit of {self.max_items}", path
            )
        out = [self.items.validate(item, f"{path}[{i}]") for i, item in enumerate(value)]
        if self.unique:
            seen: set = set()
            for i, item in enumerate(out):
                key = item.get("id") if isinstance(item, dict) else item
                if key in seen:
                    where = f"{path}[{i}]" + (".id" if isinstance(item, dict) else "")
                    raise ApiError.validation(f"{where}: duplicate value {key!r}", where)
                seen.add(key)
        return out

    def openapi(self) -> dict:
        out: dict = {"type": "array", "items": self.items.openapi(), "minItems": self.min_items}
        if self.max_items is not None:
            out["maxItems"] = self.max_items
        if self.unique:
            out["uniqueItems"] = True
        return self._doc(out)


@dataclass
class Prop:
    name: str
    schema: Schema
    required: bool = False
    default: Any = _MISSING
    nullable: bool = False       # an explicit JSON null means "absent"


@dataclass
class Object(Schema):
    props: Sequence[Prop]
    title: Optional[str] = None
    additional: bool = False
    description: Optional[str] = None
    _by_name: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._by_name = {p.name: p for p in self.props}

    def validate(self, value: Any, path: str = "") -> dict:
        where = path or "body"
        if not isinstance(value, dict):
            raise ApiError.validation(f"{where} must be a JSON object, got {_describe(value)}", path or None)
        out: dict = {}
        for name, raw in value.items():
            prop = self._by_name.get(name)
            if prop is None:
                if self.additional:
                    out[name] = raw
                    continue
                allowed = ", ".join(p.name for p in self.props)
                raise ApiError.validation(
                    f"{_join(path, name)} is not an accepted field (accepted: {allowed})", _join(path, name)
                )
            if raw is None and (prop.nullable or not prop.required):
                continue
            out[name] = prop.schema.validate(raw, _join(path, name))
        for prop in self.props:
            if prop.name in out:
                continue
            if prop.required:
                raise ApiError.validation(f"{_join(path, prop.name)} is required", _join(path, prop.name))
            if prop.default is not _MISSING:
                out[prop.name] = prop.default
        return out

    def openapi(self) -> dict:
        props = {}
        for prop in self.props:
            doc = prop.schema.openapi()
            if prop.default is not _MISSING:
                doc["default"] = prop.default
            if prop.nullable or not prop.required:
                doc = {"anyOf": [doc, {"type": "null"}]} if prop.nullable else doc
            props[prop.name] = doc
        out: dict = {"type": "object", "properties": props, "additionalProperties": self.additional}
        required = [p.name for p in self.props if p.required]
        if required:
            out["required"] = required
        if self.title:
            out["title"] = self.title
        return self._doc(out)
