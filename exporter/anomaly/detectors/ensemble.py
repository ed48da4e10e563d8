"""Multi-timescale ensemble with a calibrated score: the default detector.

Two views of "normal" must both be violated (their deviations are combined with ``min``):

* local: distance from the median of the last ``window`` points, in robust scale units
  (IQR / 1.349, floored at 0.3 x the window's standard deviation for count-like series);
* seasonal (when a period is configured or detected): distance outside the band spanned by the
  same phase (+/- ``neighbourhood`` points, ``period // 128`` by default, which absorbs phase
  jitter) in the previous ``cycles`` cycles, in units of the typical half-width of that band.

The combined deviation ``raw`` is then turned into a probability under the series' own recent
behaviour (``tail.TailModel``: the raw deviations of the last ``history`` points, re-estimated at
every fit, their upper tail modelled by a generalised Pareto distribution), like NAB's anomaly
likelihood but with an extreme-value tail instead of a Gaussian one. The score is
``log P(raw) / log rate``: above 1 exactly when the deviation is rarer than the nominal ``rate``
(1e-4 per point by default), on every series whatever its unit, scale or noise shape; 2 means
``rate**2``.

A value outside the range of the values seen so far, widened by ``novelty_tolerance`` (5%,
Numenta's constant) of that range on each side, scores ``NOVELTY_SCORE * (1 + d)`` where ``d`` is
its distance beyond the limit in units of the range: Numenta's "spatial anomaly" rule, made robust
by taking the range between the ``novelty_rank``-th smallest and largest values (2: one freak value
on either side does not mask everything below it forever). After an alert (score > 1) the score is
divided by the running peak for ``holdoff`` points, so a continuing incident re-alerts only when it
gets worse (a higher deviation or a further record).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from .base import Detector, DetectorOutput, Direction, scale_floor
from .seasonality import detect_period
from .tail import TailModel

# Nominal rate of scores > 1 on a series that behaves as it did recently.
DEFAULT_RATE = 1e-4
# Score of a value just outside the range seen so far: well above the alert level of 1.
NOVELTY_SCORE = 10.0
# Above this many windows, pandas' skip-list rolling quantiles beat numpy's per-window partition.
ROLLING_CUTOVER = 256


def _window_stats(v: np.ndarray, w: int) -> tuple[np.ndarray, ...]:
    """Quartiles, median and std of every full length-w window of v (window i = v[i:i+w])."""
    n = v.size - w + 1
    if n > ROLLING_CUTOVER:
        roll = pd.Series(v).rolling(w)
        return tuple(np.asarray(x)[w - 1:] for x in (
            roll.quantile(0.25), roll.quantile(0.5), roll.quantile(0.75), roll.std(ddof=0)))
    past = sliding_window_view(v, w)
    q25, med, q75 = np.percentile(past, [25, 50, 75], axis=1)
    return q25, med, q75, past.std(axis=1)


class EnsembleDetector(Detector):
    name = "ensemble"

    def __init__(self, *, window: int = 128, period: int | str = "auto", neighbourhood: int | str = "auto",
                 cycles: int = 2, history: int = 3000, holdoff: int = 100, rate: float = DEFAULT_RATE,
                 novelty_tolerance: float | None = 0.05, novelty_rank: int = 2, **kwargs) -> None:
        if "sigmas" in kwargs or "record_margin" in kwargs:
            raise TypeError("ensemble: 'sigmas' and 'record_margin' were replaced by 'rate' (the "
                            "nominal rate of scores > 1 on a series behaving as it did recently)")
        super().__init__(**kwargs)
        if int(window) < 4:
            raise ValueError("window must be >= 4")
        if period != "auto" and (not isinstance(period, int) or period < 0):
            raise ValueError("period must be an integer >= 0 or 'auto'")
        if neighbourhood != "auto" and (not isinstance(neighbourhood, int) or neighbourhood < 0):
            raise ValueError("neighbourhood must be an integer >= 0 or 'auto'")
        if cycles < 1 or history < 20 or holdoff < 0:
            raise ValueError("cycles >= 1, history >= 20, holdoff >= 0 required")
        self.window = int(window)
        self.period_setting = period
        self.neighbourhood_setting = neighbourhood
        self.neighbourhood = 0 if neighbourhood == "auto" else int(neighbourhood)
        self.cycles = int(cycles)
        self.history = int(history)
        self.holdoff = int(holdoff)
        self.tail = TailModel(rate)
        self.rate = self.tail.rate
        if novelty_tolerance is not None and not 0 <= novelty_tolerance < 10:
            raise ValueError("novelty_tolerance must be in [0, 10) or null (off)")
        self.novelty_tolerance = None if novelty_tolerance is None else float(novelty_tolerance)
        if not isinstance(novelty_rank, int) or novelty_rank < 1:
            raise ValueError("novelty_rank must be an integer >= 1")
        self.novelty_rank = novelty_rank
        self._top = np.empty(0)  # the novelty_rank largest values seen, ascending
        self._bottom = np.empty(0)  # the novelty_rank smallest values seen, ascending
        self.period = 0
        self._buf = np.empty(0)
        self._floor = 1e-9
        self._season_scale = 1.0
        self._since_alert = 1 << 30
        self._alert_peak = 1.0

    # -- state -------------------------------------------------------------------------------------
    @property
    def context(self) -> int:
        """Points of past data a new point needs."""
        seasonal = self.cycles * self.period + self.neighbourhood + 1 if self.period else 0
        return self.window + seasonal

    def fit(self, history: np.ndarray) -> None:
        h = np.asarray(history, dtype=float)
        if not np.isfinite(h).all():
            ok = np.isfinite(h)
            if not ok.any():
                raise ValueError("history has no finite values")
            idx = np.arange(h.size)
            h = np.interp(idx, idx[ok], h[ok])
        if h.size <= self.window:
            raise ValueError(f"{self.name}: need more than window={self.window} points, got {h.size}")
        self._floor = scale_floor(h)
        k = min(self.novelty_rank, h.size)
        self._top = np.sort(np.partition(h, h.size - k)[h.size - k:])
        self._bottom = np.sort(np.partition(h, k - 1)[:k])
        period = self.period_setting
        if period == "auto":
            period = detect_period(h, min_period=4, max_period=h.size // (self.cycles + 1))
        if self.neighbourhood_setting == "auto":
            # Phase jitter grows with the cycle length: +/-1 point up to 255, +/-2 at 288 (5-minute
            # days), +/-11 at 1440 (1-minute days).
            self.neighbourhood = max(1, int(period) // 128) if period else 0
        self.period = int(period) if period and h.size > self.cycles * period + self.neighbourhood + self.window else 0
        if self.period and self.period <= self.neighbourhood:
            self.period = 0
        n_eval = min(h.size - self.context, self.history)
        if self.period:
            hi, lo = self._season_band(h, h.size - self.context)
            half = (hi - lo)[-self.period:] / 2.0
            self._season_scale = max(float(np.median(half)), self._floor)
        self.tail.fit(self._raw(h, n_eval)[0] if n_eval >= 20 else np.empty(0))
        self._buf = h[-self.context:].copy()
        self.fitted = True

    # -- scoring -----------------------------------------------------------------------------------
    def _season_band(self, v: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Median over past cycles of the max/min around the same phase, for the last n points."""
        m, p = self.neighbourhood, self.period
        k = 2 * m + 1
        win = sliding_window_view(v, k)  # win[s] covers v[s:s+k]
        mx, mn = win.max(axis=1), win.min(axis=1)
        t = np.arange(v.size - n, v.size)
        his = np.stack([mx[t - j * p - m] for j in range(1, self.cycles + 1)])
        los = np.stack([mn[t - j * p - m] for j in range(1, self.cycles + 1)])
        return np.median(his, axis=0), np.median(los, axis=0)

    def _raw(self, v: np.ndarray, n: int) -> tuple[np.ndarray, ...]:
        """Deviation of the last n points of v (each judged on the points before it)."""
        w = self.window
        x = v[-n:]
        if self.period:
            # The local view works on the deseasonalised series (value minus the seasonal mid-band).
            hi_all, lo_all = self._season_band(v, n + w)
            mid_all = (hi_all + lo_all) / 2.0
            base = v[-(n + w):] - mid_all
            hi, lo, mid = hi_all[-n:], lo_all[-n:], mid_all[-n:]
        else:
            base, mid = v[-(n + w):], 0.0
        q25, med, q75, std = _window_stats(base[:-1], w)  # over the w points before each point
        local_scale = np.maximum(np.maximum((q75 - q25) / 1.349, 0.3 * std), self._floor)
        local = (base[-n:] - med) / local_scale
        med = med + mid
        local = self.direction.fold(local)
        if not self.period:
            return local, med, med, local_scale, None, None
        above = np.maximum(x - hi, 0.0) / self._season_scale
        below = np.maximum(lo - x, 0.0) / self._season_scale
        if self.direction is Direction.ABOVE:
            seas = above
        elif self.direction is Direction.BELOW:
            seas = below
        else:
            seas = np.maximum(above, below)
        return np.minimum(local, seas), med, (hi + lo) / 2.0, local_scale, hi, lo

    def score(self, values: np.ndarray) -> DetectorOutput:
        if not self.fitted:
            raise RuntimeError(f"{self.name}: score() before fit()")
        values = np.asarray(values, dtype=float)
        n = values.size
        if n == 0:
            return DetectorOutput.concat([])
        filled = values.copy()
        bad = ~np.isfinite(filled)
        if bad.any():  # a gap is scored 0 and carries the last value forward for later points
            last = self._buf[-1]
            for i in np.flatnonzero(bad):
                filled[i] = filled[i - 1] if i else last
        v = np.concatenate([self._buf, filled])
        raw, med, expected, local_scale, hi, lo = self._raw(v, n)
        score = self.tail.score(raw)
        # The raw deviation at which the score reaches 1 gives the band.
        raw_one = self.tail.level(1.0)
        lower, upper = med - raw_one * local_scale, med + raw_one * local_scale
        if hi is not None:
            lower = np.minimum(lower, lo - raw_one * self._season_scale)
            upper = np.maximum(upper, hi + raw_one * self._season_scale)
        if self.novelty_tolerance is not None:
            novelty, novel_lo, novel_hi = self._novelty(filled)
            score = np.maximum(score, novelty)
            # Beyond the novelty limits the score is above 1 whatever the deviation terms say.
            lower = np.minimum(np.maximum(lower, novel_lo), expected)
            upper = np.maximum(np.minimum(upper, novel_hi), expected)
        if self.min_deviation > 0:
            dev = np.abs(values - expected)
            score = np.minimum(score, dev / self.min_deviation)
            lower = np.minimum(lower, expected - self.min_deviation)
            upper = np.maximum(upper, expected + self.min_deviation)
        score = np.where(bad, 0.0, score)
        score = self._apply_holdoff(score)
        self._buf = v[-self.context:].copy()
        return DetectorOutput(score=score, expected=expected, lower=lower, upper=upper)

    def _novelty(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Novelty score per value (0, or NOVELTY_SCORE * (1 + distance beyond the limit / range))
        and the limits in force for it.

        A value is novel when it leaves the range from the ``novelty_rank``-th smallest to the
        ``novelty_rank``-th largest value seen before it (fit history plus every point scored
        since), widened by ``novelty_tolerance`` of that range; limits are -inf/+inf where the rule
        cannot fire (flat or too short a history, or a side excluded by ``direction``).
        """
        k = self.novelty_rank
        top, bottom = list(self._top), list(self._bottom)
        tol = float(self.novelty_tolerance)
        check_above = self.direction is not Direction.BELOW
        check_below = self.direction is not Direction.ABOVE
        out = np.zeros(values.size)
        limit_lo = np.full(values.size, -np.inf)
        limit_hi = np.full(values.size, np.inf)
        for i, v in enumerate(values.tolist()):
            if len(top) >= k and top[0] > bottom[-1]:
                hi, lo = top[0], bottom[-1]
                margin = tol * (hi - lo)
                if check_above:
                    limit_hi[i] = hi + margin
                if check_below:
                    limit_lo[i] = lo - margin
                if v > limit_hi[i] or v < limit_lo[i]:
                    beyond = max(v - limit_hi[i], limit_lo[i] - v) / (hi - lo)
                    out[i] = NOVELTY_SCORE * (1.0 + beyond)
            if len(top) < k or v > top[0]:
                top = sorted(top + [v])[-k:]
            if len(bottom) < k or v < bottom[-1]:
                bottom = sorted(bottom + [v])[:k]
        self._top, self._bottom = np.asarray(top), np.asarray(bottom)
        return out, limit_lo, limit_hi

    def _apply_holdoff(self, score: np.ndarray) -> np.ndarray:
        """Within ``holdoff`` points of an alert, a point alerts again only above the alert's peak."""
        if not self.holdoff:
            return score
        out = score.copy()
        for i in range(out.size):
            self._since_alert += 1
            s = out[i]
            if self._since_alert <= self.holdoff:
                out[i] = s / self._alert_peak
                self._alert_peak = max(self._alert_peak, s)
            elif s > 1.0:
                self._since_alert, self._alert_peak = 0, s
        return out
