"""The traffic simulator's YAML configuration: pydantic models on the shared `typed_config.Section`.

Unknown or ill-typed keys are errors that name the key (e.g. `shopper.users: Input should be a valid
integer, got 'x'`), so a typo in a drill config fails at start instead of silently running the default.
"""
from __future__ import annotations

import os
from typing import Annotated, Any, Literal, Optional

import yaml
from pydantic import Field, model_validator

from typed_config import ConfigError, Section, load_yaml_mapping, parse_section

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
    "load_config",
    "parse_scenario",
]

SCENARIO_NAMES = ("latency-spike", "error-burst", "degraded-canary", "surge", "query-drift")

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]
Probability = Annotated[float, Field(ge=0, le=1)]
Hour = Annotated[float, Field(ge=0, lt=24)]


class TargetConfig(Section):
    """Where the inference server is and how to reach its admin API."""

    url: Annotated[str, Field(pattern=r"^https?://", description="an http(s) URL")] = "http://127.0.0.1:8000"
    timeout_s: Positive = 10.0
    model: str = "minilm"
    # Admin bearer token (needed only for fault scenarios): read from this file, else from this env var.
    admin_token_file: Optional[str] = None
    admin_token_env: str = "INFERENCE_ADMIN_TOKEN"
    # The server's feedback (event-source) bearer token, sent with every POST /v1/feedback.
    feedback_token_file: Optional[str] = None
    feedback_token_env: str = "INFERENCE_FEEDBACK_TOKEN"


class RateConfig(Section):
    """Open-loop arrival rate with a daily pattern; `day_length_s` compresses a simulated day."""

    requests_per_second: Positive = 5.0
    daily_amplitude: Annotated[float, Field(ge=0, lt=1)] = 0.5
    peak_hour: Hour = 20.0
    day_length_s: Positive = 86400.0
    start_hour: Optional[Hour] = None
    max_concurrency: Annotated[int, Field(ge=1)] = 128


class MixConfig(Section):
    """Relative weights of the three kinds of request a shopper makes."""

    search: NonNegative = 0.6
    rank: NonNegative = 0.2
    recommend: NonNegative = 0.2

    @model_validator(mode="after")
    def _some_weight(self) -> "MixConfig":
        if self.search + self.rank + self.recommend <= 0:
            raise ValueError("weights must be >= 0 with a positive sum")
        return self


class ShopperConfig(Section):
    """The cascade click model and the shopper population."""

    users: Annotated[int, Field(ge=1)] = 1000
    k: Annotated[int, Field(ge=1, le=100)] = 10
    rank_candidates: Annotated[int, Field(ge=2)] = 20
    max_history: Annotated[int, Field(ge=1)] = 3
    # Probability of examining the next result after one that was not clicked (position bias).
    patience: Probability = 0.85
    # Click probability of a perfectly relevant / an irrelevant result once examined.
    max_click_probability: Probability = 0.6
    noise_click_probability: Probability = 0.01
    # Probability of stopping after clicking a perfectly relevant result (scaled by relevance).
    satisfaction_probability: Probability = 0.7
    # Add-to-cart after a click and purchase after an add-to-cart, for a perfectly relevant result.
    add_to_cart_probability: Probability = 0.35
    purchase_probability: Probability = 0.5
    currency: str = "USD"
    default_price: NonNegative = 25.0


class RelevanceConfig(Section):
    """Where the true relevance comes from: the same catalog config the server loads."""

    # The server's YAML config; its `catalog` section is used unless `catalog` is given here.
    server_config: Optional[str] = "config/inference_server.yaml"
    catalog: Optional[dict[str, Any]] = None
    # Grade treated as "not relevant" (Home Depot: 1 = irrelevant) and as "perfect" (default: max seen).
    min_grade: Optional[float] = None
    max_grade: Optional[float] = None


class ScenarioConfig(Section):
    """One fault drill: what, when (seconds after start) and for how long."""

    name: Literal["latency-spike", "error-burst", "degraded-canary", "surge", "query-drift"] = "error-burst"
    start_s: NonNegative = 0.0
    duration_s: Positive = 60.0
    latency_ms: Annotated[int, Field(ge=0)] = 800
    error_rate: Annotated[float, Field(gt=0, le=1)] = 0.5
    version: Optional[str] = None
    canary_version: str = "2"
    # A canary takes less traffic than the stable version.
    canary_weight: Annotated[int, Field(gt=0, lt=50)] = 20
    surge_factor: Annotated[float, Field(gt=1)] = 10.0
    # query-drift: shoppers only ask the longest `drift_share` of the judged queries (by words).
    drift_share: Annotated[float, Field(gt=0, lt=1)] = 0.25


class LoadgenConfig(Section):
    target: TargetConfig = Field(default_factory=TargetConfig)
    rate: RateConfig = Field(default_factory=RateConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    shopper: ShopperConfig = Field(default_factory=ShopperConfig)
    relevance: RelevanceConfig = Field(default_factory=RelevanceConfig)
    scenarios: list[ScenarioConfig] = Field(default_factory=list)
    duration_s: Optional[Positive] = None
    report_interval_s: Positive = 5.0
    # host:port for the simulator's own /metrics, /status and scenario control API; None = off.
    listen: Optional[Annotated[str, Field(pattern=r"^.+:[0-9]+$", description="host:port")]] = None
    seed: Optional[int] = None


def load_config(path: str | os.PathLike | None) -> LoadgenConfig:
    """Read and validate a loadgen YAML file (None -> defaults)."""
    return parse_section(LoadgenConfig, load_yaml_mapping(path) if path is not None else {})


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
    fields = ScenarioConfig.model_fields
    for opt in options:
        key, sep, raw = opt.partition("=")
        key = key.strip()
        if not sep or key in ("name", "start_s", "duration_s"):
            raise ConfigError(f"--scenario {spec!r}", f"option {opt!r} must be key=value")
        if key not in fields:
            raise ConfigError(f"--scenario {spec!r}", f"unknown option {key!r}")
        data[key] = yaml.safe_load(raw)
        if fields[key].annotation in (str, Optional[str]):
            data[key] = raw
    return parse_section(ScenarioConfig, data, "scenario")
