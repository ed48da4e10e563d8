"""What the end-to-end test shortens in its copies of the project's Prometheus and Alertmanager configs.

The project's configs are tuned for production (15 s scrapes, 5 m-6 h windows, `for:` of minutes,
30 s group waits); an alert loop test must see firing *and* resolution within a few minutes. Only
timing changes; expressions' logic, thresholds, labels, annotations and routes stay as shipped:

- Prometheus: `scrape_interval`, `evaluation_interval` and `scrape_timeout` 15 s/10 s -> 1 s;
  `--rules.alert.resend-delay` 1m -> 2s (a firing alert evaluated before Prometheus has discovered
  Alertmanager is otherwise only re-sent a minute later).
- Rules: every range window in a rule `expr` is divided by `WINDOW_FACTOR` (15): 5m -> 20s,
  15m -> 1m, 30m -> 2m, 1h -> 4m, 2h -> 8m, 6h -> 24m, 1d -> 96m, 3d -> 288m; `offset`s alike.
- Rules: `keep_firing_for:` is divided by `WINDOW_FACTOR` like the windows (the page's 5m -> 20s).
- Rules: `for:` of the alerts the test drives (`FAST_ALERTS`: the availability page,
  the canary regressions, the A/B test's promote and rollback) -> `FAST_FOR` (3s); every other `for:` keeps its value, so slower alerts
  (e.g. the 6h/30m burn rate with `for: 15m`) stay pending and do not add notifications.
- Alertmanager: `group_wait` -> 1s, `group_interval` -> 2s on every route that sets them (and the
  root); `repeat_interval` unchanged (the Watchdog route's is 1m).
"""
from __future__ import annotations

from typing import Any

from devstack import timescale
from devstack.timescale import format_duration, parse_duration  # noqa: F401 (re-exported)

WINDOW_FACTOR = 15
FAST_FOR = "3s"
# (alertname, required labels) whose `for:` is shortened.
FAST_ALERTS: tuple[tuple[str, dict[str, str]], ...] = (
    ("InferenceErrorBudgetBurn", {"severity": "critical"}),
    ("CanaryClickThroughRegression", {}),
    ("CanaryErrorRatioRegression", {}),
    ("CanaryLatencyRegression", {}),
    ("CanaryWinsABTest", {}),
    ("CanaryLosesABTest", {}),
)
PROMETHEUS_GLOBAL = {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"}
PROMETHEUS_FLAGS = ["--rules.alert.resend-delay=2s"]
ALERTMANAGER_ROUTE_TIMING = {"group_wait": "1s", "group_interval": "2s"}


def scale_windows(expr: str, factor: float = WINDOW_FACTOR) -> str:
    """Divide every range window (and subquery range/step) and offset in a PromQL expression by `factor`."""
    return timescale.scale_windows(expr, factor)


def _is_fast(rule: dict) -> bool:
    labels = rule.get("labels") or {}
    return any(rule.get("alert") == name and all(labels.get(k) == v for k, v in need.items())
               for name, need in FAST_ALERTS)


def shorten_rules(rule_file: dict[str, Any]) -> dict[str, Any]:
    """The rule-file transform handed to `render_prometheus(rule_transform=...)`."""
    for group in rule_file.get("groups") or []:
        group.pop("interval", None)  # evaluate with the (1 s) global interval
        for rule in group.get("rules") or []:
            rule["expr"] = scale_windows(str(rule["expr"]))
            if _is_fast(rule) and "for" in rule:
                rule["for"] = FAST_FOR
            if "keep_firing_for" in rule:  # scaled like the windows (the page's 5m -> 20s)
                rule["keep_firing_for"] = timescale.scale_duration(rule["keep_firing_for"], WINDOW_FACTOR)
    return rule_file
