#!/usr/bin/env python3
"""Peer benchmark: our /v1/search against infinity-emb's /embeddings, same weights, same client.

The peer a user would pick for serving this model is infinity-emb (PyPI `infinity-emb[server,torch]`,
pinned to PEER_VERSION). It is installed at run time into its own virtualenv under var/ (ignored by
git; reused when the pinned version is already there), started on 127.0.0.1 with the torch engine,
batch size 32 and the bundled all-MiniLM-L6-v2 weights, measured, and stopped. Our server runs its
default backend (the shipped config) with the same catalog as benchmarks/serving.py.

The load is the closed-loop keep-alive client of benchmarks/serving.py: N clients, each sending
one query per request (ours: {"query", "k"} -> top-k products; the peer: {"input": [query]} -> one
embedding). Only one server runs at a time. Prints q/s and p50/p99 for both at each concurrency,
then ours / peer (target >= 1.5 at 32 and 128).

    python benchmarks/peer.py [--concurrency 32,128] [--duration 20]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from benchmarks.serving import closed_loop, run_client  # noqa: E402

PEER_PACKAGE = "infinity-emb[server,torch]"
PEER_VERSION = "0.0.78"
TARGET_RATIO = 1.5


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", default="32,128", help="comma-separated client counts (default 32,128)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds measured per server and concurrency")
    parser.add_argument("--catalog-size", type=int, default=5000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--peer-batch-size", type=int, default=32)
    parser.add_argument("--peer-venv", default=str(REPO_ROOT / "var" / "peer-venv"))
    parser.add_argument("--backend", default=None, help="our model.backend (default: the shipped config's)")
    parser.add_argument("--dtype", default=None, help="our model.dtype (default: the shipped config's)")
    parser.add_argument("--max-batch-size", type=int, default=32, help="our batching.max_batch_size")
    parser.add_argument("--instances", type=int, default=None, help="our batching.instances (default: auto)")
    parser.add_argument("--cache-dir", default=str(REPO_ROOT / "var" / "cache" / "embeddings"))
    return parser.parse_args(argv)


def ensure_peer(venv: Path) -> Path:
    """The peer's python, installing the pinned version into `venv` when it is not there yet."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", f"import infinity_emb, sys; sys.exit(infinity_emb.__version__ != '{PEER_VERSION}')"]
    if python.is_file() and subprocess.run(check, capture_output=True).returncode == 0:
        return python
    print(f"installing {PEER_PACKAGE}=={PEER_VERSION} into {venv} (one time)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    import torch

    # The same CPU torch as ours (an unpinned install would pull CUDA wheels).
    torch_pin = f"torch=={torch.__version__.split('+')[0]}"
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", torch_pin,
                             f"{PEER_PACKAGE}=={PEER_VERSION}"], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"pip install failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return python


def start_peer(python: Path, workdir: Path, batch_size: int):
    from devstack.processes import ManagedProcess, free_port, spawn, wait_http
    from inference_server.models.backend import ModelSpec, resolve_weights_dir

    port = free_port()
    weights = resolve_weights_dir(ModelSpec())
    cli = python.parent / "infinity_emb"
    argv = [str(cli), "v2", "--model-id", str(weights), "--served-model-name", "minilm", "--engine", "torch",
            "--device", "cpu", "--batch-size", str(batch_size), "--host", "127.0.0.1", "--port", str(port),
            "--no-bettertransformer"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "INFINITY_ANONYMOUS_USAGE_STATS": "0",
           "DO_NOT_TRACK": "1", "PYTHONUNBUFFERED": "1"}
    proc = spawn(argv, workdir / "peer.log", cwd=workdir, env=env)
    peer = ManagedProcess(proc=proc, url=f"http://127.0.0.1:{port}", workdir=workdir, log_path=workdir / "peer.log",
                          name="infinity-emb")
    try:
        wait_http(f"{peer.url}/health", timeout=300, child=peer)
    except BaseException:
        peer.stop()
        raise
    return peer


def start_ours(args, workdir: Path):
    from devstack.components import start_inference_server

    model: dict = {"num_threads": None}
    if args.backend:
        model["backend"] = args.backend
    if args.dtype:
        model["dtype"] = args.dtype
    overrides = {
        "server": {"request_timeout_ms": 30000},
        "model": model,
        "catalog": {"num_products": args.catalog_size, "num_queries": 500, "cache_dir": args.cache_dir},
        "batching": {"enabled": True, "max_batch_size": args.max_batch_size, "instances": args.instances,
                     "max_queue_delay_ms": 2.0, "max_queue_size": 4096},
        "request_log": {"enabled": True, "path": str(workdir / "requests.jsonl")},
    }
    return start_inference_server(workdir, overrides=overrides, timeout=900)


def _fmt(r: dict) -> str:
    return (f"{r['qps']:8.1f} q/s   p50 {r['p50_ms']:7.1f} ms   p99 {r['p99_ms']:7.1f} ms   "
            f"({r['ok']} ok, {r['failed']} failed)")


def main(argv=None) -> int:
    args = parse_args(argv)
    from devstack.processes import running
    from inference_server.catalog import CatalogConfig, load_catalog

    levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    queries = [q.text for q in load_catalog(CatalogConfig(num_products=args.catalog_size, num_queries=500)).queries]
    workdir = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    print(f"machine: {os.cpu_count()} CPUs; {len(queries)} distinct queries; {args.duration:.0f} s per run; "
          f"concurrency {levels}", flush=True)
    ours: dict[int, dict] = {}
    server = start_ours(args, workdir / "ours")
    with running(server):
        port = int(server.url.rsplit(":", 1)[1])
        from devstack.processes import http_json

        model = http_json(f"{server.url}/v1/models")["models"][0]
        print(f"ours: /v1/search, backend {model['backend']}/{model['dtype']}, batching "
              f"{model['batching']['max_batch_size']}", flush=True)
        for c in levels:
            ours[c] = run_client(closed_loop(port, queries, c, args.duration, args.k))
            print(f"  ours  c={c:4d}: {_fmt(ours[c])}", flush=True)
    try:
        python = ensure_peer(Path(args.peer_venv))
    except Exception as exc:  # noqa: BLE001 - report what we could measure
        print(f"peer NOT measured: cannot install {PEER_PACKAGE}=={PEER_VERSION}: {exc}")
        return 1
    peer_results: dict[int, dict] = {}
    peer = start_peer(python, workdir / "peer", args.peer_batch_size)
    with running(peer):
        port = int(peer.url.rsplit(":", 1)[1])
        print(f"peer: infinity-emb {PEER_VERSION} /embeddings, torch engine, batch {args.peer_batch_size}", flush=True)
        for c in levels:
            peer_results[c] = run_client(closed_loop(port, queries, c, args.duration, args.k, path="/embeddings",
                                                      make_body=lambda q: {"model": "minilm", "input": [q]}))
            print(f"  peer  c={c:4d}: {_fmt(peer_results[c])}", flush=True)
    print("\nours / peer (one run, same machine, same client):")
    for c in levels:
        ratio = ours[c]["qps"] / peer_results[c]["qps"] if peer_results[c]["qps"] else float("inf")
        print(f"  concurrency {c:4d}: {ours[c]['qps']:7.1f} / {peer_results[c]['qps']:7.1f} = {ratio:.2f}   "
              f"target >= {TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
