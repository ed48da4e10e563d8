"""NAB (Numenta Anomaly Benchmark) scoring, vectorised with numpy/pandas.

Implements the semantics of NAB's open-source sweeper (``nab/sweeper.py``) and threshold optimiser
(``nab/optimizer.py``) so results are comparable with the published scoreboard:

* probationary period: the first ``min(floor(0.15 * n), 0.15 * 5000)`` rows of a file are unscored;
* every row is given a *sweep score*: inside a window, ``scaledSigmoid(-(right - i + 1) / width)``
  scaled so the window's first row is worth the full TP weight; outside a window, the FP weight times
  ``scaledSigmoid(|prev_right - i| / (prev_width - 1))`` (``-1`` when there is no previous window or
  the row is more than three window widths past it);
* a detection is a row whose anomaly score is ``>= threshold``; per window only the best (earliest)
  detection counts, a window with none costs ``-fnWeight``; every detection outside a window adds its
  (negative) sweep score;
* one threshold per profile is chosen to maximise the score summed over the whole corpus;
* the reported score is ``100 * (S - S_null) / (S_perfect - S_null)``.

Besides NAB's optimised threshold, results can be scored at a fixed threshold
(``score_at_threshold``: the threshold production alerts on) and leave-one-category-out
(``leave_one_category_out``: each category scored at the threshold optimised on the others).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd

PROBATION_PERCENT = 0.15
PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")


@dataclass(frozen=True)
class CostProfile:
    tp: float
    fn: float
    fp: float


@dataclass(frozen=True)
class FileSweep:
    """Per-row sweep data of one file, probationary rows already removed."""

    scores: np.ndarray  # detector anomaly scores in [0, 1]
    tp_weight_unit: np.ndarray  # sweep score for a TP weight of 1 (NaN outside windows)
    fp_weight_unit: np.ndarray  # sweep score for an FP weight of 1 (NaN inside windows)
    window_id: np.ndarray  # index of the window (-1 outside)
    n_windows: int  # windows with at least one scorable row


@dataclass(frozen=True)
class ProfileResult:
    threshold: float
    raw: float
    null: float
    perfect: float
    tp: int
    fp: int
    fn: int

    @property
    def normalized(self) -> float:
        """NAB's normalised score; NaN where it is undefined (no windows: perfect == null)."""
        if self.perfect == self.null:
            return math.nan
        return 100.0 * (self.raw - self.null) / (self.perfect - self.null)


def scaled_sigmoid(relative_position: np.ndarray) -> np.ndarray:
    """NAB's ``scaledSigmoid``: 2 * sigmoid(-5 x) - 1, and -1 beyond three window widths."""
    x = np.asarray(relative_position, dtype=float)
    val = 2.0 / (1.0 + np.exp(5.0 * x)) - 1.0
    return np.where(x > 3.0, -1.0, val)


