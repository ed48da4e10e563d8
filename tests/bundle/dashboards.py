"""Read the generated Grafana dashboards: panels, their queries, and variable substitution for the
live test (what Grafana would send to Prometheus with every variable at its default, "All")."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tests.bundle.bundle import GRAFANA_DIR

DASHBOARDS_DIR = GRAFANA_DIR / "dashboards"
GRAFANA_BUILTINS = {"__rate_interval", "__range", "__interval", "__all"}


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel_id: int
    panel_title: str
    ref_id: str
    expr: str
    instant: bool

    @property
    def key(self) -> str:
        return f"{self.dashboard}#{self.panel_id} {self.panel_title!r} {self.ref_id}"


def dashboard_files() -> list[Path]:
    return sorted(DASHBOARDS_DIR.glob("*.json"))


def load(path: Path) -> dict:
    return json.loads(path.read_text())


def panels(dash: dict) -> list[dict]:
    """Every panel but rows, including those inside collapsed rows."""
    out = []
    for panel in dash["panels"]:
        if panel["type"] == "row":
            out.extend(panel.get("panels", []))
        else:
            out.append(panel)
    return out


def queries() -> list[Query]:
    out = []
    for path in dashboard_files():
        dash = load(path)
        for panel in panels(dash):
            for target in panel.get("targets", []):
                out.append(Query(dash["uid"], panel["id"], panel["title"], target["refId"], target["expr"],
                                 bool(target.get("instant"))))
    return out


def variables_in(text: str) -> set[str]:
    return set(re.findall(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)", text))


def substitute(expr: str, *, rate_interval: str, range_: str) -> str:
    """The query Grafana sends with `$__rate_interval`/`$__range` set and every template variable at
    "All" (its allValue `.*`)."""
    expr = expr.replace("$__rate_interval", rate_interval).replace("$__range", range_)
    return re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", ".*", expr)
