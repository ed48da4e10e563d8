"""Compress the project's time constants so a run of minutes behaves like hours of production.

Used by the end-to-end tests (tests/e2e/shorten.py) and the alert scorecard
(benchmarks/alert_scorecard.py). Only timing changes; expressions' logic, thresholds, labels and
routes stay as shipped. A range window `[5m]` divided by 60 becomes `[5s]`; `for:` and
`keep_firing_for:` divide the same way, and so do `offset`s (a "new series" check such as
`x unless x offset 15m` must look back 15 simulated minutes, not 15 wall minutes, or a series that
returns after a short gap reads as new again).
"""
from __future__ import annotations

import re
from typing import Any

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_OFFSET = re.compile(r"\boffset\s+(-?)((?:\d+(?:ms|s|m|h|d|w|y))+)")
_RANGE = re.compile(r"\[((?:\d+(?:ms|s|m|h|d|w|y))+)(:(?:(?:\d+(?:ms|s|m|h|d|w|y))+)?)?\]")
ROUTE_TIMING_KEYS = ("group_wait", "group_interval", "repeat_interval")


def parse_duration(text: str) -> float:
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            raise ValueError(f"bad duration {text!r}")
        total += int(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise ValueError(f"bad duration {text!r}")
    return total


def format_duration(seconds: float) -> str:
    seconds = max(1, round(seconds))
    for unit in ("d", "h", "m"):
        if seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def scale_duration(text: str, factor: float) -> str:
    """`"15m"` / 60 -> `"15s"`; never below 1 s."""
    return format_duration(parse_duration(str(text)) / factor)


def scale_windows(expr: str, factor: float) -> str:
    """Divide every range window (and subquery range/step) and every `offset` in a PromQL expression by
    `factor`."""
    def offset(m: re.Match) -> str:
        return f"offset {m.group(1)}{format_duration(parse_duration(m.group(2)) / factor)}"

    def sub(m: re.Match) -> str:
        window = format_duration(parse_duration(m.group(1)) / factor)
        step = m.group(2)
        if step and len(step) > 1:
            step = ":" + format_duration(parse_duration(step[1:]) / factor)
        return f"[{window}{step or ''}]"

    return _OFFSET.sub(offset, _RANGE.sub(sub, expr))


def compress_rules(rule_file: dict[str, Any], factor: float) -> dict[str, Any]:
    """Every window, `for:` and `keep_firing_for:` of a parsed rule file divided by `factor`."""
    for group in rule_file.get("groups") or []:
        group.pop("interval", None)  # evaluate with the (short) global interval
        for rule in group.get("rules") or []:
            rule["expr"] = scale_windows(str(rule["expr"]), factor)
            for key in ("for", "keep_firing_for"):
                if key in rule:
                    rule[key] = scale_duration(rule[key], factor)
    return rule_file


def compress_routes(cfg: dict[str, Any], factor: float) -> dict[str, Any]:
    """Alertmanager's group_wait, group_interval and repeat_interval divided by `factor` on every route."""
    def apply(route: dict) -> None:
        for key in ROUTE_TIMING_KEYS:
            if key in route:
                route[key] = scale_duration(route[key], factor)
        for child in route.get("routes") or []:
            apply(child)

    apply(cfg.get("route") or {})
    return cfg