def probation_length(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """NAB's ``min(floor(percent * n), percent * 5000)`` rows (750 at 15%)."""
    return int(min(math.floor(percent * n_rows), percent * 5000))


def load_profiles(path: Path) -> dict[str, CostProfile]:
    raw = json.loads(Path(path).read_text())
    return {
        name: CostProfile(tp=p["CostMatrix"]["tpWeight"], fn=p["CostMatrix"]["fnWeight"],
                          fp=p["CostMatrix"]["fpWeight"])
        for name, p in raw.items()
    }


def load_windows(path: Path) -> dict[str, list[tuple[np.datetime64, np.datetime64]]]:
    raw = json.loads(Path(path).read_text())
    return {
        key: [(np.datetime64(pd.Timestamp(a)), np.datetime64(pd.Timestamp(b))) for a, b in wins]
        for key, wins in raw.items()
    }


def sweep_file(timestamps: np.ndarray, scores: np.ndarray,
               windows: Iterable[tuple[np.datetime64, np.datetime64]],
               window_offset: int = 0) -> FileSweep:
    """Sweep scores of one file (NAB ``Sweeper._prepareScoringItems``), probation removed."""
    ts = np.asarray(timestamps, dtype="datetime64[ns]")
    n = len(ts)
    scores = np.asarray(scores, dtype=float)
    if len(scores) != n:
        raise ValueError(f"{len(scores)} scores for {n} timestamps")
    idx = np.arange(n)
    tp_unit = np.full(n, np.nan)
    fp_unit = np.full(n, -1.0)
    window_id = np.full(n, -1, dtype=np.int64)
    max_tp = float(scaled_sigmoid(np.array(-1.0)))
    prev_right: int | None = None
    prev_width: float | None = None
    for k, (start, end) in enumerate(windows):
        left = int(np.searchsorted(ts, np.datetime64(start, "ns"), side="left"))
        right = int(np.searchsorted(ts, np.datetime64(end, "ns"), side="right")) - 1
        if left >= n or right < left:
            continue
        width = float(right - left + 1)
        # Rows between the previous window and this one are FPs relative to the previous window.
        gap = slice(prev_right + 1 if prev_right is not None else 0, left)
        if prev_right is not None:
            pos = np.abs(prev_right - idx[gap]) / (prev_width - 1.0)
            fp_unit[gap] = scaled_sigmoid(pos)
        inside = slice(left, right + 1)
        tp_unit[inside] = scaled_sigmoid(-(right - idx[inside] + 1) / width) / max_tp
        fp_unit[inside] = np.nan
        window_id[inside] = window_offset + k
        prev_right, prev_width = right, width
    if prev_right is not None and prev_right + 1 < n:
        tail = slice(prev_right + 1, n)
        fp_unit[tail] = scaled_sigmoid(np.abs(prev_right - idx[tail]) / (prev_width - 1.0))
    keep = idx >= probation_length(n)
    wid = window_id[keep]
    return FileSweep(
        scores=scores[keep], tp_weight_unit=tp_unit[keep], fp_weight_unit=fp_unit[keep],
        window_id=wid, n_windows=len(np.unique(wid[wid >= 0])),
    )


def _combine(sweeps: list[FileSweep]) -> FileSweep:
    return FileSweep(
        scores=np.concatenate([s.scores for s in sweeps]),
        tp_weight_unit=np.concatenate([s.tp_weight_unit for s in sweeps]),
        fp_weight_unit=np.concatenate([s.fp_weight_unit for s in sweeps]),
        window_id=np.concatenate([s.window_id for s in sweeps]),
        n_windows=sum(s.n_windows for s in sweeps),
    )


def score_by_threshold(sweep: FileSweep, profile: CostProfile
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All candidate thresholds (descending, starting at 1.1 = no detections) and their scores.

    Returns ``(thresholds, scores, tp, fp, fn_windows)``; a row is a detection when its anomaly
    score is >= the threshold. Equivalent to NAB's ``Sweeper.calcScoreByThreshold``.
    """
    order = np.lexsort((-np.nan_to_num(sweep.tp_weight_unit, nan=-np.inf), -sweep.scores))
    s = sweep.scores[order]
    wid = sweep.window_id[order]
    in_win = wid >= 0
    fp_contrib = np.where(in_win, 0.0, np.nan_to_num(sweep.fp_weight_unit[order]) * profile.fp)
    tp_val = np.where(in_win, np.nan_to_num(sweep.tp_weight_unit[order]) * profile.tp, -np.inf)
    # Window value = max(-fn, best detection so far); its increments add to the corpus score.
    win_contrib = np.zeros(len(s))
    first_hit = np.zeros(len(s), dtype=bool)
    if in_win.any():
        frame = pd.DataFrame({"w": wid[in_win], "v": tp_val[in_win]})
        running = frame.groupby("w")["v"].cummax().to_numpy()
        prev = frame.assign(r=running).groupby("w")["r"].shift(1).fillna(-profile.fn).to_numpy()
        prev = np.maximum(prev, -profile.fn)
        win_contrib[in_win] = np.maximum(running, -profile.fn) - prev
        first_hit[in_win] = ~frame["w"].duplicated().to_numpy()
    base = -profile.fn * sweep.n_windows
    cum = base + np.cumsum(fp_contrib + win_contrib)
    # Record a score at the last row of every run of equal anomaly scores.
    last_of_run = np.ones(len(s), dtype=bool)
    last_of_run[:-1] = s[:-1] != s[1:]
    tp_cum = np.cumsum(in_win)
    fp_cum = np.cumsum(~in_win)
    fn_cum = sweep.n_windows - np.cumsum(first_hit)
    thresholds = np.concatenate([[1.1], s[last_of_run]])
    scores = np.concatenate([[base], cum[last_of_run]])
    tp = np.concatenate([[0], tp_cum[last_of_run]])
    fp = np.concatenate([[0], fp_cum[last_of_run]])
    fn = np.concatenate([[sweep.n_windows], fn_cum[last_of_run]])
    return thresholds, scores, tp, fp, fn


def _null_score(combined: FileSweep, profile: CostProfile) -> float:
    """Best score of the null detector (0.5 everywhere) on these rows."""
    null_sweep = FileSweep(np.full(len(combined.scores), 0.5), combined.tp_weight_unit,
                           combined.fp_weight_unit, combined.window_id, combined.n_windows)
    return float(np.max(score_by_threshold(null_sweep, profile)[1]))


def optimise_profile(sweeps: list[FileSweep], profile: CostProfile) -> ProfileResult:
    """Best corpus-wide threshold for one profile (NAB ``optimizeThreshold``) and its result."""
    combined = _combine(sweeps)
    thr, sc, tp, fp, fn = score_by_threshold(combined, profile)
    best = int(np.argmax(sc))  # first maximum = highest threshold, as NAB's stable sort
    return ProfileResult(threshold=float(thr[best]), raw=float(sc[best]),
                         null=_null_score(combined, profile), perfect=profile.tp * combined.n_windows,
                         tp=int(tp[best]), fp=int(fp[best]), fn=int(fn[best]))


def score_at_threshold(sweeps: list[FileSweep], profile: CostProfile, threshold: float
                       ) -> ProfileResult:
    """The result with a fixed threshold (a row is a detection when its score is >= threshold)."""
    combined = _combine(sweeps)
    thr, sc, tp, fp, fn = score_by_threshold(combined, profile)
    # thresholds are descending; take the last one still >= the threshold (1.1 = no detections).
    i = max(int(np.searchsorted(-thr, -float(threshold), side="right")) - 1, 0)
    return ProfileResult(threshold=float(threshold), raw=float(sc[i]),
                         null=_null_score(combined, profile), perfect=profile.tp * combined.n_windows,
                         tp=int(tp[i]), fp=int(fp[i]), fn=int(fn[i]))


def sweep_corpus(results: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 windows: Mapping[str, list[tuple[np.datetime64, np.datetime64]]]
                 ) -> dict[str, FileSweep]:
    """Sweep every file of ``{"<category>/<file>.csv": (timestamps, scores)}``, keyed alike."""
    sweeps = {}
    offset = 0
    for key in sorted(results):
        if key not in windows:
            raise KeyError(f"no label windows for {key}")
        ts, sc = results[key]
        sweeps[key] = sweep_file(ts, sc, windows[key], window_offset=offset)
        offset += len(windows[key])
    return sweeps


def category(key: str) -> str:
    return key.split("/")[0]


@dataclass(frozen=True)
class HeldOut:
    """Leave-one-category-out: every category scored at the threshold optimised on the others."""

    categories: dict[str, ProfileResult]  # held-out result per category (its threshold inside)
    pooled: ProfileResult  # all held-out raw scores summed, normalised on the whole corpus

    @property
    def category_mean(self) -> float:
        """Mean normalised score over the categories where it is defined (they have windows)."""
        vals = [r.normalized for r in self.categories.values() if not math.isnan(r.normalized)]
        return float(np.mean(vals)) if vals else math.nan


def leave_one_category_out(sweeps: Mapping[str, FileSweep], profile: CostProfile) -> HeldOut:
    """Choose the threshold on every other category, score the held-out one; for each category."""
    cats = sorted({category(k) for k in sweeps})
    if len(cats) < 2:
        raise ValueError("leave-one-category-out needs at least two categories")
    per: dict[str, ProfileResult] = {}
    for cat in cats:
        rest = [s for k, s in sweeps.items() if category(k) != cat]
        threshold = optimise_profile(rest, profile).threshold
        per[cat] = score_at_threshold([s for k, s in sweeps.items() if category(k) == cat], profile,
                                      threshold)
    combined = _combine(list(sweeps.values()))
    pooled = ProfileResult(threshold=math.nan, raw=sum(r.raw for r in per.values()),
                           null=_null_score(combined, profile),
                           perfect=profile.tp * combined.n_windows,
                           tp=sum(r.tp for r in per.values()), fp=sum(r.fp for r in per.values()),
                           fn=sum(r.fn for r in per.values()))
    return HeldOut(categories=per, pooled=pooled)


def score_corpus(results: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 windows: Mapping[str, list[tuple[np.datetime64, np.datetime64]]],
                 profiles: Mapping[str, CostProfile]) -> dict[str, ProfileResult]:
    """Score ``{"<category>/<file>.csv": (timestamps, scores)}`` under every profile."""
    sweeps = list(sweep_corpus(results, windows).values())
    return {name: optimise_profile(sweeps, prof) for name, prof in profiles.items()}


def read_results_dir(results_dir: Path, detector: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """NAB-format results ``<dir>/<category>/<detector>_<file>.csv`` keyed like the label file."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    prefix = f"{detector}_"
    for path in sorted(Path(results_dir).glob("*/*.csv")):
        if not path.name.startswith(prefix):
            continue
        frame = pd.read_csv(path, usecols=["timestamp", "anomaly_score"])
        key = f"{path.parent.name}/{path.name[len(prefix):]}"
        out[key] = (pd.to_datetime(frame["timestamp"]).to_numpy(dtype="datetime64[ns]"),
                    frame["anomaly_score"].to_numpy(dtype=float))
    if not out:
        raise FileNotFoundError(f"no {prefix}*.csv results under {results_dir}")
    return out


def score_results_dir(results_dir: Path, detector: str, nab_dir: Path) -> dict[str, ProfileResult]:
    """Score a detector's NAB-format results directory against the labels under ``nab_dir``."""
    nab_dir = Path(nab_dir)
    windows = load_windows(nab_dir / "labels" / "combined_windows.json")
    profiles = load_profiles(nab_dir / "profiles.json")
    return score_corpus(read_results_dir(results_dir, detector), windows, profiles)
