"""What the bundle's tests need to know about the repository: paths, rule and alert inventories.

One place parses prometheus/rules, prometheus/tests and docs/runbooks so every test agrees on what
"every alert" means.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from devstack.processes import REPO_ROOT

PROMETHEUS_DIR = REPO_ROOT / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
ALERTMANAGER_DIR = REPO_ROOT / "alertmanager"
GRAFANA_DIR = REPO_ROOT / "grafana"
RUNBOOKS_DIR = REPO_ROOT / "docs" / "runbooks"
METRICS_DOC = REPO_ROOT / "docs" / "metrics.md"

# The one prefix of every runbook_url (see docs/monitoring.md, "Runbook links").
RUNBOOK_BASE_URL = "https://github.com/ecommerce-model-monitoring/ecommerce-model-monitoring/blob/main/docs/runbooks/"


@dataclass(frozen=True)
class Rule:
    file: Path
    group: str
    body: dict

    @property
    def is_alert(self) -> bool:
        return "alert" in self.body

    @property
    def name(self) -> str:
        return self.body.get("alert") or self.body["record"]


def rule_files() -> list[Path]:
    return sorted(RULES_DIR.glob("*.yml"))


def rule_test_files() -> list[Path]:
    return sorted(RULE_TESTS_DIR.glob("*.yml"))


def all_rules() -> list[Rule]:
    rules = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules.extend(Rule(path, group["name"], body) for body in group["rules"])
    return rules


def alerts() -> list[Rule]:
    return [r for r in all_rules() if r.is_alert]


def alert_names() -> set[str]:
    return {r.name for r in alerts()}


def recording_rules() -> list[Rule]:
    return [r for r in all_rules() if not r.is_alert]


def runbook_pages() -> set[str]:
    return {p.stem for p in RUNBOOKS_DIR.glob("*.md") if p.name != "README.md"}


def contract_metric_names() -> set[str]:
    """Metric names of docs/metrics.md (first column of its tables; `a`, `_b` shorthands expanded)."""
    names: set[str] = set()
    for line in METRICS_DOC.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        cell = line.split("|")[1]
        found = re.findall(r"`([a-z_][a-z0-9_]*)`", cell)
        if not found:
            continue
        base = found[0]
        names.add(base)
        stem = base.rsplit("_", 2)[0] if base.endswith("_bytes") else base
        for extra in found[1:]:
            if extra.startswith("_"):
                # `nvidia_gpu_memory_total_bytes`, `_used_bytes` -> nvidia_gpu_memory_used_bytes
                names.add(stem + extra)
            else:
                names.add(extra)
    return names


_HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
_SOURCE_PREFIXES = ("inference_", "business_", "nvidia_gpu_", "anomaly_", "exporter_")


def source_metrics_in(expr: str) -> set[str]:
    """Names of component metrics (not recording rules, not label names) used in a PromQL expression."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    # Label lists of grouping and matching clauses name labels, not metrics.
    without_strings = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", without_strings)
    names = set()
    for match in re.finditer(r"(?<![:\w])([a-z_][a-z0-9_]*)(?![\w:])", without_strings):
        name = match.group(1)
        if not name.startswith(_SOURCE_PREFIXES):
            continue
        after = without_strings[match.end():].lstrip()
        if after.startswith(("=", "!=", "=~", "!~")):  # a label matcher, not a metric
            continue
        names.add(name)
    return names


def base_metric(name: str, contract: set[str]) -> str:
    if name in contract:
        return name
    for suffix in _HISTOGRAM_SUFFIXES:
        if name.endswith(suffix) and name[: -len(suffix)] in contract:
            return name[: -len(suffix)]
    return name


def load_yaml(path: Path):
    return yaml.safe_load(path.read_text())
