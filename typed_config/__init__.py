"""YAML mappings -> typed dataclasses, with strict validation that names the offending dotted key.

Shared by every component's config (inference server, exporter, anomaly runtime, traffic simulator),
so all of them behave alike: a config section is a plain dataclass, `build_dataclass` checks a parsed
mapping against its annotations, and an unknown, missing or ill-typed key raises `ConfigError` with
the dotted path (``batching.max_batch_size: expected int, got 'x'``) instead of running on a default.

Conventions:

- ``None`` for a whole section means "all defaults"; a field without a default is a required key.
- Supported annotations: ``bool``, ``int``, ``float`` (ints are accepted), ``str``, ``Any``,
  ``Optional``/``Union``, ``Literal``, ``list[X]``, ``tuple[X, ...]``, ``dict[K, V]``, nested
  dataclasses and other classes (checked with ``isinstance``).
- Cross-field rules live in an optional ``validate(self, path: str)`` method of the dataclass; it runs
  after construction with the section's dotted path and raises `ConfigError` itself.
- Env overrides: ``PREFIX__SECTION__KEY=value`` (nested keys joined by ``__``, matched
  case-insensitively); the value is parsed as YAML, so ``16`` is an int and ``false`` a bool.

Dependencies: the standard library and PyYAML only, so any component can use it without pulling in
another's (the exporter must not import the inference server).
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Literal, Mapping, Union

import yaml

__all__ = [
    "ConfigError",
    "apply_env_overrides",
    "build_dataclass",
    "convert",
    "join_key",
    "load_yaml_mapping",
    "require_positive",
]


class ConfigError(ValueError):
    """A configuration value is missing, unknown or ill-typed; `key` is its dotted path ("" = none)."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


def join_key(path: str, key: str) -> str:
    """The dotted key of `key` inside the section at `path` (``""`` is the top level)."""
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin in (list, tuple, dict):
        return f"{origin.__name__}[{', '.join('...' if a is Ellipsis else _type_name(a) for a in args)}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def convert(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the annotation `tp` (recursively) and return it, converted where needed.

    The only conversions are int -> float for ``float`` and list -> tuple for ``tuple``; everything
    else must already have the right type (YAML gives scalars their types).
    """
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, path)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:  # Optional[X]: X's own message is the most precise one
            raise errors[0]
        raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if not any(type(value) is type(a) and value == a for a in args):
            raise ConfigError(path, f"expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
        return value
    if tp in (list, tuple) or origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:  # fixed-length tuple[X, Y]
            if len(value) != len(args):
                raise ConfigError(path, f"expected {_type_name(tp)} ({len(args)} items), got {value!r}")
            item_types = list(args)
        else:
            item_types = [args[0] if args else Any] * len(value)
        items = [convert(v, t, f"{path}[{i}]") for i, (v, t) in enumerate(zip(value, item_types))]
        return tuple(items) if (tp is tuple or origin is tuple) else items
    if tp is dict or origin is dict:
        key_tp, val_tp = args or (Any, Any)
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
        return {
            convert(k, key_tp, join_key(path, str(k))): convert(v, val_tp, join_key(path, str(k)))
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected bool, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(path, f"expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected str, got {value!r}")
        return value
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
        return value
    raise TypeError(f"{path}: unsupported annotation {tp!r}")  # a bug in the dataclass, not the config


def build_dataclass(cls: type, data: Any, path: str = "") -> Any:
    """Validate the mapping `data` against dataclass `cls` and return an instance.

    `path` is the dotted key of the section (``""`` for the whole file), used in every message.
    Unknown keys (the message lists the known ones), missing required keys and wrong types raise
    `ConfigError`; so do `TypeError`/`ValueError` from the constructor (``__post_init__`` checks).
    Then the instance's optional ``validate(path)`` hook checks cross-field rules.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(join_key(path, str(key)), f"unknown key (known keys: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        key_path = join_key(path, name)
        if name in data:
            kwargs[name] = convert(data[name], hints[name], key_path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(key_path, "required key is missing")
    try:
        obj = cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(path, str(exc)) from exc
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(path)
    return obj


def require_positive(path: str, **values: float | None) -> None:
    """Raise `ConfigError` for the first of the named values (keys inside `path`) that is not > 0.

    ``None`` (an unset optional) passes. The message states the smallest valid value: ``>= 1`` for
    an int, ``> 0`` for a float.
    """
    for name, value in values.items():
        if value is not None and value <= 0:
            bound = ">= 1" if isinstance(value, int) else "> 0"
            raise ConfigError(join_key(path, name), f"expected {bound}, got {value}")


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
    still has to go through `build_dataclass`, which names the key of a bad value.
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
