"""The local Slack webhook sink and SMTP catcher record what Alertmanager would deliver."""
import asyncio
import json
import smtplib
from email.message import EmailMessage

import aiohttp

from devstack.alert_sinks import AlertSinks
from devstack.processes import free_port


def send_mail(port: int) -> None:
    msg = EmailMessage()
    msg["Subject"] = "[FIRING:1] InferenceErrors (critical)"
    msg["From"] = "alertmanager@example.org"
    msg["To"] = "oncall@example.org"
    msg.set_content("error ratio 12%")
    msg.add_alternative("<p>error ratio <b>12%</b></p>", subtype="html")
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as smtp:
        smtp.ehlo()
        assert smtp.esmtp_features["auth"].split() == ["PLAIN"]
        smtp.login("alertmanager", "any-password")  # accepted, like a local catcher should
        smtp.send_message(msg)


async def test_sinks_record_slack_webhook_and_mail():
    sinks = AlertSinks("127.0.0.1", free_port(), free_port())
    await sinks.start()
    try:
        async with aiohttp.ClientSession() as http:
            slack = {"channel": "#oncall", "attachments": [{"title": "[FIRING:1] InferenceErrors",
                                                             "text": "error ratio 12%"}]}
            async with http.post(sinks.slack_url("oncall"), json=slack) as resp:
                assert resp.status == 200 and await resp.text() == "ok"
            async with http.post(sinks.webhook_url("watchdog"), json={"version": "4", "status": "firing"}) as resp:
                assert resp.status == 200
            async with http.post(sinks.slack_url("oncall"), data=b"{not json") as resp:
                assert resp.status == 400
            await asyncio.to_thread(send_mail, sinks.smtp_port)
            async with http.get(f"{sinks.url}/api/all") as resp:
                snap = await resp.json()
            async with http.get(f"{sinks.url}/") as resp:
                page = await resp.text()
            async with http.get(f"{sinks.url}/api/nothing") as resp:
                assert resp.status == 404 and "error" in await resp.json()
            async with http.delete(f"{sinks.url}/api/all") as resp:
                assert resp.status == 200
            async with http.get(f"{sinks.url}/api/mails") as resp:
                assert await resp.json() == []
    finally:
        await sinks.stop()
    assert [m["channel"] for m in snap["slack"]] == ["oncall"]
    assert "error ratio 12%" in snap["slack"][0]["text"]
    assert snap["webhooks"][0]["name"] == "watchdog" and snap["webhooks"][0]["payload"]["status"] == "firing"
    mail = snap["mails"][0]
    assert mail["subject"] == "[FIRING:1] InferenceErrors (critical)"
    assert mail["rcpt_tos"] == ["oncall@example.org"]
    assert "error ratio 12%" in mail["text"] and "<b>12%</b>" in mail["html"]
    assert "InferenceErrors" in page
    assert json.dumps(snap)  # JSON-serialisable as served


async def test_sinks_serve_the_runbooks_and_nothing_outside_docs():
    sinks = AlertSinks("127.0.0.1", free_port(), None)
    await sinks.start()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{sinks.url}/docs/runbooks/InferenceErrorBudgetBurn.md") as resp:
                assert resp.status == 200 and resp.content_type == "text/plain"
                assert (await resp.text()).startswith("# InferenceErrorBudgetBurn\n")
            for path in ("/docs/runbooks/NoSuchAlert.md", "/docs/../pyproject.toml", "/docs/%2e%2e/pyproject.toml"):
                async with http.get(f"{sinks.url}{path}") as resp:
                    assert resp.status == 404, path
    finally:
        await sinks.stop()
