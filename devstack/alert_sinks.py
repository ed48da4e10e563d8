"""Local stand-ins for Slack and an SMTP server, so alert notifications are visible without either.

- Slack: `POST /slack/<channel>` accepts Slack incoming-webhook payloads (what Alertmanager's
  `slack_configs` sends) and answers `ok` like Slack does.
- Webhooks: `POST /webhook/<name>` accepts any JSON (e.g. Alertmanager's webhook payload for a
  heartbeat / Watchdog receiver).
- Email: an aiosmtpd SMTP server that accepts every message (AUTH PLAIN with any credentials,
  because Alertmanager logs in with the configured password).
- A tiny web view: `GET /` (HTML), `GET /api/slack`, `/api/webhooks`, `/api/mails`, `/api/all` (JSON);
  `DELETE /api/all` clears everything.
- The project's docs, read-only: `GET /docs/runbooks/<alert>.md` (Markdown as plain text), so the
  runbook links of the local stack's alerts and dashboards work without a network.

Run: `python -m devstack.alert_sinks --http 127.0.0.1:8025 --smtp 127.0.0.1:1025`.
"""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import html
import json
import logging
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from aiohttp import web

MAX_KEPT = 1000  # per kind; oldest dropped first
DOCS_DIR = Path(__file__).resolve().parents[1] / "docs"



