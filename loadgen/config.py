"""The traffic simulator's YAML configuration: dataclasses validated by the shared `typed_config`.

Unknown or ill-typed keys are errors that name the key (e.g. `shopper.users: expected int, got 'x'`),
so a typo in a drill config fails at start instead of silently running the default.
"""
from __future__ import annotations

import os
import typing
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

import yaml

from typed_config import ConfigError, build_dataclass, join_key, load_yaml_mapping

__all__ = [
    "ConfigError",
    "LoadgenConfig",
    "MixConfig",
    "RateConfig",
    "RelevanceConfig",
    "SCENARIO_NAMES",
    "ScenarioConfig",
    "ShopperConfig",
    "TargetConfig",
    "build_dataclass",
    "load_config",
    "parse_scenario",
]

SCENARIO_NAMES = ("latency-spike", "error-burst", "degraded-canary", "surge")


@dataclass
class TargetConfig:
    """Where the inference server is and how to reach its admin API."""

    url: str = "http://127.0.0.1:8000"
    timeout_s: float = 10.0
    model: str = "minilm"
    # Admin bearer token (needed only for fault scenarios): read from this file, else from this env var.
    admin_token_file: Optional[str] = None
    admin_token_env: str = "INFERENCE_ADMIN_TOKEN"


@dataclass
class RateConfig:
    """Open-loop arrival rate with a daily pattern; `day_length_s` compresses a simulated day."""

    requests_per_second: float = 5.0
    daily_amplitude: float = 0.5
    peak_hour: float = 20.0
    day_length_s: float = 86400.0
    start_hour: Optional[float] = None
    max_concurrency: int = 128


@dataclass
class MixConfig:
    """Relative weights of the three kinds of request a shopper makes."""

    search: float = 0.6
    rank: float = 0.2
    recommend: float = 0.2


@dataclass
class ShopperConfig:
    """The cascade click model and the shopper population."""

    users: int = 1000
    k: int = 10
    rank_candidates: int = 20
    max_history: int = 3
    # Probability of examining the next result after one that was not clicked (position bias).
    patience: float = 0.85
    # Click probability of a perfectly relevant / an irrelevant result once examined.
    max_click_probability: float = 0.6
    noise_click_probability: float = 0.01
    # Probability of stopping after clicking a perfectly relevant result (scaled by relevance).
    satisfaction_probability: float = 0.7
    # Add-to-cart after a click and purchase after an add-to-cart, for a perfectly relevant result.
    add_to_cart_probability: float = 0.35
    purchase_probability: float = 0.5
    currency: str = "USD"
    default_price: float = 25.0


@dataclass
class RelevanceConfig:
    """Where the true relevance comes from: the same catalog config the server loads."""

    # The server's YAML config; its `catalog` section is used unless `catalog` is given here.
    server_config: Optional[str] = "config/inference_server.yaml"
    catalog: Optional[dict[str, Any]] = None
    # Grade treated as "not relevant" (Home Depot: 1 = irrelevant) and as "perfect" (default: max seen).
    min_grade: Optional[float] = None
    max_grade: Optional[float] = None


@dataclass
class ScenarioConfig:
    """One fault drill: what, when (seconds after start) and for how long."""

    name: Literal["latency-spike", "error-burst", "degraded-canary", "surge"] = "error-burst"
    start_s: float = 0.0
    duration_s: float = 60.0
    latency_ms: int = 800
    error_rate: float = 0.5
    version: Optional[str] = None
    canary_version: str = "2"
    canary_weight: int = 20
    surge_factor: float = 10.0


