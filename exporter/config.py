"""YAML configuration of the exporter: typed sections, strict validation, env overrides.

Every section is a plain dataclass; `build_dataclass` validates a mapping against it from the type
annotations, so a typo or a wrong type fails at start-up with the dotted key that is wrong instead of
being silently ignored. Components with their own section (the anomaly runtime) reuse `ConfigError`
and `build_dataclass` for it.
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

ENV_PREFIX = "EXPORTER__"


class ConfigError(ValueError):
    """A configuration value is missing, unknown or ill-typed; `key` is its dotted path."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}" if key else message)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _convert(value: Any, tp: Any, path: str) -> Any:
    """Check (and minimally coerce: int -> float) `value` against the annotation `tp`."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, path)
            except ConfigError as exc:
                errors.append(exc.message)
        raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(path, f"must be one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list):
            raise ConfigError(path, f"expected a list, got {type(value).__name__}")
        item_tp = args[0] if args else Any
        items = [_convert(v, item_tp, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {type(value).__name__}")
        val_tp = args[1] if len(args) == 2 else Any
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(path, f"keys must be strings, got {k!r}")
            out[k] = _convert(v, val_tp, _join(path, k))
        return out
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected a boolean, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(path, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(path, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(path, f"expected a string, got {value!r}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(path, f"expected {_type_name(tp)}, got {value!r}")


def build_dataclass(cls: type, data: Any, path: str = "") -> Any:
    """Validate the mapping `data` against dataclass `cls` and return an instance.

    Unknown keys, wrong types and missing required fields raise ConfigError naming the dotted key
    (`path` is the prefix, e.g. "nvml"). `None` for a whole section means "all defaults".
    After construction, an optional `validate(self, path)` method on the dataclass checks
    cross-field rules (ranges, orderings) and raises ConfigError itself.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(_join(path, str(key)), f"unknown key (known: {known})")
    kwargs = {}
    for name, f in fields.items():
        key_path = _join(path, name)
        if name in data:
            kwargs[name] = _convert(data[name], hints[name], key_path)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(key_path, "required key is missing")
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(path)
    return obj


def require_positive(path: str, **values: float) -> None:
    """Raise ConfigError for the first named value that is not > 0."""
    for name, value in values.items():
        if value is not None and value <= 0:
            raise ConfigError(_join(path, name), f"must be > 0, got {value}")


@dataclass
class ServerConfig:
    """Where the HTTP server listens. 127.0.0.1 by default; set 0.0.0.0 in containers."""

    host: str = "127.0.0.1"
    port: int = 9400

    def validate(self, path: str) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(_join(path, "port"), f"must be in 0..65535, got {self.port}")


@dataclass
class NvmlConfig:
    """The NVML GPU collector (see docs/exporter.md for every key)."""

    enabled: bool = True
    # on_scrape: one NVML pass per scrape, shared by concurrent scrapes and reused for max_age_seconds;
    # background: a pass every poll_interval_seconds, scrapes read the latest snapshot.
    mode: Literal["on_scrape", "background"] = "on_scrape"
    max_age_seconds: float = 1.0
    poll_interval_seconds: float = 5.0
    # A scrape waits at most this long for a pass, then serves the last good snapshot marked stale.
    scrape_timeout_seconds: float = 5.0
    reinit_backoff_initial_seconds: float = 1.0
    reinit_backoff_max_seconds: float = 60.0
    xid_events: bool = True
    xid_wait_milliseconds: int = 1000
    process_memory: bool = False
    max_process_series: int = 256
    pcie_throughput: bool = False
    mig: bool = True

    def validate(self, path: str) -> None:
        require_positive(
            path,
            poll_interval_seconds=self.poll_interval_seconds,
            scrape_timeout_seconds=self.scrape_timeout_seconds,
            reinit_backoff_initial_seconds=self.reinit_backoff_initial_seconds,
            reinit_backoff_max_seconds=self.reinit_backoff_max_seconds,
            xid_wait_milliseconds=self.xid_wait_milliseconds,
        )
        if self.max_age_seconds < 0:
            raise ConfigError(_join(path, "max_age_seconds"), "must be >= 0")
        if self.max_process_series < 0:
            raise ConfigError(_join(path, "max_process_series"), "must be >= 0")
        if self.reinit_backoff_max_seconds < self.reinit_backoff_initial_seconds:
            raise ConfigError(
                _join(path, "reinit_backoff_max_seconds"), "must be >= reinit_backoff_initial_seconds"
            )


@dataclass
class ExporterConfig:
    """The whole file. `anomaly` stays a raw mapping: its component validates it (lazily imported)."""

    server: ServerConfig = field(default_factory=ServerConfig)
    nvml: NvmlConfig = field(default_factory=NvmlConfig)
    anomaly: Optional[dict[str, Any]] = None


def _parse_env_value(raw: str) -> Any:
    """Env values are YAML scalars/flow collections, so `2`, `true`, `[a, b]` get their types."""
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        return raw


def apply_env_overrides(data: dict, environ: Mapping[str, str] | None = None) -> dict:
    """Overlay EXPORTER__SECTION__KEY=value (any depth, keys lower-cased) onto `data` in place."""
    environ = os.environ if environ is None else environ
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX):
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX):].split("__")]
        if not all(parts):
            raise ConfigError(name, "malformed override variable (empty key part)")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts[: i + 1]), f"{name} overrides a key inside a non-mapping")
            node = child
        node[parts[-1]] = _parse_env_value(environ[name])
    return data


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> ExporterConfig:
    """Read the YAML file (or nothing), apply env overrides, validate. Raises ConfigError."""
    data: Any = {}
    if path is not None:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError("", f"cannot read config file {path}: {exc.strerror}") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError("", f"{path}: top level must be a mapping")
    data = apply_env_overrides(data, environ)
    return build_dataclass(ExporterConfig, data)
