"""Local stand-ins for Slack's servers and an SMTP relay, so notifications can be read back in tests.

Slack is the one boundary that cannot run here; the sink accepts what Slack's incoming webhooks
accept (a JSON POST) and records it. SMTP is a real aiosmtpd server.
"""
from __future__ import annotations

import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from aiosmtpd.controller import Controller


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict


@dataclass
class HttpSink:
    """Records every JSON POST; answers 200 like Slack's incoming webhooks."""

    server: ThreadingHTTPServer
    received: list[Received] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def wait_for(self, predicate: Callable[[Received], bool], timeout: float = 30.0) -> Received:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for item in list(self.received):
                if predicate(item):
                    return item
            time.sleep(0.1)
        raise TimeoutError(f"no matching request within {timeout}s; got {[r.body for r in self.received]}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_http_sink() -> HttpSink:
    sink: HttpSink

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server API)
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            sink.received.append(Received(self.path, dict(self.headers), json.loads(raw or b"{}")))
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink = HttpSink(server)
    threading.Thread(target=server.serve_forever, name="http-sink", daemon=True).start()
    return sink


class _Mailbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd API)
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 OK"


@dataclass
class SmtpSink:
    controller: Controller
    mailbox: _Mailbox

    @property
    def smarthost(self) -> str:
        return f"127.0.0.1:{self.controller.port}"

    def wait_for(self, predicate: Callable[[email.message.EmailMessage], bool], timeout: float = 30.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for msg in list(self.mailbox.messages):
                if predicate(msg):
                    return msg
            time.sleep(0.1)
        raise TimeoutError(f"no matching mail within {timeout}s; got {[m['Subject'] for m in self.mailbox.messages]}")

    def close(self) -> None:
        self.controller.stop()


def start_smtp_sink(port: int) -> SmtpSink:
    mailbox = _Mailbox()
    controller = Controller(mailbox, hostname="127.0.0.1", port=port)
    controller.start()
    return SmtpSink(controller, mailbox)