class _DropLoginDataNotice(logging.Filter):
    """aiosmtpd logs a deprecation notice about its own Session.login_data after every AUTH."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Session.login_data is deprecated" not in record.getMessage()


logging.getLogger("mail.log").addFilter(_DropLoginDataNotice())


@dataclass
class SlackMessage:
    channel: str
    received_at: float
    payload: Any

    @property
    def text(self) -> str:
        """All human-readable text of the payload (text, attachment titles/texts/fields, blocks)."""
        parts: list[str] = []

        def walk(node: Any) -> None:
            if isinstance(node, dict):
                for key, value in node.items():
                    if key in ("text", "title", "pretext", "fallback", "value", "title_link") and isinstance(value, str):
                        parts.append(value)
                    else:
                        walk(value)
            elif isinstance(node, list):
                for item in node:
                    walk(item)

        walk(self.payload)
        return "\n".join(parts)


@dataclass
class Mail:
    received_at: float
    mail_from: str
    rcpt_tos: list[str]
    subject: str
    text: str
    html: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Webhook:
    name: str
    received_at: float
    payload: Any


class Inbox:
    """Thread-safe store (the SMTP server runs in its own thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.slack: list[SlackMessage] = []
        self.mails: list[Mail] = []
        self.webhooks: list[Webhook] = []

    def add(self, kind: str, item: Any) -> None:
        with self._lock:
            items = getattr(self, kind)
            items.append(item)
            del items[:-MAX_KEPT]

    def snapshot(self) -> dict[str, list]:
        with self._lock:
            return {
                "slack": [{**asdict(m), "text": m.text} for m in self.slack],
                "mails": [asdict(m) for m in self.mails],
                "webhooks": [asdict(w) for w in self.webhooks],
            }

    def clear(self) -> None:
        with self._lock:
            self.slack.clear()
            self.mails.clear()
            self.webhooks.clear()


def parse_mail(mail_from: str, rcpt_tos: list[str], data: bytes) -> Mail:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    text, body_html = "", ""
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        try:
            content = part.get_content()
        except (LookupError, ValueError):
            content = part.get_payload(decode=True).decode("utf-8", "replace")
        if ctype == "text/plain" and not text:
            text = content
        elif ctype == "text/html" and not body_html:
            body_html = content
    return Mail(time.time(), mail_from, list(rcpt_tos), str(msg.get("Subject", "")), text, body_html,
                {k: str(v) for k, v in msg.items()})


class _SmtpHandler:
    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 (aiosmtpd API)
        self.inbox.add("mails", parse_mail(envelope.mail_from, envelope.rcpt_tos, envelope.original_content
                                           or envelope.content))
        return "250 Message accepted for delivery"


def _accept_any_login(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult

    return AuthResult(success=True)


INBOX = web.AppKey("inbox", Inbox)


async def _slack(request: web.Request) -> web.Response:
    try:
        raw = await request.read()
        if request.content_type == "application/x-www-form-urlencoded":
            payload = json.loads((await request.post()).get("payload", "{}"))
        else:
            payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return web.Response(status=400, text="invalid_payload")
    request.app[INBOX].add("slack", SlackMessage(request.match_info["channel"], time.time(), payload))
    return web.Response(text="ok")


async def _webhook(request: web.Request) -> web.Response:
    try:
        payload = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return web.json_response({"error": {"code": "invalid_json", "message": "body must be JSON"}}, status=400)
    request.app[INBOX].add("webhooks", Webhook(request.match_info["name"], time.time(), payload))
    return web.json_response({"status": "ok"})


async def _api(request: web.Request) -> web.Response:
    snap = request.app[INBOX].snapshot()
    kind = request.match_info["kind"]
    if kind == "all":
        return web.json_response(snap)
    if kind not in snap:
        return web.json_response({"error": {"code": "not_found", "message": f"no such list {kind!r}"}}, status=404)
    return web.json_response(snap[kind])


async def _clear(request: web.Request) -> web.Response:
    request.app[INBOX].clear()
    return web.json_response({"status": "cleared"})


async def _index(request: web.Request) -> web.Response:
    snap = request.app[INBOX].snapshot()
    rows = []
    for m in reversed(snap["mails"]):
        rows.append(f"<tr><td>email</td><td>{time.strftime('%H:%M:%S', time.localtime(m['received_at']))}</td>"
                    f"<td>{html.escape(', '.join(m['rcpt_tos']))}</td><td><b>{html.escape(m['subject'])}</b>"
                    f"<pre>{html.escape(m['text'][:4000])}</pre></td></tr>")
    for s in reversed(snap["slack"]):
        rows.append(f"<tr><td>slack</td><td>{time.strftime('%H:%M:%S', time.localtime(s['received_at']))}</td>"
                    f"<td>#{html.escape(s['channel'])}</td><td><pre>{html.escape(s['text'][:4000])}</pre></td></tr>")
    for w in reversed(snap["webhooks"]):
        rows.append(f"<tr><td>webhook</td><td>{time.strftime('%H:%M:%S', time.localtime(w['received_at']))}</td>"
                    f"<td>{html.escape(w['name'])}</td><td><pre>{html.escape(json.dumps(w['payload'])[:2000])}</pre>"
                    "</td></tr>")
    body = ("<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=10>"
            "<title>Alert sinks</title><h1>Alert notifications received locally</h1>"
            f"<p>{len(snap['mails'])} emails, {len(snap['slack'])} Slack messages, {len(snap['webhooks'])} webhooks."
            " JSON: <a href=/api/mails>/api/mails</a> <a href=/api/slack>/api/slack</a>"
            " <a href=/api/webhooks>/api/webhooks</a></p>"
            "<table border=1 cellpadding=4><tr><th>kind</th><th>time</th><th>to</th><th>content</th></tr>"
            + "".join(rows) + "</table>")
    return web.Response(text=body, content_type="text/html")


async def _docs(request: web.Request) -> web.StreamResponse:
    """A file under docs/ (Markdown as UTF-8 plain text); nothing outside it."""
    path = (DOCS_DIR / request.match_info["path"]).resolve()
    if not path.is_relative_to(DOCS_DIR) or not path.is_file():
        return web.json_response({"error": {"code": "not_found", "message": "no such document"}}, status=404)
    if path.suffix == ".md":
        return web.Response(text=path.read_text(encoding="utf-8"), content_type="text/plain", charset="utf-8")
    return web.FileResponse(path)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def create_app(inbox: Inbox) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[INBOX] = inbox
    app.router.add_get("/", _index)
    app.router.add_get("/healthz", _healthz)
    app.router.add_post("/slack/{channel}", _slack)
    app.router.add_post("/webhook/{name}", _webhook)
    app.router.add_get("/api/{kind}", _api)
    app.router.add_delete("/api/all", _clear)
    app.router.add_get("/docs/{path:.+}", _docs)
    return app


class AlertSinks:
    """Both sinks in this process: `await start()`, read `.inbox`, `await stop()`.

    `smtp_port=None` runs only the web side (Slack and webhooks), e.g. beside a separate mail catcher."""

    def __init__(self, host: str = "127.0.0.1", http_port: int = 8025, smtp_port: Optional[int] = 1025) -> None:
        self.host, self.http_port, self.smtp_port = host, http_port, smtp_port
        self.inbox = Inbox()
        self._runner: Optional[web.AppRunner] = None
        self._smtp: Any = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    def slack_url(self, channel: str) -> str:
        return f"{self.url}/slack/{channel}"

    def webhook_url(self, name: str) -> str:
        return f"{self.url}/webhook/{name}"

    async def start(self) -> None:
        if self.smtp_port is not None:
            from aiosmtpd.controller import Controller

            # AUTH PLAIN only: Alertmanager's LOGIN client expects the literal challenges "Username:"
            # / "Password:", which aiosmtpd's LOGIN does not send; PLAIN is what real servers offer too.
            self._smtp = Controller(_SmtpHandler(self.inbox), hostname=self.host, port=self.smtp_port,
                                    authenticator=_accept_any_login, auth_require_tls=False,
                                    auth_exclude_mechanism=["LOGIN"])
            self._smtp.start()
        self._runner = web.AppRunner(create_app(self.inbox), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self.host, self.http_port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._smtp is not None:
            await asyncio.to_thread(self._smtp.stop)
            self._smtp = None


def _hostport(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {value!r}")
    return host, int(port)


async def _serve(http: tuple[str, int], smtp_port: Optional[int]) -> None:
    sinks = AlertSinks(http[0], http[1], smtp_port)
    await sinks.start()
    print(f"alert sinks: web {sinks.url}/  Slack webhooks {sinks.url}/slack/<channel>  "
          f"SMTP {'off' if smtp_port is None else f'{sinks.host}:{smtp_port}'}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await sinks.stop()


def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devstack.alert_sinks",
                                description="Local Slack-compatible webhook sink and SMTP mail catcher with a web/JSON view.")
    p.add_argument("--http", type=_hostport, default=("127.0.0.1", 8025), metavar="HOST:PORT",
                   help="web view, Slack and webhook endpoints (default 127.0.0.1:8025)")
    p.add_argument("--smtp", type=_hostport, default=("127.0.0.1", 1025), metavar="HOST:PORT",
                   help="SMTP listener; must share the web host (default 127.0.0.1:1025)")
    p.add_argument("--no-smtp", action="store_true", help="only the web side (e.g. beside mailpit)")
    args = p.parse_args(argv)
    if args.smtp[0] != args.http[0] and not args.no_smtp:
        p.error("--smtp and --http must use the same host")
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.http, None if args.no_smtp else args.smtp[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
