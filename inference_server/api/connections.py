"""The listener and its protection against slow, broken or too many clients, and the graceful shutdown.

- Connections beyond `server.max_connections` are answered at once with a canned 503 + `Connection:
  close` (no parsing, no handler) and counted in `inference_connections_refused_total`.
- A connection that has not delivered complete request headers within `server.keepalive_timeout_s`
  of opening or of its previous response is closed (aiohttp's keep-alive timer covers both the idle
  keep-alive connection and the slowloris that trickles header bytes); a body that does not arrive
  within `server.body_timeout_s` gets 408 `timeout` and the connection is closed (`read_json`).
- Requests beyond `server.max_requests_in_flight` get 503 `overloaded` + `Retry-After` (middleware).
- SIGTERM/SIGINT: the listener closes (no new connections), requests on kept-alive connections get
  503 `not_ready` + `Connection: close`, in-flight requests are drained for up to
  `server.shutdown_timeout_s`, then the application's cleanup runs. Each step is logged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from dataclasses import dataclass
from typing import Optional

from aiohttp import web

from inference_server.api.context import METRICS
from inference_server.config import AppConfig, ServerConfig
from inference_server.errors import error_body

__all__ = ["CONNECTION_GUARD", "ConnectionGuard", "GuardedTCPSite", "run_server"]

log = logging.getLogger(__name__)

LINGERING_S = 0.5


@dataclass
class ConnectionGuard:
    """Shared by the listener and the middleware: the limits, what is in flight, whether we drain."""

    config: ServerConfig
    in_flight: int = 0
    draining: bool = False


CONNECTION_GUARD = web.AppKey("connection_guard", ConnectionGuard)


class _Refuse(asyncio.Protocol):
    """Answers a connection over the cap with a fixed 503 and closes it, without reading it."""

    def __init__(self, response: bytes) -> None:
        self._response = response

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.write(self._response)  # type: ignore[attr-defined]
        transport.close()

    def data_received(self, data: bytes) -> None:
        pass


def _refusal(config: ServerConfig) -> bytes:
    body = json.dumps(error_body("overloaded", f"the server holds its maximum of {config.max_connections} "
                                 "connections (server.max_connections); retry later")).encode()
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
            b"Retry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (config.retry_after_s, len(body), body))


class GuardedTCPSite(web.TCPSite):
    """A TCP site whose protocol factory refuses connections beyond `server.max_connections`."""

    def __init__(self, runner: web.AppRunner, config: ServerConfig, refused) -> None:
        super().__init__(runner, config.host, config.port)
        self._config = config
        self._refused = refused

    async def start(self) -> None:
        await web.BaseSite.start(self)
        server = self._runner.server
        assert server is not None
        limit, refusal = self._config.max_connections, _refusal(self._config)

        def factory() -> asyncio.Protocol:
            if len(server.connections) >= limit:
                self._refused.inc()
                return _Refuse(refusal)
            return server()

        self._server = await asyncio.get_running_loop().create_server(
            factory, self._host, self._port, backlog=self._backlog, reuse_address=self._reuse_address)


async def _drain(app: web.Application, runner: web.AppRunner, site: GuardedTCPSite, timeout: float) -> None:
    guard = app[CONNECTION_GUARD]
    guard.draining = True
    await site.stop()
    log.info("shutdown: listener closed; draining %d in-flight request(s) for up to %.0f s", guard.in_flight, timeout)
    loop = asyncio.get_running_loop()
    until = loop.time() + timeout
    while guard.in_flight > 0 and loop.time() < until:
        await asyncio.sleep(0.05)
    if guard.in_flight:
        log.warning("shutdown: %d request(s) still in flight after %.0f s; closing them", guard.in_flight, timeout)
    else:
        log.info("shutdown: in-flight requests drained")
    await runner.cleanup()
    log.info("shutdown: complete")


async def run_server(app: web.Application, config: AppConfig, *, access_log: Optional[logging.Logger] = None,
                     stop: Optional[asyncio.Event] = None) -> None:
    """Serve `app` until SIGTERM/SIGINT (or `stop` is set), then shut down gracefully."""
    server_cfg = config.server
    runner = web.AppRunner(app, access_log=access_log, handle_signals=False,
                           keepalive_timeout=server_cfg.keepalive_timeout_s,
                           # after an early answer (408, 413) aiohttp reads what the client still sends
                           # before closing; a stalled client sends nothing, so do not linger 10 s for it
                           lingering_time=LINGERING_S,
                           shutdown_timeout=min(1.0, server_cfg.shutdown_timeout_s))
    await runner.setup()
    site = GuardedTCPSite(runner, server_cfg, app[METRICS].connections_refused)
    await site.start()
    log.info("listening on http://%s:%d", server_cfg.host, server_cfg.port)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    received: list[str] = []

    def on_signal(sig: signal.Signals) -> None:
        received.append(sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await stop.wait()
        log.info("shutdown: %s received; refusing new work", received[0] if received else "stop requested")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await _drain(app, runner, site, server_cfg.shutdown_timeout_s)
