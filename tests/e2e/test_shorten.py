"""The e2e timing rewrite only touches windows, offsets and `for:` of the driven alerts, and stays valid PromQL."""
import subprocess

import pytest
import yaml

from devstack.localstack import Ports, render_prometheus
from tests.e2e.shorten import FAST_FOR, PROMETHEUS_GLOBAL, parse_duration, scale_windows, shorten_rules
from tests.support.binaries import require_binary


@pytest.mark.parametrize("expr, expected", [
    ("rate(x[5m])", "rate(x[20s])"),
    ("sum(rate(x[1h])) / sum(rate(y[30m]))", "sum(rate(x[4m])) / sum(rate(y[2m]))"),
    ("max_over_time(x[1d:5m])", "max_over_time(x[96m:20s])"),
    ("avg_over_time(x[1h:])", "avg_over_time(x[4m:])"),
    ("rate(x[1h] offset 1w)", "rate(x[4m] offset 672m)"),
    ("x unless x offset 15m", "x unless x offset 1m"),
    ('x{le="0.5"} > 3', 'x{le="0.5"} > 3'),
    ("rate(x[1h30m])", "rate(x[6m])"),
])
def test_scale_windows(expr, expected):
    assert scale_windows(expr) == expected


def test_parse_duration():
    assert parse_duration("1h30m") == 5400 and parse_duration("250ms") == 0.25
    with pytest.raises(ValueError):
        parse_duration("5 m")


def test_only_driven_alerts_get_short_for():
    rules = {"groups": [{"name": "g", "interval": "30s", "rules": [
        {"alert": "InferenceErrorBudgetBurn", "expr": "a[1h] > 1", "for": "2m", "labels": {"severity": "critical"}},
        {"alert": "InferenceErrorBudgetBurn", "expr": "a[6h] > 1", "for": "15m",
         "labels": {"severity": "warning", "long_window": "1d"}},
        {"alert": "CanaryClickThroughRegression", "expr": "b[30m] < 1", "for": "10m"},
        {"alert": "Other", "expr": "c > 1", "for": "5m"},
        {"record": "r:x:rate5m", "expr": "rate(x[5m])"},
    ]}]}
    out = shorten_rules(rules)["groups"][0]
    assert "interval" not in out
    assert [r.get("for") for r in out["rules"]] == [FAST_FOR, "15m", FAST_FOR, "5m", None]
    assert out["rules"][4]["expr"] == "rate(x[20s])" and out["rules"][1]["expr"] == "a[24m] > 1"


def test_shortened_project_rules_pass_promtool(tmp_path):
    promtool = require_binary("promtool")
    path = render_prometheus(tmp_path, Ports(), global_overrides=PROMETHEUS_GLOBAL, scrape_interval="1s",
                             rule_transform=shorten_rules)
    proc = subprocess.run([promtool, "check", "config", str(path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cfg = yaml.safe_load(path.read_text())
    assert cfg["global"]["evaluation_interval"] == "1s"
    assert all(job["scrape_interval"] == "1s" for job in cfg["scrape_configs"])
    fast = [r for f in cfg["rule_files"] for g in yaml.safe_load(open(f))["groups"] for r in g["rules"]
            if r.get("for") == FAST_FOR]
    assert {r["alert"] for r in fast} >= {"InferenceErrorBudgetBurn", "CanaryClickThroughRegression"}
