"""Stream every NAB file through the anomaly detectors (online), write NAB-format results, score them.

    .venv/bin/python benchmarks/nab.py --data ../shared/data/nab --out /tmp/nab-results

Each detector sees a file point by point in chunks: it is refitted every ``fit_every`` points on the
last ``fit_window`` points before the chunk and then scores the chunk, so the score at t uses only
values up to t. Detector scores (>= 0, > 1 anomalous) are mapped to NAB's [0, 1] with the monotone
transform ``score / (1 + score)`` (1 maps to 0.5). Results are scored with ``benchmarks.nab_scorer``
(NAB's published rules) and printed beside the reference figures.

To estimate generalisation, the corpus is also scored as two fixed halves (``split_halves``: within
each category, files sorted by the MD5 of their name alternate A, B; thresholds are optimised and
scores normalised within each half). Tune on half A, read half B.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.nab_scorer import (  # noqa: E402
    PROFILE_NAMES, REFERENCE_SCORES, load_profiles, load_windows, probation_length, read_results_dir,
    score_corpus,
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


def split_halves(keys: list[str]) -> dict[str, str]:
    """Fixed A/B split mixing categories: per category, files ordered by MD5 of the name alternate."""
    halves: dict[str, str] = {}
    for category in sorted({k.split("/")[0] for k in keys}):
        members = sorted((k for k in keys if k.split("/")[0] == category),
                         key=lambda k: hashlib.md5(k.split("/")[-1].encode()).hexdigest())
        for i, key in enumerate(members):
            halves[key] = "AB"[i % 2]
    return halves


def score_with_halves(results: dict, nab_dir: Path) -> dict[str, dict]:
    """Profile results on the whole corpus ("all") and on each half ("A", "B")."""
    windows = load_windows(nab_dir / "labels" / "combined_windows.json")
    profiles = load_profiles(nab_dir / "profiles.json")
    halves = split_halves(sorted(results))
    out = {"all": score_corpus(results, windows, profiles)}
    for half in "AB":
        part = {k: v for k, v in results.items() if halves[k] == half}
        out[half] = score_corpus(part, windows, profiles)
    return out


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
        scored = score_with_halves(read_results_dir(args.out / name, name), args.data)
        rows.append((name, scored, time.perf_counter() - t0))
    references = {}
    for name in REFERENCE_SCORES:
        ref_dir = args.data / "reference_results" / name
        if ref_dir.is_dir():
            references[name] = score_with_halves(read_results_dir(ref_dir, name), args.data)
    halves = split_halves([str(rel) for rel in files])
    counts = {h: sum(1 for v in halves.values() if v == h) for h in "AB"}
    print()
    header = (f"{'detector':<22}" + "".join(f"{p:>20}" for p in PROFILE_NAMES)
              + f"{'std A':>8}{'std B':>8}{'seconds':>10}")
    print(header)
    for name, scored, seconds in rows:
        print(f"{name:<22}" + "".join(f"{scored['all'][p].normalized:>20.1f}" for p in PROFILE_NAMES)
              + f"{scored['A']['standard'].normalized:>8.1f}{scored['B']['standard'].normalized:>8.1f}"
              + f"{seconds:>10.0f}")
    print(f"reference (NAB's published outputs, scored on these {len(files)} files):")
    for name, ref in REFERENCE_SCORES.items():
        split = references.get(name)
        print(f"{name:<22}" + "".join(f"{ref[p]:>20.1f}" if p in ref else f"{'-':>20}"
                                      for p in PROFILE_NAMES)
              + (f"{split['A']['standard'].normalized:>8.1f}{split['B']['standard'].normalized:>8.1f}"
                 if split else f"{'-':>8}{'-':>8}"))
    print(f"std A / std B: standard profile on the fixed halves ({counts['A']} / {counts['B']} files, "
          "threshold optimised within each half); tune on A, read B")
    return 0


if __name__ == "__main__":
    sys.exit(main())
