"""Stand-in for mailpit in the compose test: the project's alert sinks, taking mail like mailpit does.

The web side (Slack webhooks, /api/mails, /healthz on :8025) is the project's AlertSinks. The SMTP
side (:1025) is an aiosmtpd listener that, like mailpit's default, offers no AUTH: the project's own
SMTP sink offers AUTH PLAIN, and Alertmanager (Go's net/smtp) refuses PLAIN over a plain-text
connection to any host but localhost, so against `mailpit:1025` every email would fail.
"""
from __future__ import annotations

import asyncio
import signal

from aiosmtpd.controller import Controller

# --- module path (update when the sinks move to devstack/) ---
from devstack.alert_sinks import AlertSinks, parse_mail


class _Handler:
    def __init__(self, sinks: AlertSinks) -> None:
        self.sinks = sinks

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802 (aiosmtpd API)
        data = envelope.original_content or envelope.content
        self.sinks.inbox.add("mails", parse_mail(envelope.mail_from, envelope.rcpt_tos, data))
        return "250 Message accepted for delivery"


async def main() -> None:
    sinks = AlertSinks("0.0.0.0", 8025, smtp_port=None)
    await sinks.start()
    smtp = Controller(_Handler(sinks), hostname="0.0.0.0", port=1025)
    smtp.start()
    print("mailpit stand-in: web http://0.0.0.0:8025/ (JSON: /api/mails)  SMTP 0.0.0.0:1025 (no AUTH)", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sinks.stop()
    await asyncio.to_thread(smtp.stop)


if __name__ == "__main__":
    asyncio.run(main())
