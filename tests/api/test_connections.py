"""Slow, broken and too many clients, and the SIGTERM drain, against the real listener (`run_server`)
on 127.0.0.1: slowloris and stalled bodies are closed within the configured timeouts while normal
requests keep their latency; an aborted body is a 499, never a 5xx; connections over the cap get a
canned 503; SIGTERM closes the listener, answers kept-alive requests 503 + Connection: close and
drains what is in flight."""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time

import aiohttp
from aiohttp import web

from devstack.processes import free_port
from inference_server.api.app import create_app
from inference_server.api.connections import run_server
from inference_server.api.context import METRICS

from .conftest import sample_value

HEADERS = b"Host: 127.0.0.1\r\nContent-Type: application/json\r\n"


async def start(server_config, **server):
    port = free_port()
    config = server_config(server={"host": "127.0.0.1", "port": port, **server})
    app = create_app(config, load_on_startup=False)
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(run_server(app, config, stop=stop))
    for _ in range(200):
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            break
        except OSError:
            await asyncio.sleep(0.02)
    return app, port, stop, task


async def closed_after(reader: asyncio.StreamReader, limit: float) -> tuple[float, bytes]:
    """Seconds until the server closed the connection (reading what it sent), at most `limit`."""
    began, data = time.perf_counter(), b""
    try:
        async with asyncio.timeout(limit):
            while chunk := await reader.read(4096):
                data += chunk
    except TimeoutError:
        return float("inf"), data
    return time.perf_counter() - began, data


async def test_slowloris_and_stalled_bodies_are_closed_while_normal_requests_keep_their_latency(server_config):
    app, port, stop, task = await start(server_config, keepalive_timeout_s=1.0, body_timeout_s=1.0)
    try:
        loris, stalled = [], []
        for _ in range(20):                        # headers trickled a byte at a time, never finished
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v1/search HTTP/1.1\r\n")
            loris.append((reader, writer))
        for _ in range(5):                         # a 200 kB body declared, 10 bytes sent
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v1/search HTTP/1.1\r\n" + HEADERS + b"Content-Length: 200000\r\n\r\n{\"query\":")
            stalled.append((reader, writer))

        async def trickle():
            for _ in range(20):
                await asyncio.sleep(0.1)
                for _, writer in loris:
                    if not writer.is_closing():
                        writer.write(b"X")
        trickling = asyncio.ensure_future(trickle())
        latencies = []
        async with aiohttp.ClientSession() as session:
            for _ in range(10):
                began = time.perf_counter()
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    assert resp.status == 200
                latencies.append(time.perf_counter() - began)
                await asyncio.sleep(0.05)
        assert max(latencies) < 0.5, latencies
        loris_closed = await asyncio.gather(*[closed_after(r, 4.0) for r, _ in loris])
        stalled_closed = await asyncio.gather(*[closed_after(r, 4.0) for r, _ in stalled])
        trickling.cancel()
        assert all(seconds < 2.5 for seconds, _ in loris_closed), loris_closed     # keepalive_timeout_s = 1
        assert all(data.startswith(b"HTTP/1.1 408") and b'"timeout"' in data for _, data in stalled_closed), \
            stalled_closed
        assert all(seconds < 2.5 for seconds, _ in stalled_closed), stalled_closed  # body_timeout_s = 1
        reg = app[METRICS].registry
        assert sample_value(reg, "inference_requests_total",
                            {"endpoint": "search", "model": "", "version": "", "status": "408"}) == 5
    finally:
        stop.set()
        await task


async def test_aborted_body_is_client_closed_not_a_5xx(server_config, caplog):
    app, port, stop, task = await start(server_config)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /v1/search HTTP/1.1\r\n" + HEADERS + b"Content-Length: 1000\r\n\r\n{\"query\":")
        await writer.drain()
        await asyncio.sleep(0.2)
        writer.transport.abort()
        reg = app[METRICS].registry
        labels = {"endpoint": "search", "model": "", "version": ""}
        for _ in range(100):
            if sample_value(reg, "inference_requests_total", {**labels, "status": "499"}) == 1:
                break
            await asyncio.sleep(0.02)
        assert sample_value(reg, "inference_requests_total", {**labels, "status": "499"}) == 1
        assert sample_value(reg, "inference_requests_total", {**labels, "status": "500"}) == 0
        assert sample_value(reg, "inference_rejected_requests_total",
                            {"endpoint": "search", "reason": "client_closed"}) == 1
        assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    finally:
        stop.set()
        await task


async def test_connections_over_the_cap_get_a_canned_503(server_config):
    app, port, stop, task = await start(server_config, max_connections=3)
    try:
        held = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        await asyncio.sleep(0.1)
        reader, _ = await asyncio.open_connection("127.0.0.1", port)
        _, data = await closed_after(reader, 2.0)
        assert data.startswith(b"HTTP/1.1 503") and b"Retry-After: 1" in data and b"max_connections" in data
        assert sample_value(app[METRICS].registry, "inference_connections_refused_total") == 1
        for _, writer in held:
            writer.close()
    finally:
        stop.set()
        await task


async def test_sigterm_drains_in_flight_and_closes_kept_alive_connections(server_config, caplog):
    caplog.set_level(logging.INFO, logger="inference_server.api.connections")
    port = free_port()
    config = server_config(server={"host": "127.0.0.1", "port": port, "shutdown_timeout_s": 5})
    app = create_app(config, load_on_startup=False)

    async def slow(request):
        await asyncio.sleep(1.0)
        return web.json_response({"slow": "done"})

    app.router.add_get("/test/slow", slow)
    task = asyncio.get_running_loop().create_task(run_server(app, config))
    await asyncio.sleep(0.3)
    async with aiohttp.ClientSession() as kept, aiohttp.ClientSession() as other:
        async with kept.get(f"http://127.0.0.1:{port}/healthz") as resp:   # a kept-alive connection
            assert resp.status == 200
        in_flight = asyncio.ensure_future(other.get(f"http://127.0.0.1:{port}/test/slow"))
        await asyncio.sleep(0.3)
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.sleep(0.2)
        async with kept.get(f"http://127.0.0.1:{port}/healthz") as resp:   # same connection, after SIGTERM
            body = await resp.json()
            assert resp.status == 503 and body["error"]["code"] == "not_ready"
            assert resp.headers["Connection"].lower() == "close" and resp.headers["Retry-After"]
        try:
            await asyncio.open_connection("127.0.0.1", port)
            raise AssertionError("the listener still accepts connections after SIGTERM")
        except OSError:
            pass
        resp = await in_flight
        assert resp.status == 200 and (await resp.json()) == {"slow": "done"}
    await asyncio.wait_for(task, 10)
    messages = [r.getMessage() for r in caplog.records if r.name == "inference_server.api.connections"]
    assert any("SIGTERM received" in m for m in messages), messages
    assert any("drained" in m for m in messages) and any("complete" in m for m in messages), messages
