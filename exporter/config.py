"""YAML configuration of the exporter: typed sections, strict validation, env overrides.

Every section is a pydantic model on the shared `typed_config.Section`, so a typo or a wrong type
fails at start-up with the dotted key that is wrong instead of being silently ignored.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Optional

from pydantic import Field, model_validator

import typed_config
from typed_config import ConfigError, Section, invalid, parse_section

__all__ = [
    "ConfigError",
    "ENV_PREFIX",
    "ExporterConfig",
    "NvmlConfig",
    "ServerConfig",
    "apply_env_overrides",
    "load_config",
    "parse_config",
]

ENV_PREFIX = "EXPORTER"  # variables are EXPORTER__SECTION__KEY

PositiveSeconds = Annotated[float, Field(gt=0)]


class ServerConfig(Section):
    """Where the HTTP server listens. 127.0.0.1 by default; set 0.0.0.0 in containers."""

    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9400


class NvmlConfig(Section):
    """The NVML GPU collector (see docs/exporter.md for every key)."""

    enabled: bool = True
    # on_scrape: one NVML pass per scrape, shared by concurrent scrapes and reused for max_age_seconds;
    # background: a pass every poll_interval_seconds, scrapes read the latest snapshot.
    mode: Literal["on_scrape", "background"] = "on_scrape"
    max_age_seconds: Annotated[float, Field(ge=0)] = 1.0
    poll_interval_seconds: PositiveSeconds = 5.0
    # A scrape waits at most this long for a pass, then serves the last good snapshot marked stale.
    scrape_timeout_seconds: PositiveSeconds = 5.0
    reinit_backoff_initial_seconds: PositiveSeconds = 1.0
    reinit_backoff_max_seconds: PositiveSeconds = 60.0
    xid_events: bool = True
    xid_wait_milliseconds: Annotated[int, Field(ge=1)] = 1000
    process_memory: bool = False
    max_process_series: Annotated[int, Field(ge=0)] = 256
    pcie_throughput: bool = False
    mig: bool = True

    @model_validator(mode="after")
    def _backoff_grows(self) -> "NvmlConfig":
        if self.reinit_backoff_max_seconds < self.reinit_backoff_initial_seconds:
            raise invalid("reinit_backoff_max_seconds", "must be >= reinit_backoff_initial_seconds")
        return self


class ExporterConfig(Section):
    """The whole file. `anomaly` stays a raw mapping: its component validates it (lazily imported)."""

    server: ServerConfig = Field(default_factory=ServerConfig)
    nvml: NvmlConfig = Field(default_factory=NvmlConfig)
    anomaly: Optional[dict[str, Any]] = None


def parse_config(data: Mapping[str, Any] | None) -> ExporterConfig:
    """Validate a raw mapping (parsed YAML, env overrides applied); raises `ConfigError`."""
    return parse_section(ExporterConfig, data)


def apply_env_overrides(data: dict, environ: Mapping[str, str] | None = None) -> dict:
    """Overlay EXPORTER__SECTION__KEY=value (any depth, keys lower-cased) onto `data` in place."""
    return typed_config.apply_env_overrides(data, ENV_PREFIX, environ)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> ExporterConfig:
    """Read the YAML file (or nothing), apply env overrides, validate. Raises ConfigError."""
    data = typed_config.load_yaml_mapping(path) if path is not None else {}
    apply_env_overrides(data, environ)
    return parse_config(data)
