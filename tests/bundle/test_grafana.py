"""Grafana provisioning and the generated dashboards: generator output committed, structure valid,
every panel documented, every variable defined, every metric known."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
import yaml

from tests.bundle import bundle
from tests.bundle.dashboards import GRAFANA_BUILTINS, dashboard_files, load, panels, queries, variables_in

BUILD = bundle.GRAFANA_DIR / "build.py"
DASHBOARD_UIDS = {"service-overview", "batching-queue", "business-kpis", "model-health", "gpu-fleet",
                  "anomalies", "alerts", "model-versions"}


def run_build(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BUILD), *args], capture_output=True, text=True, timeout=60)


def test_committed_dashboards_equal_the_generator_output():
    res = run_build("--check")
    assert res.returncode == 0, res.stderr


def test_check_mode_detects_a_stale_and_an_extra_dashboard(tmp_path):
    assert run_build("--output-dir", str(tmp_path)).returncode == 0
    assert run_build("--check", "--output-dir", str(tmp_path)).returncode == 0
    (tmp_path / "alerts.json").write_text("{}\n")
    (tmp_path / "old.json").write_text("{}\n")
    res = run_build("--check", "--output-dir", str(tmp_path))
    assert res.returncode == 1
    assert "stale" in res.stderr and "alerts.json" in res.stderr and "old.json" in res.stderr


def test_build_has_help():
    res = run_build("--help")
    assert res.returncode == 0 and "--check" in res.stdout


def test_the_eight_dashboards_exist_with_unique_uids():
    uids = [load(p)["uid"] for p in dashboard_files()]
    assert sorted(uids) == sorted(DASHBOARD_UIDS)
    assert [p.stem for p in dashboard_files()] == sorted(uids)


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.stem)
def test_dashboard_structure(path):
    dash = json.loads(path.read_text())
    assert dash["title"] and dash["description"] and "model-monitoring" in dash["tags"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert {"datasource", "model", "version"} <= set(variables)
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    for var in variables.values():
        if var["type"] == "query":
            assert var["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
            assert var["definition"].startswith("label_values(")

    rows = [p for p in dash["panels"] if p["type"] == "row"]
    ids = [p["id"] for p in panels(dash)] + [r["id"] for r in rows]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    occupied: set[tuple[int, int]] = set()
    for row in rows:  # a full-width, 1-high header; a collapsed one holds its panels
        assert row["title"].strip() and row["gridPos"]["w"] == 24 and row["gridPos"]["h"] == 1
        assert bool(row["panels"]) == row["collapsed"], row["title"]
        occupied |= {(x, row["gridPos"]["y"]) for x in range(24)}
    # collapsed rows' panels are laid out as if opened: check them in their own grid
    collapsed = [p for r in rows if r["collapsed"] for p in r["panels"]]
    for panel in panels(dash):
        if panel in collapsed:
            continue
        _check_panel(path, panel, variables, occupied)
    for row in rows:
        grid: set[tuple[int, int]] = set()
        for panel in row["panels"]:
            _check_panel(path, panel, variables, grid)
            assert panel["gridPos"]["y"] > row["gridPos"]["y"]


def _check_panel(path, panel: dict, variables: dict, occupied: set[tuple[int, int]]) -> None:
    where = f"{path.stem} panel {panel['id']} {panel.get('title')!r}"
    assert panel["title"].strip(), where
    assert len(panel.get("description", "")) >= 20, f"{where}: description"
    assert panel["fieldConfig"]["defaults"].get("unit"), f"{where}: unit"
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
    grid = panel["gridPos"]
    assert grid["w"] > 0 and grid["h"] > 0 and grid["x"] >= 0 and grid["y"] >= 0, where
    assert grid["x"] + grid["w"] <= 24, f"{where}: wider than the grid"
    cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])}
    assert not cells & occupied, f"{where}: overlaps another panel"
    occupied |= cells
    if panel["type"] == "alertlist":  # reads alert rules, not PromQL
        assert panel["options"]["stateFilter"]["firing"], where
        return
    assert panel["targets"], where
    for target in panel["targets"]:
        assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        assert target["expr"].strip() and target["refId"], where
    refs = [t["refId"] for t in panel["targets"]]
    assert len(refs) == len(set(refs)), where
    if "repeat" in panel:
        assert panel["repeat"] in variables, where


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.stem)
def test_every_variable_used_is_defined(path):
    dash = load(path)
    defined = {v["name"] for v in dash["templating"]["list"]} | GRAFANA_BUILTINS
    texts = [json.dumps(v.get("query", "")) for v in dash["templating"]["list"]]
    for panel in panels(dash):
        texts.append(panel["title"])
        texts.extend(t["expr"] for t in panel["targets"])
    used = set().union(*(variables_in(t) for t in texts))
    assert used <= defined, used - defined
    # model and version filter something on every dashboard
    exprs = " ".join(t["expr"] for p in panels(dash) for t in p.get("targets", []))
    assert "$model" in exprs and "$version" in exprs


def test_rate_queries_use_rate_interval():
    for query in queries():
        for match in re.finditer(r"\b(rate|increase|irate)\(", query.expr):
            window = re.match(r"[^\[]*\[([^\]]+)\]", query.expr[match.end():])
            assert window, query.key
            assert window.group(1) in ("$__rate_interval", "$__range"), f"{query.key}: [{window.group(1)}]"


def test_panel_queries_only_use_known_metrics():
    """Every metric a panel queries is in docs/metrics.md, a recording rule, or Prometheus' and
    Alertmanager's own metrics (which the live test also checks for data)."""
    contract = bundle.contract_metric_names()
    records = {r.name for r in bundle.recording_rules()}
    for query in queries():
        for name in re.findall(r"(?<![\w:$\"])([a-z_][a-z0-9_]*:[a-z0-9_:]+)", query.expr):
            assert name in records, f"{query.key}: unknown recording rule {name}"
        for name in bundle.source_metrics_in(query.expr):
            assert bundle.base_metric(name, contract) in contract, f"{query.key}: {name} not in docs/metrics.md"


def test_provisioning():
    ds = yaml.safe_load((bundle.GRAFANA_DIR / "provisioning" / "datasources" / "datasources.yml").read_text())
    by_uid = {d["uid"]: d for d in ds["datasources"]}
    assert by_uid["prometheus"]["type"] == "prometheus" and by_uid["prometheus"]["isDefault"] is True
    assert by_uid["prometheus"]["url"] == "http://prometheus:9090"
    assert by_uid["alertmanager"]["type"] == "alertmanager"
    assert by_uid["alertmanager"]["jsonData"]["implementation"] == "prometheus"
    # $__rate_interval assumes the scrape interval Prometheus really uses
    prom = yaml.safe_load((bundle.PROMETHEUS_DIR / "prometheus.yml").read_text())
    assert by_uid["prometheus"]["jsonData"]["timeInterval"] == prom["global"]["scrape_interval"]
    dashboards = yaml.safe_load((bundle.GRAFANA_DIR / "provisioning" / "dashboards" / "dashboards.yml").read_text())
    (provider,) = dashboards["providers"]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_notification_templates_link_to_existing_dashboards():
    text = (bundle.ALERTMANAGER_DIR / "templates" / "bundle.tmpl").read_text()
    block = text.split('define "bundle.dashboard_uid"')[1].split("{{- end -}}")[0]
    linked = set(re.findall(r"\}\}([a-z-]+)\s*$", block, re.M)) | set(re.findall(r"\}\}([a-z-]+)\n", block))
    assert linked and linked <= DASHBOARD_UIDS, linked
