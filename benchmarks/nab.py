"""Stream every NAB file through the anomaly detectors (online), write NAB-format results, score them.

    .venv/bin/python benchmarks/nab.py --data ../shared/data/nab --out /tmp/nab-results

Each detector sees a file point by point in chunks: it is refitted every ``fit_every`` points on the
last ``fit_window`` points before the chunk and then scores the chunk, so the score at t uses only
values up to t. Detector scores (>= 0, > 1 anomalous) are mapped to NAB's [0, 1] with the monotone
transform ``score / (1 + score)`` (1 maps to 0.5). Results are scored with
``exporter.anomaly.nab_scorer`` (NAB's published rules) under three protocols, printed together:

* leave-one-category-out (standard profile): for each NAB category the threshold is optimised on
  the other categories and the held-out category is scored with it; printed per category, as their
  mean, and pooled (all held-out raw scores summed, normalised on the whole corpus);
* production threshold (standard profile): the detections are the points the exporter alerts on,
  ``anomaly_score > 1`` (NAB score > 0.5); no threshold is chosen at all;
* optimised threshold: NAB's own protocol (one threshold per profile optimised on the corpus).

NAB's published detectors found under ``<data>/reference_results/<detector>/`` are scored the same
way from their files (they have no production threshold).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from exporter.anomaly.nab_scorer import (  # noqa: E402
    PROFILE_NAMES, HeldOut, ProfileResult, category, leave_one_category_out, load_profiles,
    load_windows, optimise_profile, probation_length, read_results_dir, score_at_threshold,
    sweep_corpus,
)
from exporter.anomaly.detectors import DETECTORS, build_detector  # noqa: E402
from exporter.anomaly.streaming import stream  # noqa: E402

# Streaming schedule per detector, in points (NAB files have 1k-16k points at 5-60 min steps).
SCHEDULES: dict[str, dict] = {
    "ensemble": {"fit_every": 100, "fit_window": 20000, "params": {}},
    "robust_zscore": {"fit_every": 10, "fit_window": 5000, "params": {"period": "auto"}},
    "stl": {"fit_every": 100, "fit_window": 3000, "params": {}},
    "holt_winters": {"fit_every": 250, "fit_window": 1500, "params": {}},
}


def to_nab_score(score: np.ndarray) -> np.ndarray:
    """The documented monotone map from [0, inf) to [0, 1): s / (1 + s)."""
    s = np.clip(np.nan_to_num(np.asarray(score, dtype=float), nan=0.0, posinf=1e12), 0.0, None)
    return s / (1.0 + s)


PRODUCTION_THRESHOLD = float(np.nextafter(0.5, 1.0))  # anomaly_score > 1 <=> NAB score > 0.5


@dataclass
class Protocols:
    """One detector's results under the three protocols."""

    optimised: dict[str, ProfileResult]  # per profile
    held_out: HeldOut  # leave-one-category-out, standard profile
    production: ProfileResult | None  # standard profile at anomaly_score > 1 (None: not ours)
    production_by_category: dict[str, ProfileResult]


def evaluate(results: dict, nab_dir: Path, production: bool = True) -> Protocols:
    windows = load_windows(nab_dir / "labels" / "combined_windows.json")
    profiles = load_profiles(nab_dir / "profiles.json")
    sweeps = sweep_corpus(results, windows)
    std = profiles["standard"]
    by_cat = {}
    if production:
        for cat in sorted({category(k) for k in sweeps}):
            by_cat[cat] = score_at_threshold([s for k, s in sweeps.items() if category(k) == cat],
                                             std, PRODUCTION_THRESHOLD)
    return Protocols(
        optimised={name: optimise_profile(list(sweeps.values()), prof) for name, prof in profiles.items()},
        held_out=leave_one_category_out(sweeps, std),
        production=score_at_threshold(list(sweeps.values()), std, PRODUCTION_THRESHOLD) if production else None,
        production_by_category=by_cat,
    )


def _fmt(x: float, width: int) -> str:
    return f"{'-':>{width}}" if x is None or math.isnan(x) else f"{x:>{width}.1f}"


