"""Scrape latency of the exporter's /metrics over HTTP.

1. With the fake NVML (devstack/fake_nvml.py) and N GPUs: median and p95 of a full scrape that
   makes a fresh NVML pass each time (max_age 0), i.e. the exporter's own overhead.
2. When an NVIDIA GPU and nvidia-smi are present: the same with the real NVML, against the wall time
   of `nvidia-smi --query-gpu=... --format=csv` (what nvidia-smi-based exporters pay per scrape),
   printed as a ratio (target: the exporter at least 10x faster).

    .venv/bin/python benchmarks/exporter_scrape.py --gpus 8 --scrapes 200
"""
from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from tqdm import tqdm

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from exporter.app import create_app  # noqa: E402
from exporter.config import ExporterConfig, parse_config  # noqa: E402

SMI_QUERY = (
    "index,uuid,name,utilization.gpu,utilization.memory,memory.total,memory.used,memory.free,"
    "temperature.gpu,power.draw,power.limit,clocks.sm,clocks.mem,pstate,ecc.errors.corrected.aggregate.total"
)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


async def scrape_times(nvml_module: Any, scrapes: int, label: str, nvml_config: dict) -> list[float]:
    """Run the app on a free port and time `scrapes` sequential GETs of /metrics (seconds)."""
    config: ExporterConfig = parse_config({"nvml": {"max_age_seconds": 0, **nvml_config}})
    app = create_app(config, nvml_module=nvml_module)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/metrics"
    times: list[float] = []
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(3):  # warm-up: NVML init, identity cache, connection
                async with session.get(url) as resp:
                    await resp.read()
            for _ in tqdm(range(scrapes), desc=label, unit="scrape"):
                start = time.perf_counter()
                async with session.get(url) as resp:
                    body = await resp.read()
                times.append(time.perf_counter() - start)
                assert resp.status == 200 and body
    finally:
        await runner.cleanup()
    return times


def nvidia_smi_times(runs: int) -> list[float]:
    times = []
    for _ in tqdm(range(runs), desc="nvidia-smi", unit="run"):
        start = time.perf_counter()
        subprocess.run(["nvidia-smi", f"--query-gpu={SMI_QUERY}", "--format=csv"], capture_output=True, check=True, timeout=60)
        times.append(time.perf_counter() - start)
    return times


def real_nvml_reason() -> str | None:
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi not on PATH"
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception as exc:  # noqa: BLE001
        return f"NVML unavailable: {exc}"
    return None


def report(label: str, times: list[float]) -> float:
    median = statistics.median(times)
    print(f"{label}: median {median * 1e3:.2f} ms, p95 {percentile(times, 0.95) * 1e3:.2f} ms over {len(times)} scrapes")
    return median


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus", type=int, default=8, help="GPUs in the fake NVML (default 8)")
    parser.add_argument("--scrapes", type=int, default=200, help="timed scrapes per configuration (default 200)")
    parser.add_argument("--smi-runs", type=int, default=20, help="nvidia-smi invocations to time on a GPU machine (default 20)")
    parser.add_argument("--skip-real", action="store_true", help="do not benchmark the real NVML even when present")
    args = parser.parse_args(argv)
    if args.gpus < 1 or args.scrapes < 1:
        parser.error("--gpus and --scrapes must be >= 1")

    from devstack.fake_nvml import FakeGPU, FakeNVML, FakeProcess

    print("figures measured under contention unless re-run on a quiet machine")
    fake = FakeNVML([FakeGPU(processes=[FakeProcess(1000 + i, 2**30)]) for i in range(args.gpus)])
    times = asyncio.run(scrape_times(fake, args.scrapes, f"fake NVML, {args.gpus} GPUs", {"process_memory": True}))
    report(f"exporter /metrics, fake NVML, {args.gpus} GPUs (all opt-ins but PCIe on)", times)

    reason = "--skip-real given" if args.skip_real else real_nvml_reason()
    if reason is not None:
        print(f"real GPU comparison skipped: {reason}")
        return 0
    real = asyncio.run(scrape_times(None, args.scrapes, "real NVML", {}))
    exporter_median = report("exporter /metrics, real NVML", real)
    smi = nvidia_smi_times(args.smi_runs)
    smi_median = statistics.median(smi)
    print(f"nvidia-smi --query-gpu=... --format=csv: median {smi_median * 1e3:.2f} ms, p95 {percentile(smi, 0.95) * 1e3:.2f} ms over {len(smi)} runs")
    ratio = smi_median / exporter_median
    print(f"ratio nvidia-smi / exporter scrape: {ratio:.1f}x ({'meets' if ratio >= 10 else 'misses'} the 10x target)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
