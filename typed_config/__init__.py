"""What every component's config shares: pydantic sections, YAML loading, env overlay, dotted-key errors.

Each component declares its whole config as pydantic v2 models derived from `Section` (strict: no
``"5"`` -> 5 coercion, unknown keys rejected), and validates a parsed mapping with `parse_section`.
Any unknown, missing or ill-typed key becomes one `ConfigError` whose message starts with the dotted
key (``batching.max_batch_size: ...``, lists as ``jobs[2].step``), so start-up stops on a typo
instead of running a default.

Cross-field rules are pydantic validators; they raise `invalid(key, message)` to blame a key
inside the model being validated rather than the model as a whole.

Env overrides: ``PREFIX__SECTION__KEY=value`` (nested keys joined by ``__``, matched
case-insensitively); the value is parsed as YAML, so ``16`` is an int and ``false`` a bool. A small
overlay onto the raw mapping (not pydantic-settings) keeps that scheme exactly and lets the same
validation name the key of a bad override.

Dependencies: pydantic and PyYAML only, so any component can use it without pulling in another's
(the exporter must not import the inference server).
"""
from __future__ import annotations

import os
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Mapping, Optional, Sequence, TypeVar, Union

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

__all__ = [
    "ConfigError",
    "FieldRuleError",
    "Section",
    "apply_env_overrides",
    "dotted_key",
    "error_key_and_message",
    "invalid",
    "load_yaml_mapping",
    "parse_section",
    "require_positive",
]

S = TypeVar("S", bound=BaseModel)


class ConfigError(ValueError):
    """A configuration value is missing, unknown or ill-typed; `key` is its dotted path ("" = none)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


class FieldRuleError(ValueError):
    """Raised inside a validator: `loc` (relative to the model being validated) broke a rule."""

    def __init__(self, loc: Sequence[str | int], message: str) -> None:
        super().__init__(message)
        self.loc = tuple(loc)
        self.message = message


def invalid(key: str | int | Sequence[str | int], message: str) -> FieldRuleError:
    """The error a cross-field validator raises to blame `key` (``"min_samples"`` or ``("items", 2, "id")``)."""
    return FieldRuleError((key,) if isinstance(key, (str, int)) else key, message)


def require_positive(**values: float | None) -> None:
    """In a validator: blame the first of the named values that is not > 0 (``None``, an unset optional, passes).

    The message states the smallest valid value: ``>= 1`` for an int, ``> 0`` for a float.
    """
    for name, value in values.items():
        if value is not None and value <= 0:
            raise invalid(name, f"expected {'>= 1' if isinstance(value, int) else '> 0'}, got {value}")


class Section(BaseModel):
    """Base of every config section: strict types, unknown keys rejected, ``null`` means all defaults.

    Assignments are validated too, so a section changed after loading (CLI flags) is still valid.
    """

    model_config = ConfigDict(extra="forbid", strict=True, validate_assignment=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_defaults(cls, data: Any) -> Any:
        return {} if data is None else data


def dotted_key(loc: Sequence[str | int], path: str = "") -> str:
    """``("items", 2, "title")`` -> ``items[2].title`` under the prefix `path` (pydantic's ``[key]`` markers dropped)."""
    out, loc = path, tuple(loc)
    for i, part in enumerate(loc):
        if part == "[key]":
            continue
        if isinstance(part, int) and loc[i + 1: i + 2] != ("[key]",):  # a list index, not a dict key
            out += f"[{part}]"
        else:
            out = f"{out}.{part}" if out else str(part)
    return out


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _model_at(tp: Any, loc: Sequence[str | int]) -> Optional[type[BaseModel]]:
    """The model class found at `loc` inside the annotation `tp` (through lists, dicts, Optional), if any."""
    for part in (*loc, None):
        while typing.get_origin(tp) in (Annotated, Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            tp = args[0] if typing.get_origin(tp) is Annotated or len(args) == 1 else next(
                (a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), None)
        if part is None:
            break
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part))
            tp = field.annotation if field is not None else None
        elif typing.get_origin(tp) in (list, tuple, dict):
            tp = typing.get_args(tp)[-1] if typing.get_args(tp) else None
        else:
            return None
    return tp if isinstance(tp, type) and issubclass(tp, BaseModel) else None


def error_key_and_message(error: Mapping[str, Any], path: str = "",
                          model: Optional[type[BaseModel]] = None) -> tuple[str, str]:
    """The dotted key and a message for one entry of `ValidationError.errors()` (against `model`, if given)."""
    loc = tuple(error["loc"])
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, FieldRuleError):
        return dotted_key(loc + cause.loc, path), cause.message
    kind = error["type"]
    if kind == "extra_forbidden":
        owner = _model_at(model, loc[:-1]) if model is not None else None
        message = f"unknown key (known keys: {', '.join(owner.model_fields)})" if owner else "unknown key"
    elif kind == "missing":
        message = "required key is missing"
    elif kind in ("model_type", "dict_type", "model_attributes_type"):
        message = f"expected a mapping, got {type(error.get('input')).__name__}"
    elif kind == "value_error":
        message = str(cause) if cause is not None else error["msg"]
    else:
        message = f"{error['msg']}, got {_short_repr(error.get('input'))}"
    return dotted_key(loc, path), message


def parse_section(model: type[S], data: Any, path: str = "") -> S:
    """Validate the raw mapping `data` (None = all defaults) into `model`; raises `ConfigError`.

    `path` is the dotted key of the section (``""`` for the whole file), prefixed to every message.
    Only the first problem is reported: one fix at a time, with its exact key.
    """
    try:
        return model.model_validate({} if data is None else data)
    except ValidationError as exc:
        key, message = error_key_and_message(exc.errors()[0], path, model)
        raise ConfigError(key, message) from None


def _parse_env_value(text: str) -> Any:
    """An override's value as YAML (``16`` -> int, ``false`` -> bool); text that is no YAML stays a string."""
    if not text.strip():
        return ""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_env_overrides(data: dict, prefix: str, environ: Mapping[str, str] | None = None) -> dict:
    """Overlay ``PREFIX__SECTION__KEY=value`` variables of `environ` (default: os.environ) onto `data`.

    `prefix` is given without the trailing ``__`` (e.g. ``"EXPORTER"``); it and the keys are matched
    case-insensitively (keys are lower-cased). Changes `data` in place and returns it; the result
    still has to go through `parse_section`, which names the key of a bad value.
    """
    environ = os.environ if environ is None else environ
    start = f"{prefix.upper()}__"
    for name in sorted(environ):
        if not name.upper().startswith(start):
            continue
        parts = [p.lower() for p in name[len(start):].split("__")]
        if not all(parts):
            raise ConfigError(name, f"malformed override; use {start}SECTION__KEY=value")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(".".join(parts[: i + 1]), f"{name} sets a key inside a value that is not a mapping")
            node = child
        node[parts[-1]] = _parse_env_value(environ[name])
    return data


def load_yaml_mapping(path: str | os.PathLike) -> dict:
    """Read a YAML file whose top level is a mapping (an empty file is ``{}``); raises `ConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path}: invalid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
