"""A small Grafana dashboard model: panels, targets, template variables and a grid layout.

It emits the JSON that Grafana 10/11 stores for a dashboard (schemaVersion 39), with only the fields
the bundle needs. Every panel gets a title, a description and a unit by construction: the builders
take them as required arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SCHEMA_VERSION = 39
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The provisioned Alertmanager data source (grafana/provisioning/datasources).
ALERTMANAGER = {"type": "alertmanager", "uid": "alertmanager"}


@dataclass
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = "__auto"
    instant: bool = False
    table: bool = False

    def to_json(self, ref_id: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "datasource": DATASOURCE,
            "editorMode": "code",
            "expr": self.expr,
            "legendFormat": self.legend,
            "range": not self.instant,
            "instant": self.instant,
            "refId": ref_id,
        }
        if self.table:
            out["format"] = "table"
        return out


@dataclass
class Panel:
    """A visualisation. `kind` is the Grafana panel type; `options`/`field_config` are merged in."""

    kind: str
    title: str
    description: str
    unit: str
    targets: list[Target]
    width: int = 12
    height: int = 8
    options: dict[str, Any] = field(default_factory=dict)
    defaults: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    transformations: list[dict[str, Any]] = field(default_factory=list)
    repeat: str | None = None  # a variable name: Grafana shows one copy of the panel per selected value

    def to_json(self, panel_id: int, x: int, y: int) -> dict[str, Any]:
        defaults = {"unit": self.unit, **self.defaults}
        out = {
            "id": panel_id,
            "type": self.kind,
            "title": self.title,
            "description": self.description,
            "datasource": DATASOURCE,
            "gridPos": {"h": self.height, "w": self.width, "x": x, "y": y},
            "fieldConfig": {"defaults": defaults, "overrides": self.overrides},
            "options": self.options,
            "targets": [t.to_json(chr(ord("A") + i)) for i, t in enumerate(self.targets)],
        }
        if self.transformations:
            out["transformations"] = self.transformations
        if self.repeat:
            out.update(repeat=self.repeat, repeatDirection="h", maxPerRow=2)
        return out


def timeseries(title: str, description: str, unit: str, *targets: Target, stack: bool = False,
               min_value: float | None = None, max_value: float | None = None, width: int = 12, height: int = 8,
               overrides: list[dict[str, Any]] | None = None, thresholds: list[tuple[float, str]] | None = None,
               fill: int = 10) -> Panel:
    custom: dict[str, Any] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": fill, "showPoints": "never",
                              "spanNulls": False}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    defaults: dict[str, Any] = {"custom": custom}
    if min_value is not None:
        defaults["min"] = min_value
    if max_value is not None:
        defaults["max"] = max_value
    if thresholds:
        defaults["thresholds"] = _thresholds(thresholds)
        custom["thresholdsStyle"] = {"mode": "line"}
    options = {"legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull", "max"]},
               "tooltip": {"mode": "multi", "sort": "desc"}}
    return Panel("timeseries", title, description, unit, list(targets), width, height, options, defaults,
                 overrides or [])


def stat(title: str, description: str, unit: str, target: Target, *, thresholds: list[tuple[float, str]],
         width: int = 4, height: int = 4, decimals: int | None = None) -> Panel:
    defaults: dict[str, Any] = {"thresholds": _thresholds(thresholds), "color": {"mode": "thresholds"}}
    if decimals is not None:
        defaults["decimals"] = decimals
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "colorMode": "background", "graphMode": "area", "textMode": "value_and_name", "justifyMode": "auto"}
    return Panel("stat", title, description, unit, [target], width, height, options, defaults)


def bargauge(title: str, description: str, unit: str, *targets: Target, width: int = 8, height: int = 8,
             min_value: float | None = 0, max_value: float | None = None) -> Panel:
    defaults: dict[str, Any] = {"color": {"mode": "palette-classic"}}
    if min_value is not None:
        defaults["min"] = min_value
    if max_value is not None:
        defaults["max"] = max_value
    options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
               "orientation": "horizontal", "displayMode": "gradient", "showUnfilled": True}
    return Panel("bargauge", title, description, unit, list(targets), width, height, options, defaults)


def table(title: str, description: str, unit: str, *targets: Target, width: int = 24, height: int = 8,
          hide: tuple[str, ...] = ("Time", "__name__"), rename: dict[str, str] | None = None) -> Panel:
    transformations: list[dict[str, Any]] = []
    if len(targets) > 1:
        transformations.append({"id": "merge", "options": {}})
    transformations.append({"id": "organize", "options": {
        "excludeByName": {name: True for name in hide}, "renameByName": rename or {}}})
    options = {"showHeader": True, "cellHeight": "sm", "footer": {"show": False}}
    return Panel("table", title, description, unit, list(targets), width, height, options,
                 {"custom": {"align": "auto", "filterable": True}}, transformations=transformations)


def _thresholds(steps: list[tuple[float, str]]) -> dict[str, Any]:
    """[(None-or-value, color), ...] with the first step as the base."""
    out = []
    for i, (value, color) in enumerate(steps):
        out.append({"color": color, "value": None if i == 0 else value})
    return {"mode": "absolute", "steps": out}


def band(lower_legend: str, upper_legend: str) -> list[dict[str, Any]]:
    """Overrides that shade the area between a lower and an upper series (an expected band)."""
    return [
        {"matcher": {"id": "byName", "options": upper_legend},
         "properties": [{"id": "custom.fillBelowTo", "value": lower_legend},
                        {"id": "custom.lineWidth", "value": 0},
                        {"id": "color", "value": {"mode": "fixed", "fixedColor": "rgba(128, 128, 128, 0.35)"}}]},
        {"matcher": {"id": "byName", "options": lower_legend},
         "properties": [{"id": "custom.lineWidth", "value": 0},
                        {"id": "custom.fillOpacity", "value": 0},
                        {"id": "color", "value": {"mode": "fixed", "fixedColor": "rgba(128, 128, 128, 0.35)"}}]},
    ]


def alert_list(title: str, description: str, *, width: int = 24, height: int = 8) -> Panel:
    """Grafana's alert list of the rules Prometheus evaluates (its data source has manageAlerts on),
    firing and pending, with their instances: what is wrong now, without leaving the dashboard."""
    options = {"viewMode": "list", "groupMode": "default", "groupBy": [], "maxItems": 20, "sortOrder": 1,
               "dashboardAlerts": False, "alertName": "", "alertInstanceLabelFilter": "",
               "datasource": "Prometheus", "showInstances": True, "folder": None,
               "stateFilter": {"firing": True, "pending": True, "noData": False, "normal": False, "error": True}}
    return Panel("alertlist", title, description, "none", [], width, height, options)


@dataclass
class Row:
    """A dashboard row; collapsed rows keep detail panels out of the way until opened."""

    title: str
    panels: list[Panel]
    collapsed: bool = True


@dataclass
class Variable:
    """A template variable: the datasource picker or a PromQL label_values() query."""

    name: str
    label: str
    query: str = ""
    kind: str = "query"
    multi: bool = True
    include_all: bool = True

    def to_json(self) -> dict[str, Any]:
        if self.kind == "constant":  # hidden; set it in the dashboard settings (or at provisioning)
            return {"name": self.name, "label": self.label, "type": "constant", "query": self.query, "hide": 2,
                    "current": {"selected": False, "text": self.query, "value": self.query}, "options": []}
        if self.kind == "datasource":
            return {"name": self.name, "label": self.label, "type": "datasource", "query": "prometheus",
                    "current": {"selected": False, "text": "Prometheus", "value": "prometheus"},
                    "hide": 0, "refresh": 1, "regex": "", "options": []}
        return {
            "name": self.name,
            "label": self.label,
            "type": "query",
            "datasource": DATASOURCE,
            "definition": self.query,
            "query": {"query": self.query, "refId": f"{self.name}-query", "qryType": 1},
            "refresh": 2,
            "sort": 1,
            "multi": self.multi,
            "includeAll": self.include_all,
            "allValue": ".*",
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "hide": 0,
            "regex": "",
            "options": [],
        }


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    tags: list[str]
    variables: list[Variable]
    panels: list[Panel | Row]
    links: list[dict[str, Any]] = field(default_factory=list)
    refresh: str = "30s"
    time_from: str = "now-3h"

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": self.tags,
            "editable": True,
            "graphTooltip": 1,
            "schemaVersion": SCHEMA_VERSION,
            "version": 1,
            "refresh": self.refresh,
            "time": {"from": self.time_from, "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "weekStart": "",
            "annotations": {"list": [{
                "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"}, "enable": True,
                "hide": True, "iconColor": "rgba(0, 211, 255, 1)", "name": "Annotations & Alerts",
                "type": "dashboard"}]},
            "links": self.links,
            "templating": {"list": [v.to_json() for v in self.variables]},
            "panels": layout(self.panels),
        }


def _place(panels: list[Panel], first_id: int, top: int) -> tuple[list[dict[str, Any]], int]:
    """Panels left to right from row `top` in a 24-column grid, wrapping when one does not fit;
    returns their JSON and the first free row below them."""
    out, x, y, line_height = [], 0, top, 0
    for i, panel in enumerate(panels):
        if x + panel.width > 24:
            x, y, line_height = 0, y + line_height, 0
        out.append(panel.to_json(first_id + i, x, y))
        x += panel.width
        line_height = max(line_height, panel.height)
    return out, y + line_height


def layout(items: list[Panel | Row]) -> list[dict[str, Any]]:
    """Top-level panels, then rows: an open row's panels follow it at the top level, a collapsed row
    holds its panels (Grafana's JSON for both)."""
    out: list[dict[str, Any]] = []
    next_id, y, loose = 1, 0, []

    def flush() -> None:
        nonlocal next_id, y, loose
        if loose:
            placed, y = _place(loose, next_id, y)
            out.extend(placed)
            next_id += len(loose)
            loose = []

    for item in items:
        if isinstance(item, Panel):
            loose.append(item)
            continue
        flush()
        row = {"id": next_id, "type": "row", "title": item.title, "collapsed": item.collapsed,
               "gridPos": {"h": 1, "w": 24, "x": 0, "y": y}, "panels": []}
        next_id += 1
        out.append(row)
        placed, bottom = _place(item.panels, next_id, y + 1)
        next_id += len(item.panels)
        if item.collapsed:
            row["panels"] = placed
            y += 1
        else:
            out.extend(placed)
            y = bottom
    flush()
    return out
