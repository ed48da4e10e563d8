"""Server configuration: one YAML file validated into dataclasses, with env overrides.

Validation is generic (driven by the dataclass annotations), so every section, including the ones
other components contribute, gets the same behaviour: an unknown or ill-typed key is a
`ConfigError` naming the dotted key (``batching.max_batch_size: expected int, got 'x'``).

Extension point: components that own a top-level section (e.g. the model repository and traffic
policy) call `register_section(name, DataclassType)` at import time; the section is then accepted,
validated and available as ``config.section(name)``.

Env overrides: ``INFERENCE_SERVER__SECTION__KEY=value`` (nested keys joined by ``__``, matched
case-insensitively; the value is parsed as a YAML scalar, so ``16`` is an int and ``false`` a bool).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional, Union

import yaml

from inference_server.catalog import CatalogConfig
from inference_server.model.backend import ModelSpec

__all__ = [
    "AppConfig",
    "BatchingConfig",
    "ConfigError",
    "ENV_PREFIX",
    "LimitsConfig",
    "RequestLogConfig",
    "ServerConfig",
    "apply_env_overrides",
    "config_to_dict",
    "load_config",
    "parse_config",
    "register_section",
]

ENV_PREFIX = "INFERENCE_SERVER__"
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "config" / "inference_server.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message names the offending dotted key."""


# ---------------------------------------------------------------------------------------------
# Sections owned by the serving core
# ---------------------------------------------------------------------------------------------


@dataclass
class LimitsConfig:
    """Request size limits; requests beyond them get a 400 `validation` error naming the field."""

    max_query_chars: int = 512
    max_title_chars: int = 1000
    max_id_chars: int = 128
    max_k: int = 100
    max_items: int = 200
    max_history: int = 100

    def check(self, prefix: str) -> None:
        for name in ("max_query_chars", "max_title_chars", "max_id_chars", "max_k", "max_items", "max_history"):
            _require_positive(prefix, name, getattr(self, name))


