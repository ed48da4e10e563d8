#!/usr/bin/env python3
"""Serving benchmark: how close the HTTP server gets to the model's in-process limit.

Prints, in one run on one machine, for each backend of --backends (default: the server's default
backend, i.e. torch with dtype auto, then onnxruntime float32 and torch float32 for comparison):
  (a) in-process limit: queries/s of tokenise (once) + encode + top-k (no HTTP) at the best
      (instances, batch size) of a sweep;
  (b) HTTP closed loop: throughput and p50/p95/p99 latency of POST /v1/search with N concurrent
      clients against a server subprocess with dynamic batching on;
  (c) the same with batching off (max batch 1);
then (b)/(a) (target >= 0.85) and (b)/(c) (target >= 1.5). Once per run, before the backends:
  (d) the HTTP path alone: (b) against a model that costs nothing (benchmarks/null_model_server.py)
      over a catalog so small that top-k costs nothing either. Its CPU per request (event loop, other
      server threads, load generator) plus the model's at (a) gives each backend's ceiling for (b)
      on these cores: 1 / (1/(a) + (d)'s CPU per request / cores), what (b) would reach with no core
      ever idle. When that ceiling is below 0.85 x (a), the target cannot be met on this machine
      without making the HTTP path itself cheaper.
The server serves the backend under test
(its `model:` section, model repository off, so the lifecycle's traffic policy and feedback join are
not in the path). Under (b) and (c), the CPU each part used over the measured window: the server's
event loop (its main thread), its other threads (model instances, request log writer), the load
generator, and what stayed idle.

The load generator is a minimal keep-alive HTTP/1.1 client on raw asyncio streams (on uvloop), so it
takes as little CPU as possible from the server on a small machine.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TARGET_HTTP_VS_INPROCESS = 0.85
TARGET_BATCHING_GAIN = 1.5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=20.0,
                        help="seconds measured per HTTP phase (b, c); the sweep uses duration/4 per batch size")
    parser.add_argument("--concurrency", type=int, default=32, help="concurrent closed-loop clients (default 32)")
    parser.add_argument("--catalog-size", type=int, default=5000, help="synthetic catalog products (default 5000)")
    parser.add_argument("--batch-sizes", default="1,4,8,16,32,64",
                        help="batch sizes swept in (a) (comma-separated)")
    parser.add_argument("--k", type=int, default=10, help="results per search (default 10)")
    parser.add_argument("--num-threads", type=int, default=None,
                        help="torch intra-op threads for (a) and the server (default: torch's choice)")
    parser.add_argument("--instances", type=int, default=None,
                        help="model instances for (a) and the server (default: sweep 1 and one per core)")
    parser.add_argument("--max-queue-delay-ms", type=float, default=2.0, help="server batching delay (default 2)")
    parser.add_argument("--backends", default="torch:auto,onnxruntime:float32,torch:float32",
                        help="backend:dtype[:quantization[:torch_graph]] list, e.g. torch:auto:none:eager; the first is the "
                             "default backend (default: "
                             "torch:auto,onnxruntime:float32,torch:float32)")
    parser.add_argument("--cache-dir", default=str(REPO_ROOT / "var" / "cache" / "embeddings"),
                        help="embedding cache shared by (a) and the server")
    return parser.parse_args(argv)


# -- (a) in-process ----------------------------------------------------------------------------

def parse_backend(text: str) -> dict:
    """backend:dtype[:quantization[:torch_graph]] -> ModelSpec fields (torch_graph: torch only)."""
    parts = text.strip().split(":")
    model = {"backend": parts[0], "dtype": parts[1] if len(parts) > 1 else "auto",
             "quantization": parts[2] if len(parts) > 2 else "none"}
    if len(parts) > 3:
        model["torch_graph"] = parts[3]
    return model


def in_process_sweep(args, queries: list[str], model: dict):
    """Queries/s of tokenise + encode + top-k for each (model instances, batch size); the best is (a).

    Instances are concurrent streams, each in its own thread with its share of the cores, exactly as
    the server runs them, so (a) is the machine's in-process limit whichever layout wins.
    """
    import threading

    from tqdm import tqdm

    from inference_server.catalog import CatalogConfig, VectorIndex, load_catalog
    from inference_server.models.backend import ModelSpec, auto_cpu_instances
    from inference_server.models.registry import create_backend

    from inference_server.models.parity import run_gate

    backend = create_backend(ModelSpec(device="cpu", num_threads=args.num_threads, **model))
    parity = run_gate(backend)
    bundle = load_catalog(CatalogConfig(num_products=args.catalog_size, cache_dir=args.cache_dir))
    index = VectorIndex.build(bundle.catalog, backend, args.cache_dir, progress=True)
    backend.warmup((1, 8, 32))
    sizes = [int(s) for s in args.batch_sizes.split(",") if s.strip()]
    layouts = sorted({1, auto_cpu_instances()} if args.instances is None else {args.instances})
    per_run = max(args.duration / 4.0, 1.0)
    results: dict[tuple[int, int], float] = {}

    def stream(size: int, offset: int, until: float, counts: list[int], slot: int) -> None:
        cursor = offset
        while time.perf_counter() < until:
            batch = [queries[(cursor + i) % len(queries)] for i in range(size)]
            cursor += size
            tokens = backend.tokenize(batch)  # once per window, as the server does
            order = sorted(range(size), key=tokens.lengths.__getitem__)
            index.search(backend.encode_tokens(tokens.select(order)), args.k)
            counts[slot] += size

    runs = [(n, size) for n in layouts for size in sizes]
    for instances, size in tqdm(runs, desc="(a) instances x batch-size sweep", unit="run"):
        backend.configure_parallelism(instances)
        counts = [0] * instances
        started = time.perf_counter()
        threads = [threading.Thread(target=stream, args=(size, 97 * i, started + per_run, counts, i))
                   for i in range(instances)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        results[(instances, size)] = sum(counts) / (time.perf_counter() - started)
    described = f"{backend.backend_name}/{backend.dtype}" + (f"/{backend.graph}" if getattr(backend, "graph", None) else "")
    backend.close()
    best = max(results, key=results.get)
    return best, results[best], results, described, parity


# -- (b), (c) HTTP closed loop -------------------------------------------------------------------

async def _client(port: int, requests: list[bytes], stop_at: float, warm_until: float,
                  latencies: list[float], failures: list[int], offset: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    loop = asyncio.get_running_loop()
    try:
        while loop.time() < stop_at:
            request = requests[i % len(requests)]
            i += 1
            began = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            elapsed = time.perf_counter() - began
            if loop.time() >= warm_until:
                if status_line.split(b" ", 2)[1] == b"200":
                    latencies.append(elapsed)
                else:
                    failures.append(int(status_line.split(b" ", 2)[1]))
    finally:
        writer.close()


def _cpu_seconds(server_pid: Optional[int]) -> dict:
    """CPU seconds so far: the server's threads (by thread id; its main thread runs the event loop)
    and this process (the load generator)."""
    import psutil

    usage = psutil.Process().cpu_times()
    out = {"client": usage.user + usage.system, "threads": {}}
    if server_pid is not None:
        out["threads"] = {t.id: t.user_time + t.system_time for t in psutil.Process(server_pid).threads()}
    return out


def cpu_split(before: dict, after: dict, server_pid: int, seconds: float, requests: int) -> dict:
    """Cores used over `seconds` and CPU per request: server event loop, server's other threads
    (model instances, request log writer), load generator; what is left of the machine was idle."""
    def delta(tid):
        return after["threads"].get(tid, 0.0) - before["threads"].get(tid, 0.0)

    loop = delta(server_pid)
    other = sum(delta(tid) for tid in after["threads"] if tid != server_pid)
    client = after["client"] - before["client"]
    per = 1e6 / max(1, requests)
    return {"loop_cores": loop / seconds, "other_cores": other / seconds, "client_cores": client / seconds,
            "idle_cores": os.cpu_count() - (loop + other + client) / seconds,
            "loop_us": loop * per, "other_us": other * per, "client_us": client * per}


async def closed_loop(port: int, queries: list[str], concurrency: int, duration: float, k: int,
                      path: str = "/v1/search", make_body=None, server_pid: Optional[int] = None) -> dict:
    """`concurrency` keep-alive clients, each sending its next request when the last answer is read.

    With `server_pid` (a local server), the result has "cpu": `cpu_split` over the measured window.
    """
    import json

    make_body = make_body or (lambda q: {"query": q, "k": k})
    bodies = [json.dumps(make_body(q)).encode() for q in queries]
    requests = [
        b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(body), body)
        for body in bodies
    ]
    loop = asyncio.get_running_loop()
    warmup = min(2.0, duration / 4)
    warm_until = loop.time() + warmup
    stop_at = warm_until + duration
    latencies: list[float] = []
    failures: list[int] = []
    cpu: list[dict] = []
    loop.call_at(warm_until, lambda: cpu.append(_cpu_seconds(server_pid)))
    loop.call_at(stop_at, lambda: cpu.append(_cpu_seconds(server_pid)))
    await asyncio.gather(*[
        _client(port, requests, stop_at, warm_until, latencies, failures, offset=i * 7)
        for i in range(concurrency)
    ])
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "qps": len(latencies) / duration,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
        "ok": len(latencies),
        "failed": len(failures),
        **({"cpu": cpu_split(cpu[0], cpu[1], server_pid, duration, len(latencies) + len(failures))}
           if server_pid is not None and len(cpu) == 2 else {}),
    }


def run_client(coroutine):
    """Run a load-generator coroutine on the server's `auto` loop (uvloop when installed): less client
    CPU taken from the server."""
    from inference_server.api.app import event_loop_factory

    with asyncio.Runner(loop_factory=event_loop_factory("auto")) as runner:
        return runner.run(coroutine)


def http_phase(args, queries: list[str], *, batching: bool, max_batch_size: int, instances: int,
               workdir: Path, model: dict, concurrency: Optional[int] = None,
               command: Optional[list[str]] = None, catalog_size: Optional[int] = None) -> dict:
    from devstack.processes import running
    from devstack.components import start_inference_server

    overrides = {
        "server": {"request_timeout_ms": 30000},
        "model": {"num_threads": args.num_threads, **model},
        "catalog": {"num_products": catalog_size or args.catalog_size, "num_queries": 500, "cache_dir": args.cache_dir},
        "batching": {"enabled": batching, "max_batch_size": max_batch_size, "instances": instances,
                     "max_queue_delay_ms": args.max_queue_delay_ms, "max_queue_size": 4 * args.concurrency + 64},
        "request_log": {"enabled": True, "path": str(workdir / "requests.jsonl")},
        # Serve the `model:` section: with the model repository on, its version's model.yaml (torch,
        # dtype auto) would be served whatever backend is under test.
        "model_repository": {"enabled": False},
    }
    server = start_inference_server(workdir, overrides=overrides, timeout=600, command=command)
    with running(server):
        port = int(server.url.rsplit(":", 1)[1])
        return run_client(closed_loop(port, queries, concurrency or args.concurrency, args.duration, args.k,
                                      server_pid=server.proc.pid))


# (d)'s catalog: big enough for k results, so small that the top-k (part of (a)) costs next to nothing.
NULL_MODEL_CATALOG = 100


def http_path_alone(args, queries: list[str], *, max_batch_size: int, instances: int, workdir: Path) -> dict:
    """(d): (b) with a model that costs almost nothing (benchmarks/null_model_server.py) over a
    NULL_MODEL_CATALOG-product catalog: what is left is the HTTP path (HTTP, JSON, validation,
    routing, batching, metrics, request log) and the load generator."""
    return http_phase(args, queries, batching=True, max_batch_size=max_batch_size, instances=instances,
                      workdir=workdir, model={"parity_gate": False}, catalog_size=NULL_MODEL_CATALOG,
                      command=[sys.executable, str(REPO_ROOT / "benchmarks" / "null_model_server.py")])


def ceiling(a_qps: float, path: dict) -> float:
    """The most (b) can reach on this machine's cores when each request costs the model's CPU at (a)
    (cores / (a)) plus the HTTP path's and the load generator's as measured in (d), with no core ever
    idle: 1 / (1/(a) + (d)'s CPU per request / cores)."""
    cpu = path.get("cpu")
    if not cpu or a_qps <= 0:
        return float("nan")
    per_request_s = (cpu["loop_us"] + cpu["other_us"] + cpu["client_us"]) / 1e6
    return 1.0 / (1.0 / a_qps + per_request_s / os.cpu_count())


def _fmt(result: dict) -> str:
    line = (f"{result['qps']:8.1f} q/s   p50 {result['p50_ms']:7.1f} ms   p95 {result['p95_ms']:7.1f} ms   "
            f"p99 {result['p99_ms']:7.1f} ms   ({result['ok']} ok, {result['failed']} failed)")
    cpu = result.get("cpu")
    if cpu:
        line += (f"\n      CPU: server event loop {cpu['loop_cores']:.2f} cores ({cpu['loop_us']:.0f} us/request), "
                 f"server's other threads (model instances, request log) {cpu['other_cores']:.2f} "
                 f"({cpu['other_us']:.0f} us/request), load generator {cpu['client_cores']:.2f} "
                 f"({cpu['client_us']:.0f} us/request), idle {cpu['idle_cores']:.2f} of {os.cpu_count()}")
    return line


def run_backend(args, queries: list[str], model: dict, workdir: Path, path: Optional[dict] = None) -> dict:
    """(a), (b), (c) and the ratios for one backend; printed as they come."""
    (best_instances, best_size), best_qps, sweep, described, parity = in_process_sweep(args, queries, model)
    print(f"== backend {described} ({model})", flush=True)
    print(f"   parity: {parity.summary()}", flush=True)
    print("(a) in-process tokenise + encode + top-k:")
    for (instances, size), qps in sweep.items():
        best = "   <- best" if (instances, size) == (best_instances, best_size) else ""
        print(f"      instances {instances} x batch {size:3d}: {qps:8.1f} q/s{best}")
    # The server runs the in-process optimum's layout (batch 32 when the sweep could not tell);
    # (c) differs from (b) only in batching.
    server_batch = best_size if best_size > 1 else 32
    tag = described.replace("/", "-")
    batched = http_phase(args, queries, batching=True, max_batch_size=server_batch, instances=best_instances,
                         workdir=workdir / f"{tag}-batched", model=model)
    print(f"(b) HTTP /v1/search, batching on (max batch {server_batch}, {best_instances} instances): "
          f"{_fmt(batched)}", flush=True)
    single = http_phase(args, queries, batching=False, max_batch_size=1, instances=best_instances,
                        workdir=workdir / f"{tag}-single", model=model)
    print(f"(c) HTTP /v1/search, batching off (max batch 1, {best_instances} instances): {_fmt(single)}",
          flush=True)
    ratio_a = batched["qps"] / best_qps if best_qps else float("nan")
    ratio_c = batched["qps"] / single["qps"] if single["qps"] else float("inf")
    ok_a, ok_c = ratio_a >= TARGET_HTTP_VS_INPROCESS, ratio_c >= TARGET_BATCHING_GAIN
    print(f"(b)/(a) = {ratio_a:.2f}   target >= {TARGET_HTTP_VS_INPROCESS}: {'met' if ok_a else 'NOT met'}")
    print(f"(b)/(c) = {ratio_c:.2f}   target >= {TARGET_BATCHING_GAIN}: {'met' if ok_c else 'NOT met'}", flush=True)
    bound = ceiling(best_qps, path) if path is not None else float("nan")
    if path is not None:
        print(f"ceiling of (b) on these {os.cpu_count()} cores (model CPU as in (a) + HTTP path CPU as in (d), no core "
              f"idle): {bound:.1f} q/s = {bound / best_qps:.2f} of (a); (b) reached {batched['qps'] / bound:.2f} of it",
              flush=True)
    return {"backend": described, "a": best_qps, "b": batched, "c": single, "ratio_a": ratio_a, "ratio_c": ratio_c,
            "parity": parity, "ceiling": bound}


def main(argv=None) -> int:
    args = parse_args(argv)
    from inference_server.catalog import CatalogConfig, load_catalog

    bundle = load_catalog(CatalogConfig(num_products=args.catalog_size, num_queries=500))
    queries = [q.text for q in bundle.queries]
    models = [parse_backend(b) for b in args.backends.split(",") if b.strip()]
    print(f"machine: {os.cpu_count()} CPUs; catalog {args.catalog_size} products; {len(queries)} distinct queries; "
          f"concurrency {args.concurrency}; {args.duration:.0f} s per HTTP phase; backends {args.backends}",
          flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-serving-"))
    results = []
    try:
        from inference_server.models.backend import auto_cpu_instances

        instances = args.instances or auto_cpu_instances()
        path = http_path_alone(args, queries, max_batch_size=32, instances=instances, workdir=workdir / "null-model")
        print(f"(d) HTTP /v1/search with a model that costs nothing ({NULL_MODEL_CATALOG}-product catalog, max batch 32, "
              f"{instances} instances): {_fmt(path)}", flush=True)
        for model in models:
            results.append(run_backend(args, queries, model, workdir, path))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("\nsummary (one run, same machine):")
    first = results[0]["a"] if results else float("nan")
    for r in results:
        print(f"  {r['backend']:30s} (a) {r['a']:7.1f} q/s ({r['a'] / first:4.2f}x the first)   "
              f"(b) {r['b']['qps']:7.1f} q/s p99 {r['b']['p99_ms']:6.1f} ms   (c) {r['c']['qps']:7.1f} q/s   "
              f"(b)/(a) {r['ratio_a']:.2f}   (b)/(c) {r['ratio_c']:.2f}   ceiling/(a) {r['ceiling'] / r['a']:.2f}   "
              f"parity {'pass' if r['parity'].passed else 'FAIL'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