@dataclass
class LoadgenConfig:
    target: TargetConfig = field(default_factory=TargetConfig)
    rate: RateConfig = field(default_factory=RateConfig)
    mix: MixConfig = field(default_factory=MixConfig)
    shopper: ShopperConfig = field(default_factory=ShopperConfig)
    relevance: RelevanceConfig = field(default_factory=RelevanceConfig)
    scenarios: list[ScenarioConfig] = field(default_factory=list)
    duration_s: Optional[float] = None
    report_interval_s: float = 5.0
    # host:port for the simulator's own /metrics, /status and scenario control API; None = off.
    listen: Optional[str] = None
    seed: Optional[int] = None

    def validate(self, path: str = "") -> None:
        """Cross-field checks the type system cannot express (run again after CLI overrides)."""
        checks = [
            (self.rate.requests_per_second > 0, "rate.requests_per_second", "must be > 0"),
            (0 <= self.rate.daily_amplitude < 1, "rate.daily_amplitude", "must be in [0, 1)"),
            (0 <= self.rate.peak_hour < 24, "rate.peak_hour", "must be in [0, 24)"),
            (self.rate.day_length_s > 0, "rate.day_length_s", "must be > 0"),
            (self.rate.start_hour is None or 0 <= self.rate.start_hour < 24, "rate.start_hour",
             "must be in [0, 24)"),
            (self.rate.max_concurrency >= 1, "rate.max_concurrency", "must be >= 1"),
            (min(self.mix.search, self.mix.rank, self.mix.recommend) >= 0
             and self.mix.search + self.mix.rank + self.mix.recommend > 0, "mix",
             "weights must be >= 0 with a positive sum"),
            (self.shopper.users >= 1, "shopper.users", "must be >= 1"),
            (1 <= self.shopper.k <= 100, "shopper.k", "must be in [1, 100]"),
            (self.shopper.rank_candidates >= 2, "shopper.rank_candidates", "must be >= 2"),
            (self.shopper.max_history >= 1, "shopper.max_history", "must be >= 1"),
            (self.shopper.default_price >= 0, "shopper.default_price", "must be >= 0"),
            (self.target.timeout_s > 0, "target.timeout_s", "must be > 0"),
            (self.target.url.startswith(("http://", "https://")), "target.url", "must be an http(s) URL"),
            (self.duration_s is None or self.duration_s > 0, "duration_s", "must be > 0"),
            (self.report_interval_s > 0, "report_interval_s", "must be > 0"),
        ]
        for name in ("patience", "max_click_probability", "noise_click_probability",
                     "satisfaction_probability", "add_to_cart_probability", "purchase_probability"):
            checks.append((0 <= getattr(self.shopper, name) <= 1, f"shopper.{name}", "must be in [0, 1]"))
        if self.listen is not None:
            host, _, port = self.listen.rpartition(":")
            checks.append((bool(host) and port.isdigit(), "listen", "must be host:port"))
        for i, sc in enumerate(self.scenarios):
            p = f"scenarios[{i}]"
            checks += [
                (sc.start_s >= 0, f"{p}.start_s", "must be >= 0"),
                (sc.duration_s > 0, f"{p}.duration_s", "must be > 0"),
                (sc.latency_ms >= 0, f"{p}.latency_ms", "must be >= 0"),
                (0 < sc.error_rate <= 1, f"{p}.error_rate", "must be in (0, 1]"),
                (0 < sc.canary_weight < 50, f"{p}.canary_weight",
                 "must be in (0, 50): a canary takes less traffic than the stable version"),
                (sc.surge_factor > 1, f"{p}.surge_factor", "must be > 1"),
            ]
        for ok, key, msg in checks:
            if not ok:
                raise ConfigError(join_key(path, key), msg)


def load_config(path: str | os.PathLike | None) -> LoadgenConfig:
    """Read and validate a loadgen YAML file (None -> defaults)."""
    return build_dataclass(LoadgenConfig, load_yaml_mapping(path) if path is not None else {})


def parse_scenario(spec: str) -> ScenarioConfig:
    """Parse the CLI form `NAME[@START][+DURATION][,key=value...]`, e.g. `error-burst@30+60,error_rate=0.8`."""
    head, *options = spec.split(",")
    duration = start = None
    if "+" in head:
        head, duration = head.split("+", 1)
    if "@" in head:
        head, start = head.split("@", 1)
    data: dict[str, Any] = {"name": head.strip()}
    try:
        if start is not None:
            data["start_s"] = float(start.rstrip("s"))
        if duration is not None:
            data["duration_s"] = float(duration.rstrip("s"))
    except ValueError:
        raise ConfigError(f"--scenario {spec!r}", "START and DURATION must be seconds") from None
    hints = typing.get_type_hints(ScenarioConfig)
    for opt in options:
        key, sep, raw = opt.partition("=")
        key = key.strip()
        if not sep or key in ("name", "start_s", "duration_s"):
            raise ConfigError(f"--scenario {spec!r}", f"option {opt!r} must be key=value")
        if key not in hints:
            raise ConfigError(f"--scenario {spec!r}", f"unknown option {key!r}")
        data[key] = yaml.safe_load(raw)
        if hints[key] is str or hints[key] == Optional[str]:
            data[key] = raw
    sc = build_dataclass(ScenarioConfig, data, "scenario")
    return sc
