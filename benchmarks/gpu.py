#!/usr/bin/env python3
"""GPU benchmark (one script, unattended, a few minutes): TensorRT vs torch eager, HTTP, NVML.

On a machine with an NVIDIA GPU (and `pip install '.[gpu]'` for TensorRT), prints in one run:
  1. parity gate figures of every GPU backend/precision (models/parity.py; refused ones say why);
  2. in-process encode throughput and p99 per call at batch 1/8/64/256 for torch eager fp16 and
     bf16 and TensorRT (fp16), pre-tokenised (the server tokenises once per window);
     TensorRT / torch-eager-fp16 at batch 64 (target >= 3);
  3. HTTP /v1/search closed loop at concurrency 32 and 256 against a server on the best GPU
     backend, with (a) the in-process tokenise + encode + top-k limit of the same layout and
     (b)/(a) (target >= 0.85);
  4. the exporter's scrape cost: NVML (pynvml) queries vs one `nvidia-smi --query-gpu` call.
Each section prints its own error and the script goes on, so one failure does not lose the rest.
Without a GPU it says so and exits 0 (nothing to measure).

    python benchmarks/gpu.py [--seconds 3] [--http-duration 15]
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

BATCHES = (1, 8, 64, 256)
TARGET_TRT_SPEEDUP = 3.0
TARGET_HTTP = 0.85


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=3.0, help="seconds timed per backend and batch size")
    p.add_argument("--http-duration", type=float, default=15.0, help="seconds per HTTP concurrency level")
    p.add_argument("--catalog-size", type=int, default=5000)
    p.add_argument("--cache-dir", default=str(REPO_ROOT / "var" / "cache" / "models"))
    return p.parse_args(argv)


def section(title):
    def wrap(fn):
        def run(*a, **kw):
            print(f"\n== {title}", flush=True)
            started = time.perf_counter()
            try:
                return fn(*a, **kw)
            except Exception:  # noqa: BLE001 - report and go on
                print(f"   FAILED:\n{traceback.format_exc()}", flush=True)
                return None
            finally:
                print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)
        return run
    return wrap


def specs(cache_dir):
    from inference_server.models.backend import ModelSpec

    common = dict(device="cuda", cache_dir=cache_dir, engine_max_batch_size=256, engine_opt_batch_size=64)
    return {
        "torch-eager-fp16": ModelSpec(backend="torch", dtype="float16", **common),
        "torch-eager-bf16": ModelSpec(backend="torch", dtype="bfloat16", **common),
        "tensorrt-fp16": ModelSpec(backend="tensorrt", dtype="float16", **common),
    }


@section("1. parity gate (cosine >= 0.999 to fp32 on the golden set, NDCG@10 within 0.002)")
def parity(backends):
    from inference_server.models.parity import run_gate

    for name, backend in backends.items():
        report = run_gate(backend)
        print(f"   {name:18s} {report.summary()} {'; '.join(report.reasons)}", flush=True)


def time_batches(backend, texts, seconds):
    import numpy as np

    out = {}
    for size in BATCHES:
        batch = [texts[i % len(texts)] for i in range(size)]
        tokens = backend.tokenize(batch)
        for _ in range(3):
            backend.encode_tokens(tokens)
        latencies = []
        until = time.perf_counter() + seconds
        while time.perf_counter() < until:
            began = time.perf_counter()
            backend.encode_tokens(tokens)
            latencies.append(time.perf_counter() - began)
        lat = np.asarray(latencies)
        out[size] = (size * len(lat) / lat.sum(), float(np.percentile(lat, 99)) * 1000)
    return out


@section("2. in-process encode, pre-tokenised: q/s and p99 per call")
def throughput(backends, texts, seconds):
    results = {}
    for name, backend in backends.items():
        results[name] = time_batches(backend, texts, seconds)
        row = "   ".join(f"b{size}: {qps:9.0f} q/s p99 {p99:6.2f} ms" for size, (qps, p99) in results[name].items())
        print(f"   {name:18s} {row}", flush=True)
    if "tensorrt-fp16" in results and "torch-eager-fp16" in results:
        ratio = results["tensorrt-fp16"][64][0] / results["torch-eager-fp16"][64][0]
        print(f"   TensorRT / torch eager fp16 at batch 64 = {ratio:.2f}   target >= {TARGET_TRT_SPEEDUP}: "
              f"{'met' if ratio >= TARGET_TRT_SPEEDUP else 'NOT met'}")
    return results


@section("3. HTTP /v1/search closed loop vs the in-process limit")
def http(best_name, spec, args, queries):
    from benchmarks.serving import closed_loop, run_client
    from devstack.components import start_inference_server
    from devstack.processes import running
    from inference_server.catalog import CatalogConfig, VectorIndex, load_catalog
    from inference_server.models.registry import create_backend

    backend = create_backend(spec)
    bundle = load_catalog(CatalogConfig(num_products=args.catalog_size, num_queries=500))
    index = VectorIndex.build(bundle.catalog, backend, str(REPO_ROOT / "var" / "cache" / "embeddings"))
    limit = {}
    for size in (64, 256):
        batch = [queries[i % len(queries)] for i in range(size)]
        done, until = 0, time.perf_counter() + args.seconds
        started = time.perf_counter()
        while time.perf_counter() < until:
            tokens = backend.tokenize(batch)
            index.search(backend.encode_tokens(tokens), 10)
            done += size
        limit[size] = done / (time.perf_counter() - started)
    backend.close()
    best_size = max(limit, key=limit.get)
    print(f"   (a) in-process tokenise + encode + top-k, {best_name}: " +
          ", ".join(f"batch {s}: {q:.0f} q/s" for s, q in limit.items()), flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    try:
        overrides = {
            "server": {"request_timeout_ms": 30000},
            "model": {"backend": spec.backend, "device": "cuda", "dtype": spec.dtype, "num_threads": None,
                      "cache_dir": spec.cache_dir},
            "catalog": {"num_products": args.catalog_size, "num_queries": 500,
                        "cache_dir": str(REPO_ROOT / "var" / "cache" / "embeddings")},
            "batching": {"enabled": True, "max_batch_size": best_size, "instances": 1, "max_queue_delay_ms": 2.0,
                         "max_queue_size": 8192},
            "request_log": {"enabled": True, "path": str(workdir / "requests.jsonl")},
            "model_repository": {"enabled": False},   # serve `model:` (the repository's version is torch)
        }
        server = start_inference_server(workdir, overrides=overrides, timeout=600)
        with running(server):
            port = int(server.url.rsplit(":", 1)[1])
            for concurrency in (32, 256):
                r = run_client(closed_loop(port, queries, concurrency, args.http_duration, 10))
                ratio = r["qps"] / limit[best_size]
                print(f"   (b) c={concurrency:3d}: {r['qps']:8.1f} q/s p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms "
                      f"({r['failed']} failed)   (b)/(a) = {ratio:.2f} target >= {TARGET_HTTP}: "
                      f"{'met' if ratio >= TARGET_HTTP else 'NOT met'}", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


@section("4. exporter scrape: NVML vs nvidia-smi")
def scrape(repeats=20):
    import pynvml

    pynvml.nvmlInit()
    handle = pynvml.nvmlDeviceGetHandleByIndex(0)
    started = time.perf_counter()
    for _ in range(repeats):
        pynvml.nvmlDeviceGetUtilizationRates(handle)
        pynvml.nvmlDeviceGetMemoryInfo(handle)
        pynvml.nvmlDeviceGetPowerUsage(handle)
        pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)
        pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM)
    nvml_ms = (time.perf_counter() - started) / repeats * 1000
    pynvml.nvmlShutdown()
    smi = shutil.which("nvidia-smi")
    if smi is None:
        print(f"   NVML {nvml_ms:.3f} ms per scrape; nvidia-smi not found")
        return
    query = "utilization.gpu,memory.used,memory.total,power.draw,temperature.gpu,clocks.sm"
    started = time.perf_counter()
    for _ in range(max(3, repeats // 4)):
        subprocess.run([smi, f"--query-gpu={query}", "--format=csv,noheader,nounits"], check=True,
                       capture_output=True)
    smi_ms = (time.perf_counter() - started) / max(3, repeats // 4) * 1000
    print(f"   NVML {nvml_ms:.3f} ms per scrape   nvidia-smi {smi_ms:.1f} ms per scrape   "
          f"({smi_ms / nvml_ms:.0f}x)")


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        print(f"no CUDA GPU visible to torch {torch.__version__} (CUDA {torch.version.cuda}); nothing to measure")
        return 0
    from inference_server.catalog import CatalogConfig, load_catalog
    from inference_server.models.backend import BackendUnavailable
    from inference_server.models.registry import create_backend

    print(f"GPU: {torch.cuda.get_device_name()}; torch {torch.__version__}", flush=True)
    queries = [q.text for q in load_catalog(CatalogConfig(num_products=args.catalog_size, num_queries=500)).queries]
    backends = {}
    for name, spec in specs(args.cache_dir).items():
        started = time.perf_counter()
        try:
            backends[name] = create_backend(spec)
            extra = backends[name].describe().get("engine", "")
            print(f"loaded {name} in {time.perf_counter() - started:.1f} s {extra}", flush=True)
        except BackendUnavailable as exc:
            print(f"{name}: unavailable: {exc}", flush=True)
    parity(backends)
    results = throughput(backends, queries, args.seconds) or {}
    for backend in backends.values():
        backend.close()
    candidates = [n for n in ("tensorrt-fp16", "torch-eager-bf16", "torch-eager-fp16") if n in results]
    if candidates:
        best = max(candidates, key=lambda n: results[n][64][0])
        http(best, specs(args.cache_dir)[best], args, queries)
    scrape()
    return 0


if __name__ == "__main__":
    sys.exit(main())
