"""Every alert links to a runbook page in docs/runbooks, and every page belongs to an alert."""
from __future__ import annotations

import re

import pytest

from tests.bundle import bundle


def test_every_alert_has_a_runbook_page_and_every_page_an_alert():
    assert bundle.runbook_pages() == bundle.alert_names()


@pytest.mark.parametrize("name", sorted(bundle.alert_names()))
def test_runbook_page_sections(name):
    text = (bundle.RUNBOOKS_DIR / f"{name}.md").read_text()
    assert text.startswith(f"# {name}\n")
    for section in ("## What it means", "## How to confirm", "## How to mitigate"):
        assert section in text, f"{name}: {section}"
    confirm = text.split("## How to confirm")[1].split("## How to mitigate")[0]
    assert "```sh" in confirm, f"{name}: no command to confirm it"
    mitigate = text.split("## How to mitigate")[1]
    assert re.search(r"^1\. ", mitigate, re.M), f"{name}: no mitigation steps"


def test_runbook_index_lists_every_page():
    index = (bundle.RUNBOOKS_DIR / "README.md").read_text()
    for name in bundle.alert_names():
        assert f"]({name}.md)" in index, name


def test_runbook_urls_share_one_prefix():
    urls = {r.body["annotations"]["runbook_url"] for r in bundle.alerts()}
    assert {u.rsplit("/", 1)[0] + "/" for u in urls} == {bundle.RUNBOOK_BASE_URL}


def _service_dashboard(service: str) -> str:
    """The dashboard uid alertmanager/templates/bundle.tmpl maps `service` to (else its default)."""
    text = (bundle.ALERTMANAGER_DIR / "templates" / "bundle.tmpl").read_text()
    mapping = text.split('define "bundle.dashboard_uid"')[1].split("{{- end -}}")[0]
    default = re.search(r"\{\{- else \}\}([a-z-]+)", mapping).group(1)
    return dict(re.findall(r'eq \. "([a-z-]+)" \}\}([a-z-]+)', mapping)).get(service, default)


@pytest.mark.parametrize("rule", bundle.alerts(), ids=lambda r: f"{r.name}-{r.body['labels']['severity']}")
def test_notification_and_runbook_link_the_same_dashboard(rule):
    # The Slack/email "Dashboard" link is the alert's `dashboard` annotation, else its service's
    # dashboard; the runbook's header names the dashboard to open. They must agree.
    linked = rule.body["annotations"].get("dashboard") or _service_dashboard(rule.body["labels"]["service"])
    header = (bundle.RUNBOOKS_DIR / f"{rule.name}.md").read_text().split("\n## ")[0]
    named = re.search(r"\*\*Dashboard:\*\* \[([a-z-]+)\]\(http://127\.0\.0\.1:3000/d/([a-z-]+)\)", header)
    assert named, f"{rule.name}: the runbook names no dashboard"
    assert named.group(1) == named.group(2) == linked, (rule.name, named.groups(), linked)
    assert (bundle.GRAFANA_DIR / "dashboards" / f"{linked}.json").exists()
