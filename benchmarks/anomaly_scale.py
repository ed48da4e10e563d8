"""Scale of the anomaly runtime: 1,000 synthetic series x 7 days at 1-minute resolution.

    .venv/bin/python benchmarks/anomaly_scale.py [--series 1000] [--detector ensemble] [--workers 2]

Runs the runtime's own per-job pass (``exporter.anomaly.job.JobState.run_pass``) on in-memory data,
as the exporter does after a query: one full cycle (fit every series on 7 days, score the newest
point), then steady-state cycles (one new point per series, no refit). Series have a daily cycle,
trend and noise; 5% get an anomaly injected at the newest point of the steady-state cycle, so the
benchmark also prints how many were flagged (score > 1) and how many clean series were.
Prints seconds per cycle, series/s and peak memory (RSS).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from exporter.anomaly.config import JobConfig  # noqa: E402
from exporter.anomaly.detectors import DEFAULT_DETECTOR, DETECTORS  # noqa: E402
from exporter.anomaly.job import JobState  # noqa: E402
from exporter.anomaly.reader import RangeSeries  # noqa: E402

STEP = 60.0
DAY = 1440


def synthetic(n_series: int, n_points: int, seed: int = 0) -> np.ndarray:
    """Rows: level * (1 + daily cycle) + trend + noise, with random shapes per series."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_points)
    level = rng.uniform(10, 1000, (n_series, 1))
    amp = rng.uniform(0.1, 0.6, (n_series, 1))
    phase = rng.uniform(0, 2 * np.pi, (n_series, 1))
    trend = rng.normal(0, 0.1, (n_series, 1)) * level / n_points
    noise = rng.uniform(0.01, 0.05, (n_series, 1)) * level
    daily = np.sin(2 * np.pi * t / DAY + phase) + 0.3 * np.sin(4 * np.pi * t / DAY + 2 * phase)
    x = level * (1 + amp * daily) + trend * t + noise * rng.standard_normal((n_series, n_points))
    # A few historical anomalies so fits see realistic contamination.
    for i in rng.choice(n_series, n_series // 10, replace=False):
        j = rng.integers(n_points // 2, n_points - 100)
        x[i, j:j + rng.integers(1, 30)] += rng.choice([-1, 1]) * 8 * noise[i, 0]
    return x


def rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=float, default=7.0)
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, choices=sorted(DETECTORS))
    parser.add_argument("--workers", type=int, default=2, help="fit threads (the runtime's fit_workers)")
    parser.add_argument("--steady-cycles", type=int, default=5)
    args = parser.parse_args(argv)

    n_points = int(args.days * DAY)
    steady = args.steady_cycles
    total = synthetic(args.series, n_points + steady)
    rng = np.random.default_rng(1)
    anomalous = rng.choice(args.series, max(1, args.series // 20), replace=False)
    noise_scale = np.std(np.diff(total, axis=1), axis=1) / np.sqrt(2)
    total[anomalous, -1] += rng.choice([-1, 1], anomalous.size) * 10 * noise_scale[anomalous]
    labels = [{"series": f"s{i:04d}"} for i in range(args.series)]
    cfg = JobConfig(name="scale", query="synthetic", detector=args.detector, step=STEP,
                    fit_window=n_points * STEP, fit_every=3600.0, infer_every=STEP,
                    max_series=args.series)
    state = JobState(cfg)
    ts_all = np.arange(n_points + steady) * STEP
    base_rss = rss_mib()

    def answer(lo: int, hi: int) -> list[RangeSeries]:
        return [RangeSeries(labels[i], ts_all[lo:hi], total[i, lo:hi]) for i in range(args.series)]

    with ThreadPoolExecutor(args.workers) as pool:
        print(f"{args.series} series x {n_points} points, detector={args.detector}, "
              f"workers={args.workers}")
        t0 = time.perf_counter()
        out = state.run_pass(answer(0, n_points), now=0.0, executor=pool, workers=args.workers)
        full = time.perf_counter() - t0
        peak_full = rss_mib()
        times = []
        for k in tqdm(range(1, steady + 1), desc="steady-state cycles", unit="cycle"):
            t0 = time.perf_counter()
            state.run_pass(answer(n_points + k - 3, n_points + k), now=k * STEP, executor=pool,
                           workers=args.workers)
            times.append(time.perf_counter() - t0)
    results = {tuple(r[0].items()): r[1] for r in state.current_results()}
    flagged = {int(dict(k)["series"][1:]) for k, r in results.items() if r.score > 1}
    tp = len(flagged & set(anomalous.tolist()))
    fp = len(flagged - set(anomalous.tolist()))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"full cycle (fit + score): {full:.1f} s  ({args.series / full:.0f} series/s; "
          f"{out.fitted} fits, {out.fit_errors} fit errors)")
    print(f"steady-state cycle (score only): median {np.median(times):.2f} s, max {max(times):.2f} s "
          f"({args.series / np.median(times):.0f} series/s)")
    print(f"injected anomalies flagged: {tp}/{anomalous.size}; clean series flagged: {fp}/"
          f"{args.series - anomalous.size}")
    print(f"memory: peak RSS {peak:.0f} MiB (data + state; {base_rss:.0f} MiB before the first "
          f"cycle, {peak_full:.0f} MiB after it)")
    print("targets: full cycle <= 60 s, steady-state cycle < 5 s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
