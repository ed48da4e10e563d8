"""Per-job, per-series state: which series to fit, what to score, what to export.

A pass is pure computation over the series of one query answer, so it runs in a worker thread; the
async runtime only fetches data and publishes the results.
"""
from __future__ import annotations

import math
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .config import JobConfig
from .detectors import Detector, build_detector
from .reader import RangeSeries

LabelKey = tuple[tuple[str, str], ...]
RENAMED = {"job": "source_job", "instance": "source_instance", "anomaly_job": "source_anomaly_job"}


def export_labels(labels: dict[str, str]) -> dict[str, str]:
    """The source series' labels as exported: job/instance renamed, the metric name dropped."""
    return {RENAMED.get(k, k): v for k, v in labels.items() if k != "__name__"}


@dataclass
class Result:
    timestamp: float
    score: float
    expected: float
    lower: float
    upper: float
    warm: float = 0.0  # 1.0 once the series' history covers the job's alert_after_seconds


@dataclass
class SeriesState:
    labels: dict[str, str]
    detector: Detector
    last_fit: float = -math.inf  # wall time of the last fit
    last_scored: float = -math.inf  # timestamp of the last scored point
    last_seen: float = 0.0  # wall time the series was last in an answer
    first_point: float = math.inf  # timestamp of the oldest point with data ever seen
    result: Result | None = None


@dataclass
class PassOutcome:
    fitted: int = 0
    fit_seconds: float = 0.0
    fit_errors: int = 0
    capped: int = 0
    needs_history: bool = False  # a new series appeared in a short query: fetch fit_window next


@dataclass
class JobState:
    config: JobConfig
    series: dict[LabelKey, SeriesState] = field(default_factory=dict)
    needs_history: bool = True
    last_pass_at: float | None = None  # wall time of the last successful pass
    # Replaced (never mutated) after each pass, so scrapes on the loop thread read a consistent list.
    published: list[tuple[dict[str, str], Result]] = field(default_factory=list)

    def query_start(self, end: float, now: float) -> float:
        """Start of the next query: the whole fit window when a fit is due, else only new points."""
        cfg = self.config
        full = end - cfg.fit_points * cfg.step
        if self.needs_history or not self.series or any(
                now - s.last_fit >= cfg.fit_every or not s.detector.fitted for s in self.series.values()):
            return full
        oldest = min(s.last_scored for s in self.series.values())
        if not math.isfinite(oldest):
            return full
        # Within the same step there is nothing new: ask for the newest point only.
        return min(max(full, oldest + cfg.step), end)

    def run_pass(self, answer: list[RangeSeries], now: float, executor: Executor | None = None,
                 workers: int = 1, clock: Callable[[], float] = time.perf_counter) -> PassOutcome:
        """Fit what is due, score every new point, keep the latest result per series."""
        cfg = self.config
        out = PassOutcome()
        ordered = sorted(answer, key=lambda s: tuple(sorted(s.labels.items())))
        work: list[tuple[SeriesState, RangeSeries]] = []
        for rs in ordered:
            key = tuple(sorted(rs.labels.items()))
            state = self.series.get(key)
            if state is None:
                if len(self.series) >= cfg.max_series:
                    out.capped += 1
                    continue
                state = SeriesState(labels=export_labels(rs.labels), detector=self._new_detector())
                self.series[key] = state
                if rs.timestamps.size and rs.timestamps[0] > state.last_scored and self._is_short(rs):
                    out.needs_history = True
            state.last_seen = now
            work.append((state, rs))
        chunks = [work[i::workers] for i in range(workers)] if workers > 1 and executor else [work]
        if executor is not None and len(chunks) > 1:
            futures = [executor.submit(self._process, chunk, now, clock) for chunk in chunks]
            parts = [f.result() for f in futures]
        else:
            parts = [self._process(work, now, clock)]
        for fitted, seconds, errors in parts:
            out.fitted += fitted
            out.fit_seconds += seconds
            out.fit_errors += errors
        self.needs_history = out.needs_history
        self.last_pass_at = now
        self.published = [(s.labels, s.result) for s in self.series.values()
                          if s.result is not None and s.last_seen >= now]
        return out

    def _is_short(self, rs: RangeSeries) -> bool:
        return rs.timestamps.size < self.config.fit_points

    def _new_detector(self) -> Detector:
        cfg = self.config
        return build_detector(cfg.detector, cfg.params, direction=cfg.direction,
                              min_deviation=cfg.min_deviation)

    def _process(self, work: list[tuple[SeriesState, RangeSeries]], now: float,
                 clock: Callable[[], float]) -> tuple[int, float, int]:
        fitted = errors = 0
        seconds = 0.0
        cfg = self.config
        for state, rs in work:
            ts, vs = rs.timestamps, rs.values
            finite = np.isfinite(vs)
            if not finite.any():
                state.result = None
                continue
            with_data = np.flatnonzero(finite)
            last_point = int(with_data[-1])
            state.first_point = min(state.first_point, float(ts[int(with_data[0])]))
            due = not state.detector.fitted or now - state.last_fit >= cfg.fit_every
            if due and ts.size > 1:
                # Fit on everything already scored (or all but the newest point for a new series).
                cut = int(np.searchsorted(ts, state.last_scored, side="right"))
                cut = min(max(cut, 1), last_point) if math.isfinite(state.last_scored) else last_point
                history = vs[:cut]
                if np.isfinite(history).sum() >= cfg.min_fit_points:
                    t0 = clock()
                    try:
                        state.detector.fit(history)
                        state.last_fit = now
                        if not math.isfinite(state.last_scored):
                            state.last_scored = ts[cut - 1]
                        fitted += 1
                    except (ValueError, np.linalg.LinAlgError, ArithmeticError):
                        errors += 1
                        state.detector = self._new_detector()
                        state.last_scored = -math.inf
                    seconds += clock() - t0
            if not state.detector.fitted:
                state.result = None
                continue
            new = ts > state.last_scored
            if not new.any():
                continue
            idx = np.flatnonzero(new)
            res = state.detector.score(vs[idx])
            state.last_scored = float(ts[idx[-1]])
            # Export the newest point that has data.
            good = np.flatnonzero(np.isfinite(vs[idx]))
            if good.size:
                j = int(good[-1])
                newest = float(ts[idx[j]])
                warm = float(newest - state.first_point >= cfg.alert_after_seconds)
                state.result = Result(newest, float(res.score[j]), float(res.expected[j]),
                                      float(res.lower[j]), float(res.upper[j]), warm)
        return fitted, seconds, errors

    def drop_vanished(self, now: float, ttl: float) -> int:
        """Forget series not seen for ``ttl`` seconds; returns how many were dropped."""
        gone = [k for k, s in self.series.items() if now - s.last_seen > ttl]
        for k in gone:
            del self.series[k]
        return len(gone)

    def withdraw(self) -> None:
        """Stop exporting results (the source failed); state is kept for a quick recovery."""
        self.published = []

    def current_results(self) -> list[tuple[dict[str, str], Result]]:
        """Results of the series in the latest successful pass; none while withdrawn."""
        return self.published
