"""The traffic simulator's YAML configuration: dataclasses plus a strict loader.

Unknown or ill-typed keys are errors that name the key (e.g. `shopper.users: expected int, got 'x'`),
so a typo in a drill config fails at start instead of silently running the default.
"""
from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

SCENARIO_NAMES = ("latency-spike", "error-burst", "degraded-canary", "surge")


class ConfigError(ValueError):
    """A configuration problem; the message names the offending key."""


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

    def validate(self) -> None:
        """Cross-field checks the type system cannot express."""
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
                raise ConfigError(f"{key}: {msg}")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the annotation `tp` (recursively), returning the converted value."""
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
                return convert(value, arg, path)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{path}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {type(value).__name__}")
        return [convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return {convert(k, args[0], f"{path}.{k}"): convert(v, args[1], f"{path}.{k}") for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build_dataclass(tp, value, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path}: expected bool, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{path}: expected int, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{path}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{path}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{path}: unsupported type {tp!r}")


def build_dataclass(cls: type, data: Any, path: str = "") -> Any:
    """Instantiate dataclass `cls` from a mapping, rejecting unknown keys and wrong types."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path or '<root>'}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        key_path = f"{path}.{key}" if path else str(key)
        if key not in known:
            raise ConfigError(f"{key_path}: unknown key (allowed: {', '.join(sorted(known))})")
        kwargs[key] = convert(value, hints[key], key_path)
    return cls(**kwargs)


def load_config(path: str | os.PathLike | None) -> LoadgenConfig:
    """Read and validate a loadgen YAML file (None -> defaults)."""
    data: Any = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    cfg = build_dataclass(LoadgenConfig, data)
    cfg.validate()
    return cfg


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
        raise ConfigError(f"--scenario {spec!r}: START and DURATION must be seconds") from None
    hints = typing.get_type_hints(ScenarioConfig)
    for opt in options:
        key, sep, raw = opt.partition("=")
        key = key.strip()
        if not sep or key in ("name", "start_s", "duration_s"):
            raise ConfigError(f"--scenario {spec!r}: option {opt!r} must be key=value")
        if key not in hints:
            raise ConfigError(f"--scenario {spec!r}: unknown option {key!r}")
        data[key] = yaml.safe_load(raw)
        if hints[key] is str or hints[key] == Optional[str]:
            data[key] = raw
    sc = build_dataclass(ScenarioConfig, data, "scenario")
    return sc
