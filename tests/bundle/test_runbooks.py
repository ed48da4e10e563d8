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
