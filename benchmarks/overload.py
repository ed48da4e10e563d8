#!/usr/bin/env python3
"""Overload benchmark: does the server keep its goodput when offered more than it can serve?

Prints, in one run on one machine, against a server subprocess (`python -m inference_server`):
  1. closed-loop capacity: 200s/s of POST /v1/search with `--concurrency` (32) clients;
  2. open-loop Poisson arrivals at 1.5x and 3x that capacity for `--duration` (30) s each, and per phase
     goodput (200s/s) / capacity, p99 latency of admitted (200) requests / the request deadline, the
     share of model compute spent on requests that had already timed out, status counts and the
     server's resident memory after the phase.
Targets (issue 11): at 3x, goodput >= 0.9 x capacity, p99 of admitted <= deadline, no 500/504,
wasted compute <= 5 % (of texts encoded, and of compute seconds by the server's counter), memory flat
(checked on a repeated phase at the highest load, e.g. `--loads 1.5,3,3,3`: RSS grows by at most 2 %;
the first phases at a new load grow the allocator's pools and the open connections).

`--server-root DIR` runs the server from another checkout (e.g. a `git worktree` of an older commit)
so before/after figures come from the same command on the same machine. The load generator is a
minimal HTTP/1.1 client on raw asyncio streams (a pool of keep-alive connections), so it takes as
little CPU as possible from the server; on a small shared machine the figures are still noisy, ratios
measured in one run are what to compare.
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import random
import shutil
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TARGET_GOODPUT = 0.9
TARGET_WASTED = 0.05
TARGET_RSS_GROWTH = 0.02   # memory flat: a repeated phase at the highest load grows RSS by at most 2 %


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds per open-loop phase (default 30)")
    parser.add_argument("--capacity-duration", type=float, default=15.0,
                        help="seconds of the closed-loop capacity phase (default 15)")
    parser.add_argument("--concurrency", type=int, default=32, help="closed-loop clients (default 32)")
    parser.add_argument("--loads", default="1.5,3", help="open-loop rates as multiples of capacity (default 1.5,3)")
    parser.add_argument("--catalog-size", type=int, default=5000, help="synthetic catalog products (default 5000)")
    parser.add_argument("--deadline-ms", type=int, default=2000, help="server.request_timeout_ms (default 2000)")
    parser.add_argument("--max-connections", type=int, default=1000, help="most client connections (default 1000)")
    parser.add_argument("--server-root", default=str(REPO_ROOT),
                        help="checkout the server runs from (default: this one)")
    parser.add_argument("--cache-dir", default=str(REPO_ROOT / "var" / "cache" / "embeddings"),
                        help="catalog embedding cache (default var/cache/embeddings of this checkout)")
    parser.add_argument("--seed", type=int, default=11, help="arrival process seed")
    return parser.parse_args(argv)


# -- the HTTP client ---------------------------------------------------------------------------

class Pool:
    """Keep-alive connections to one port; a request takes a free one or opens a new one."""

    def __init__(self, port: int, limit: int) -> None:
        self.port = port
        self.limit = limit
        self.free: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.open = 0

    async def request(self, raw: bytes, timeout: float) -> tuple[str, float]:
        began = time.perf_counter()
        reused = bool(self.free)
        status, latency = await self._request(raw, timeout, began)
        if reused and status in ("closed", "connection_error"):
            # the server closed an idle kept-alive connection (its keep-alive timeout): as real clients
            # do for a request that was never answered, retry once on a new connection
            status, latency = await self._request(raw, timeout, began, fresh=True)
        return status, latency

    async def _request(self, raw: bytes, timeout: float, began: float, fresh: bool = False) -> tuple[str, float]:
        if self.free and not fresh:
            conn = self.free.pop()
        elif self.open >= self.limit:
            return "client_limit", 0.0
        else:
            self.open += 1
            try:
                conn = await asyncio.open_connection("127.0.0.1", self.port)
            except OSError:
                self.open -= 1
                return "connect_error", time.perf_counter() - began
        reader, writer = conn
        keep = False
        try:
            async with asyncio.timeout(timeout):
                writer.write(raw)
                status_line = await reader.readline()
                if not status_line:
                    return "closed", time.perf_counter() - began
                length, keep = 0, True
                while True:
                    line = await reader.readline()
                    if line in (b"\r\n", b""):
                        break
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection" and value.strip().lower() == b"close":
                        keep = False
                await reader.readexactly(length)
            return status_line.split(b" ", 2)[1].decode(), time.perf_counter() - began
        except TimeoutError:
            keep = False
            return "timeout", time.perf_counter() - began
        except (OSError, asyncio.IncompleteReadError):
            keep = False
            return "connection_error", time.perf_counter() - began
        finally:
            if keep:
                self.free.append(conn)
            else:
                self.open -= 1
                writer.close()

    def close(self) -> None:
        for _, writer in self.free:
            writer.close()
        self.free.clear()


def search_requests(queries: list[str]) -> list[bytes]:
    out = []
    for q in queries:
        body = json.dumps({"query": q, "k": 10}).encode()
        out.append(b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                   b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    return out


async def closed_loop(pool: Pool, requests: list[bytes], concurrency: int, duration: float) -> dict:
    loop = asyncio.get_running_loop()
    warm_until = loop.time() + 3.0
    stop_at = warm_until + duration
    statuses: collections.Counter = collections.Counter()
    latencies: list[float] = []

    async def client(offset: int) -> None:
        i = offset
        while loop.time() < stop_at:
            status, latency = await pool.request(requests[i % len(requests)], 30.0)
            i += 1
            if loop.time() >= warm_until:
                statuses[status] += 1
                if status == "200":
                    latencies.append(latency)

    await asyncio.gather(*[client(i * 7) for i in range(concurrency)])
    return {"rate": statuses["200"] / duration, "statuses": statuses, "latencies": latencies}


async def open_loop(pool: Pool, requests: list[bytes], rate: float, duration: float, seed: int,
                    timeout: float) -> dict:
    """Poisson arrivals at `rate`/s for `duration` s; each arrival is sent whatever is outstanding."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    statuses: collections.Counter = collections.Counter()
    latencies: list[float] = []
    tasks: set[asyncio.Task] = set()

    async def one(raw: bytes) -> None:
        status, latency = await pool.request(raw, timeout)
        statuses[status] += 1
        if status == "200":
            latencies.append(latency)

    start = loop.time()
    at, i = start, 0
    while True:
        at += rng.expovariate(rate)
        if at - start >= duration:
            break
        delay = at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(requests[i % len(requests)]))
        i += 1
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    sent_for = loop.time() - start
    await asyncio.gather(*tasks)
    return {"sent": i, "sent_for": sent_for, "statuses": statuses, "latencies": latencies}


