"""YAML configuration of the exporter: typed sections, strict validation, env overrides.

Every section is a plain dataclass validated by the shared `typed_config` from its type annotations,
so a typo or a wrong type fails at start-up with the dotted key that is wrong instead of being
silently ignored. The names other exporter modules use (`ConfigError`, `build_dataclass`,
`require_positive`) are re-exported here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

import typed_config
from typed_config import ConfigError, build_dataclass, join_key, require_positive

__all__ = [
    "ConfigError",
    "ENV_PREFIX",
    "ExporterConfig",
    "NvmlConfig",
    "ServerConfig",
    "apply_env_overrides",
    "build_dataclass",
    "load_config",
    "require_positive",
]

ENV_PREFIX = "EXPORTER"  # variables are EXPORTER__SECTION__KEY


@dataclass
class ServerConfig:
    """Where the HTTP server listens. 127.0.0.1 by default; set 0.0.0.0 in containers."""

    host: str = "127.0.0.1"
    port: int = 9400

    def validate(self, path: str) -> None:
        if not 0 <= self.port <= 65535:
            raise ConfigError(join_key(path, "port"), f"must be in 0..65535, got {self.port}")


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
            raise ConfigError(join_key(path, "max_age_seconds"), "must be >= 0")
        if self.max_process_series < 0:
            raise ConfigError(join_key(path, "max_process_series"), "must be >= 0")
        if self.reinit_backoff_max_seconds < self.reinit_backoff_initial_seconds:
            raise ConfigError(
                join_key(path, "reinit_backoff_max_seconds"), "must be >= reinit_backoff_initial_seconds"
            )


@dataclass
class ExporterConfig:
    """The whole file. `anomaly` stays a raw mapping: its component validates it (lazily imported)."""

    server: ServerConfig = field(default_factory=ServerConfig)
    nvml: NvmlConfig = field(default_factory=NvmlConfig)
    anomaly: Optional[dict[str, Any]] = None


def apply_env_overrides(data: dict, environ: Mapping[str, str] | None = None) -> dict:
    """Overlay EXPORTER__SECTION__KEY=value (any depth, keys lower-cased) onto `data` in place."""
    return typed_config.apply_env_overrides(data, ENV_PREFIX, environ)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> ExporterConfig:
    """Read the YAML file (or nothing), apply env overrides, validate. Raises ConfigError."""
    data = typed_config.load_yaml_mapping(path) if path is not None else {}
    apply_env_overrides(data, environ)
    return build_dataclass(ExporterConfig, data)
