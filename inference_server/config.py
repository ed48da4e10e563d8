"""Server configuration: one YAML file validated into dataclasses, with env overrides.

Validation is the shared `typed_config` (driven by the dataclass annotations), so every section,
including the ones other components contribute, gets the same behaviour: an unknown or ill-typed key
is a `ConfigError` naming the dotted key (``batching.max_batch_size: expected int, got 'x'``), and a
section's ``validate(self, path)`` method checks its cross-field rules.

Extension point: components that own a top-level section (e.g. the model repository and traffic
policy) call `register_section(name, DataclassType)` at import time; the section is then accepted,
validated and available as ``config.section(name)``.

Env overrides: ``INFERENCE_SERVER__SECTION__KEY=value`` (nested keys joined by ``__``, matched
case-insensitively; the value is parsed as YAML, so ``16`` is an int and ``false`` a bool).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Optional

import typed_config
from typed_config import ConfigError, build_dataclass, require_positive

from inference_server.catalog import CatalogConfig
from inference_server.models.backend import ModelSpec

__all__ = [
    "AppConfig",
    "BatchingConfig",
    "ConfigError",
    "ENV_PREFIX",
    "LimitsConfig",
    "RequestLogConfig",
    "ServerConfig",
    "apply_env_overrides",
    "build_dataclass",
    "config_to_dict",
    "load_config",
    "parse_config",
    "register_section",
]

ENV_PREFIX = "INFERENCE_SERVER"  # variables are INFERENCE_SERVER__SECTION__KEY
DEFAULT_CONFIG_PATH = Path(__file__).resolve().parents[1] / "config" / "inference_server.yaml"


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

    def validate(self, path: str) -> None:
        require_positive(path, **dataclasses.asdict(self))


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

    def validate(self, path: str) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(typed_config.join_key(path, "port"), f"expected 0..65535, got {self.port}")
        require_positive(path, max_body_bytes=self.max_body_bytes, request_timeout_ms=self.request_timeout_ms,
                         retry_after_s=self.retry_after_s, not_ready_retry_after_s=self.not_ready_retry_after_s)


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
    # Model instances per version: batches that run at the same time, each in its own worker
    # thread (Triton's instance count). 1 keeps latency lowest at moderate load; None = auto (the
    # usable CPU cores on CPU, torch threads split between them; 1 on a GPU) adds throughput under
    # heavy load (docs/server.md, "Model instances").
    instances: Optional[int] = 1

    def validate(self, path: str) -> None:
        require_positive(path, max_batch_size=self.max_batch_size, max_queue_size=self.max_queue_size,
                         window_batches=self.window_batches)
        if self.instances is not None:
            require_positive(path, instances=self.instances)
        if self.max_queue_delay_ms < 0:
            raise ConfigError(typed_config.join_key(path, "max_queue_delay_ms"),
                              f"expected >= 0, got {self.max_queue_delay_ms}")

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

    def validate(self, path: str) -> None:
        require_positive(path, max_bytes=self.max_bytes)
        if self.backups < 0:
            raise ConfigError(typed_config.join_key(path, "backups"), f"expected >= 0, got {self.backups}")


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

    def validate(self, path: str = "") -> None:
        """Checks of the `model` section (`ModelSpec` belongs to the model package, without a hook)."""
        model = typed_config.join_key(path, "model")
        if self.model.max_seq_length < 2:
            raise ConfigError(f"{model}.max_seq_length", f"expected >= 2, got {self.model.max_seq_length}")
        if self.model.num_threads is not None and self.model.num_threads < 1:
            raise ConfigError(f"{model}.num_threads", f"expected >= 1, got {self.model.num_threads}")


def parse_config(raw: Mapping[str, Any] | None) -> AppConfig:
    """Validate a raw mapping (parsed YAML, env overrides applied) into an `AppConfig`."""
    raw = dict(raw or {})
    extra_raw = {name: raw.pop(name) for name in list(raw) if name in _EXTRA_SECTIONS}
    if "extra" in raw:
        raise ConfigError("extra", "unknown key (extension sections are top-level keys)")
    config = build_dataclass(AppConfig, raw, "")
    for name, section_type in _EXTRA_SECTIONS.items():
        config.extra[name] = build_dataclass(section_type, extra_raw.get(name), name)
    return config


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Apply ``INFERENCE_SERVER__A__B=value`` variables onto `raw` (in place; also returned)."""
    return typed_config.apply_env_overrides(raw, ENV_PREFIX, environ)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> AppConfig:
    """Read the YAML file (default: config/inference_server.yaml if present), apply env overrides, validate."""
    if path is None and DEFAULT_CONFIG_PATH.is_file():
        path = DEFAULT_CONFIG_PATH
    raw = typed_config.load_yaml_mapping(path) if path is not None else {}
    apply_env_overrides(raw, environ)
    return parse_config(raw)


def config_to_dict(config: AppConfig) -> dict[str, Any]:
    """Plain-data view of a config (for `--check-config` and logs)."""
    out = dataclasses.asdict(config)
    extra = out.pop("extra")
    out.update(extra)
    return out