def report(rows: list[tuple[str, Protocols, float | None]], n_files: int) -> None:
    """Print the three protocols for every detector (ours, then NAB's references)."""
    print(f"\nNAB, {n_files} files; standard profile unless named. LOCO = leave-one-category-out.")
    header = (f"{'detector':<24}{'LOCO pooled':>12}{'LOCO mean':>10}{'production':>11}{'prod FP':>8}"
              + "".join(f"{'opt ' + p:>23}" for p in PROFILE_NAMES) + f"{'opt thr':>9}{'seconds':>9}")
    print(header)
    for name, pr, seconds in rows:
        prod = pr.production
        print(f"{name:<24}{_fmt(pr.held_out.pooled.normalized, 12)}{_fmt(pr.held_out.category_mean, 10)}"
              f"{_fmt(prod.normalized if prod else None, 11)}{(prod.fp if prod else '-'):>8}"
              + "".join(_fmt(pr.optimised[p].normalized, 23) for p in PROFILE_NAMES)
              + f"{pr.optimised['standard'].threshold:>9.4f}"
              + (f"{seconds:>9.0f}" if seconds is not None else f"{'(ref)':>9}"))
    cats = sorted(rows[0][1].held_out.categories) if rows else []
    print("\nPer category (standard): LOCO score [its threshold] TP/FP/FN | production score TP/FP/FN")
    for name, pr, _ in rows:
        print(f"{name}:")
        for cat in cats:
            r = pr.held_out.categories[cat]
            line = (f"  {cat:<24}LOCO {_fmt(r.normalized, 6)} [{r.threshold:.4f}] "
                    f"{r.tp:>4}/{r.fp:>4}/{r.fn:>3}")
            if cat in pr.production_by_category:
                q = pr.production_by_category[cat]
                line += f"  | production {_fmt(q.normalized, 6)} {q.tp:>4}/{q.fp:>4}/{q.fn:>3}"
            print(line)
    print("Normalised scores are undefined ('-') for a category without windows (artificialNoAnomaly);"
          " its false positives still count in the pooled LOCO score. LOCO mean = mean over the"
          " categories with windows. TP/FP = detections (points), FN = missed windows.")


def run_file(args: tuple[str, Path, Path, Path, dict]) -> str:
    detector_name, data_dir, rel, out_dir, overrides = args
    warnings.filterwarnings("ignore")
    sched = SCHEDULES[detector_name]
    frame = pd.read_csv(data_dir / rel)
    values = frame["value"].to_numpy(dtype=float)
    detector = build_detector(detector_name, {**sched["params"], **overrides})
    # Warm-up: detectors first fit once half of the (unscored) probationary period has been seen.
    min_fit = max(probation_length(len(values)) // 2, 20)
    out = stream(detector, values, fit_every=sched["fit_every"], fit_window=sched["fit_window"],
                 min_fit=min_fit)
    target = out_dir / detector_name / rel.parent / f"{detector_name}_{rel.name}"
    target.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"timestamp": frame["timestamp"], "value": frame["value"],
                  "anomaly_score": to_nab_score(out.score), "label": 0}).to_csv(target, index=False)
    return str(rel)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "nab",
                        help="NAB directory with data/, labels/, profiles.json (default: ../shared/data/nab)")
    parser.add_argument("--detectors", nargs="+", default=list(SCHEDULES), choices=sorted(DETECTORS),
                        help="detectors to run (default: all)")
    parser.add_argument("--out", type=Path, default=Path("nab-results"),
                        help="where to write <detector>/<category>/<detector>_<file>.csv")
    parser.add_argument("--processes", type=int, default=1,
                        help="worker processes (default 1: the machine is shared)")
    parser.add_argument("--score-only", action="store_true", help="only score existing results")
    parser.add_argument("--params", type=json.loads, default={},
                        help='JSON detector parameters overriding the defaults, e.g. \'{"holdoff": 300}\'')
    args = parser.parse_args(argv)
    files = sorted(p.relative_to(args.data / "data") for p in (args.data / "data").glob("*/*.csv"))
    if not files:
        parser.error(f"no NAB csv files under {args.data / 'data'}")
    rows = []
    for name in args.detectors:
        t0 = time.perf_counter()
        if not args.score_only:
            jobs = [(name, args.data / "data", rel, args.out, args.params) for rel in files]
            with tqdm(total=len(jobs), desc=name, unit="file") as bar:
                if args.processes > 1:
                    with multiprocessing.Pool(args.processes) as pool:
                        for _ in pool.imap_unordered(run_file, jobs):
                            bar.update()
                else:
                    for job in jobs:
                        run_file(job)
                        bar.update()
        seconds = time.perf_counter() - t0
        rows.append((name, evaluate(read_results_dir(args.out / name, name), args.data), seconds))
    ref_root = args.data / "reference_results"
    for ref_dir in sorted(p for p in ref_root.glob("*") if p.is_dir()) if ref_root.is_dir() else []:
        rows.append((f"ref: {ref_dir.name}",
                     evaluate(read_results_dir(ref_dir, ref_dir.name), args.data, production=False), None))
    report(rows, len(files))
    return 0


if __name__ == "__main__":
    sys.exit(main())