# -- the server --------------------------------------------------------------------------------

def start_server(args, workdir: Path):
    import yaml

    from devstack.processes import free_port, launch

    port = free_port()
    config = {
        "server": {"host": "127.0.0.1", "port": port, "request_timeout_ms": args.deadline_ms},
        "model": {"device": "cpu"},
        "catalog": {"source": "synthetic", "num_products": args.catalog_size, "num_queries": 500,
                    "cache_dir": args.cache_dir},
        "request_log": {"enabled": True, "path": str(workdir / "requests.jsonl")},
        "model_repository": {"enabled": False},
    }
    config_path = workdir / "inference_server.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    root = Path(args.server_root).resolve()
    env = {**os.environ, "PYTHONPATH": str(root), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "INFERENCE_SERVER_USER_ID_SALT": "bench", "PYTHONUNBUFFERED": "1"}
    return launch("inference_server", [sys.executable, "-m", "inference_server", "--config", str(config_path)],
                  workdir=workdir, url=f"http://127.0.0.1:{port}", ready_path="/readyz", timeout=900,
                  env=env, cwd=root)


def scrape(url: str) -> dict[str, float]:
    """Sums of the server metrics the benchmark reads (over all label sets)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = urllib.request.urlopen(f"{url}/metrics", timeout=30).read().decode()
    wanted = {"inference_batch_size_sum", "inference_compute_duration_seconds_sum",
              "inference_wasted_compute_seconds_total"}
    out: dict[str, float] = collections.defaultdict(float)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in wanted:
                out[sample.name] += sample.value
            elif sample.name == "inference_model_errors_total" and sample.labels.get("reason") == "timeout":
                out["timeouts_after_start"] += sample.value
            elif sample.name == "inference_admission_shed_total":
                out[f"shed_{sample.labels.get('reason')}"] += sample.value
            elif sample.name == "business_feedback_store_requests":
                out["feedback_store_requests"] += sample.value
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def p99(values: list[float]) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(0.99 * len(values)))]


def main(argv=None) -> int:
    args = parse_args(argv)
    from devstack.processes import running
    from inference_server.catalog import CatalogConfig, load_catalog

    bundle = load_catalog(CatalogConfig(num_products=args.catalog_size, num_queries=500))
    requests = search_requests([q.text for q in bundle.queries])
    loads = [float(x) for x in args.loads.split(",") if x.strip()]
    deadline = args.deadline_ms / 1000.0
    print(f"machine: {os.cpu_count()} CPUs (shared, contended); server from {Path(args.server_root).resolve()}; "
          f"catalog {args.catalog_size}; deadline {args.deadline_ms} ms", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-overload-"))
    failed_targets = []
    try:
        print("starting the server (embeds the catalog on the first run) ...", flush=True)
        server = start_server(args, workdir)
        with running(server):
            port = int(server.url.rsplit(":", 1)[1])
            pid = server.proc.pid

            async def run() -> None:
                pool = Pool(port, args.max_connections)
                print(f"[capacity] closed loop, {args.concurrency} clients, {args.capacity_duration:.0f} s ...",
                      flush=True)
                cap = await closed_loop(pool, requests, args.concurrency, args.capacity_duration)
                capacity = cap["rate"]
                rss0 = rss_prev = rss_mib(pid)
                print(f"capacity: {capacity:.1f} searches/s  p99 {p99(cap['latencies']) * 1000:.0f} ms  "
                      f"statuses {dict(cap['statuses'])}  rss {rss0:.0f} MiB", flush=True)
                for n, mult in enumerate(loads):
                    rate = mult * capacity
                    await asyncio.sleep(3.0)  # let the queue drain between phases
                    before = scrape(server.url)
                    print(f"[{mult:g}x] open loop, {rate:.0f} arrivals/s for {args.duration:.0f} s ...", flush=True)
                    res = await open_loop(pool, requests, rate, args.duration, args.seed + n, timeout=10 * deadline)
                    after = scrape(server.url)
                    goodput = res["statuses"]["200"] / res["sent_for"]
                    texts = after["inference_batch_size_sum"] - before["inference_batch_size_sum"]
                    wasted = (after["timeouts_after_start"] - before["timeouts_after_start"]) / texts if texts else 0.0
                    compute = (after["inference_compute_duration_seconds_sum"]
                               - before["inference_compute_duration_seconds_sum"])
                    wasted_s = (after.get("inference_wasted_compute_seconds_total", 0.0)
                                - before.get("inference_wasted_compute_seconds_total", 0.0))
                    tail = p99(res["latencies"])
                    rss = rss_mib(pid)
                    statuses = dict(sorted(res["statuses"].items()))
                    bad = sum(v for k, v in statuses.items() if k in ("500", "504"))
                    print(f"{mult:g}x: sent {res['sent']} ({res['sent'] / res['sent_for']:.0f}/s)  "
                          f"goodput {goodput:.1f}/s = {goodput / capacity:.2f} x capacity  "
                          f"p99 admitted {tail * 1000:.0f} ms = {tail / deadline:.2f} x deadline", flush=True)
                    print(f"      wasted compute: {wasted * 100:.1f} % of texts encoded were for requests that had "
                          f"timed out ({int(texts)} texts, {compute:.1f} s compute"
                          + (f"; server counter {wasted_s:.1f} s = {wasted_s / compute * 100:.1f} %)"
                             if compute and "inference_wasted_compute_seconds_total" in after else ")"), flush=True)
                    shed = {k[5:]: int(after[k] - before.get(k, 0.0)) for k in sorted(after) if k.startswith("shed_")}
                    print(f"      statuses {statuses}  500/504: {bad}  shed by reason {shed}", flush=True)
                    print(f"      rss {rss:.0f} MiB ({rss - rss0:+.0f} since the capacity phase, {rss - rss_prev:+.0f} "
                          f"this phase); feedback join store holds {after['feedback_store_requests']:.0f} answers",
                          flush=True)
                    growth, rss_prev = (rss - rss_prev) / rss_prev, rss
                    if mult == max(loads):
                        checks = {
                            f"goodput >= {TARGET_GOODPUT} x capacity": goodput / capacity >= TARGET_GOODPUT,
                            "p99 admitted <= deadline": tail <= deadline,
                            "0 responses 500/504": bad == 0,
                            # both measures: share of texts and (server counter) share of compute seconds
                            f"wasted compute <= {TARGET_WASTED:.0%}": max(wasted, wasted_s / compute if compute else 0.0)
                            <= TARGET_WASTED,
                        }
                        if loads[:n].count(mult):   # a repeat of this load: has memory stopped growing?
                            checks[f"memory flat (RSS {growth * 100:+.1f} % in this repeated phase, "
                                   f"<= {TARGET_RSS_GROWTH:.0%})"] = growth <= TARGET_RSS_GROWTH
                        for name, ok in checks.items():
                            print(f"target at {mult:g}x: {name}: {'met' if ok else 'NOT met'}")
                            if not ok:
                                failed_targets.append(name)
                pool.close()

            asyncio.run(run())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