@dataclass
class ServerConfig:
    """HTTP listener and per-request limits."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 262144
    request_timeout_ms: int = 2000
    retry_after_s: int = 1          # Retry-After on 429 queue_full / 503 / 504
    not_ready_retry_after_s: int = 5  # Retry-After on 503 not_ready while loading
    access_log: bool = False        # aiohttp's access log (the JSON request log is separate)
    limits: LimitsConfig = field(default_factory=LimitsConfig)

    def check(self, prefix: str) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"{prefix}.port: expected 0..65535, got {self.port}")
        for name in ("max_body_bytes", "request_timeout_ms", "retry_after_s", "not_ready_retry_after_s"):
            _require_positive(prefix, name, getattr(self, name))
        self.limits.check(f"{prefix}.limits")


@dataclass
class BatchingConfig:
    """Dynamic batching of text-encoding work (see docs/server.md)."""

    enabled: bool = True
    max_batch_size: int = 32
    max_queue_delay_ms: float = 2.0
    max_queue_size: int = 512
    # A collection window holds up to max_batch_size * window_batches texts; it is sorted by token
    # length and cut into batches, so texts of similar length share a batch (less padding).
    window_batches: int = 4

    def check(self, prefix: str) -> None:
        for name in ("max_batch_size", "max_queue_size", "window_batches"):
            _require_positive(prefix, name, getattr(self, name))
        if self.max_queue_delay_ms < 0:
            raise ConfigError(f"{prefix}.max_queue_delay_ms: expected >= 0, got {self.max_queue_delay_ms}")

    @property
    def effective_batch_size(self) -> int:
        return self.max_batch_size if self.enabled else 1


@dataclass
class RequestLogConfig:
    """JSON-lines request log with size-based rotation. The user-id salt is a secret: env or file only."""

    enabled: bool = True
    path: str = "var/log/requests.jsonl"
    max_bytes: int = 10_485_760
    backups: int = 5
    user_id_salt_env: str = "INFERENCE_SERVER_USER_ID_SALT"
    user_id_salt_file: Optional[str] = None

    def check(self, prefix: str) -> None:
        _require_positive(prefix, "max_bytes", self.max_bytes)
        if self.backups < 0:
            raise ConfigError(f"{prefix}.backups: expected >= 0, got {self.backups}")


def _require_positive(prefix: str, name: str, value: float) -> None:
    if value < 1:
        raise ConfigError(f"{prefix}.{name}: expected >= 1, got {value}")


# ---------------------------------------------------------------------------------------------
# Section registry (extension point for other components)
# ---------------------------------------------------------------------------------------------

_EXTRA_SECTIONS: dict[str, type] = {}
_CORE_SECTIONS = ("server", "model", "catalog", "batching", "request_log")


def register_section(name: str, section_type: type) -> None:
    """Accept a top-level config section `name` validated into the dataclass `section_type`.

    Call at import time of the owning module, before `load_config`. Re-registering the same type is
    a no-op (module reloads); a different type under a taken name is a programming error.
    """
    if not dataclasses.is_dataclass(section_type):
        raise TypeError(f"config section {name!r} must be a dataclass, got {section_type!r}")
    if name in _CORE_SECTIONS:
        raise ValueError(f"config section {name!r} belongs to the serving core")
    existing = _EXTRA_SECTIONS.get(name)
    if existing is not None and existing is not section_type:
        raise ValueError(f"config section {name!r} is already registered by {existing!r}")
    _EXTRA_SECTIONS[name] = section_type


def registered_sections() -> dict[str, type]:
    return dict(_EXTRA_SECTIONS)


@dataclass
class AppConfig:
    """The whole server configuration."""

    server: ServerConfig = field(default_factory=ServerConfig)
    model: ModelSpec = field(default_factory=ModelSpec)
    catalog: CatalogConfig = field(default_factory=CatalogConfig)
    batching: BatchingConfig = field(default_factory=BatchingConfig)
    request_log: RequestLogConfig = field(default_factory=RequestLogConfig)
    # Sections registered with `register_section`, by name (defaults filled in for absent ones).
    extra: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> Any:
        """A registered extension section (its dataclass instance)."""
        try:
            return self.extra[name]
        except KeyError:
            raise KeyError(f"config section {name!r} is not registered") from None

    def check(self) -> None:
        self.server.check("server")
        self.batching.check("batching")
        self.request_log.check("request_log")
        if self.model.max_seq_length < 2:
            raise ConfigError(f"model.max_seq_length: expected >= 2, got {self.model.max_seq_length}")
        if self.model.num_threads is not None and self.model.num_threads < 1:
            raise ConfigError(f"model.num_threads: expected >= 1, got {self.model.num_threads}")
        for name, value in self.extra.items():
            check = getattr(value, "check", None)
            if callable(check):
                check(name)


# ---------------------------------------------------------------------------------------------
# Generic validation from annotations
# ---------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        return f"list[{_type_name(item)}]"
    if origin is dict:
        key, val = typing.get_args(tp) or (str, Any)
        return f"dict[{_type_name(key)}, {_type_name(val)}]"
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Validate `value` against the annotation `tp`; `key` is the dotted path for messages."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        allowed = typing.get_args(tp)
        if not any(type(value) is type(a) and value == a for a in allowed):
            raise ConfigError(f"{key}: expected one of {', '.join(repr(a) for a in allowed)}, got {value!r}")
        return value
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return [_coerce(item, item_tp, f"{key}[{i}]") for i, item in enumerate(value)]
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp) or (str, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return {
            _coerce(k, key_tp, f"{key}.{k}"): _coerce(v, val_tp, f"{key}.{k}") for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return _build_dataclass(tp, value, key)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected bool, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected float, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected str, got {value!r}")
        return value
    if isinstance(tp, type):
        if not isinstance(value, tp):
            raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported annotation {tp!r}")  # pragma: no cover - programming error


def _build_dataclass(cls: type, raw: Any, key: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        where = f"{key}: " if key else ""
        raise ConfigError(f"{where}expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for name, value in raw.items():
        dotted = f"{key}.{name}" if key else str(name)
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"{dotted}: unknown key (known keys: {known})")
        kwargs[name] = _coerce(value, hints[name], dotted)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:  # e.g. a __post_init__ check of another component
        raise ConfigError(f"{key or 'config'}: {exc}") from exc


def parse_config(raw: Mapping[str, Any] | None) -> AppConfig:
    """Validate a raw mapping (parsed YAML, env overrides applied) into an `AppConfig`."""
    raw = dict(raw or {})
    extra_raw = {name: raw.pop(name) for name in list(raw) if name in _EXTRA_SECTIONS}
    if "extra" in raw:
        raise ConfigError("extra: unknown key (extension sections are top-level keys)")
    config = _build_dataclass(AppConfig, raw, "")
    for name, section_type in _EXTRA_SECTIONS.items():
        config.extra[name] = _build_dataclass(section_type, extra_raw.get(name), name)
    config.check()
    return config


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Apply ``INFERENCE_SERVER__A__B=value`` variables onto `raw` (in place; also returned)."""
    environ = os.environ if environ is None else environ
    for name in sorted(environ):
        if not name.upper().startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if not parts or any(not p for p in parts):
            raise ConfigError(f"{name}: malformed override; use {ENV_PREFIX}SECTION__KEY=value")
        try:
            value = yaml.safe_load(environ[name]) if environ[name].strip() else ""
        except yaml.YAMLError as exc:
            raise ConfigError(f"{'.'.join(parts)} (from {name}): not a YAML scalar: {exc}") from exc
        node = raw
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise ConfigError(f"{'.'.join(parts[: i + 1])} (from {name}): is not a section")
            node = child
        node[parts[-1]] = value
    return raw


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> AppConfig:
    """Read the YAML file (default: config/inference_server.yaml if present), apply env overrides, validate."""
    raw: dict[str, Any] = {}
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {str(path)!r}: {exc.strerror or exc}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        raw = loaded or {}
    apply_env_overrides(raw, environ)
    return parse_config(raw)


def config_to_dict(config: AppConfig) -> dict[str, Any]:
    """Plain-data view of a config (for `--check-config` and logs)."""
    out = dataclasses.asdict(config)
    extra = out.pop("extra")
    out.update(extra)
    return out
