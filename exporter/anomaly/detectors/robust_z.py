"""Robust z-score: distance from a median in units of the MAD, optionally per seasonal phase.

Without a period the expected value is the median of the last ``window`` points and the scale their
MAD. With a period (configured, or ``"auto"`` to detect it from the ACF) the expected value is the
per-phase median over the past cycles in the fit window, shifted by the median of recent residuals
(so level changes are followed), and the scale is the MAD of the residuals. Fitting is a handful of
numpy reductions, which makes this the cheap default for thousands of series.
"""
from __future__ import annotations

import numpy as np

from .base import BandDetector, robust_scale, scale_floor
from .seasonality import detect_period


class RobustZScore(BandDetector):
    name = "robust_zscore"

    def __init__(self, *, window: int = 60, period: int | str = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        if int(window) < 3:
            raise ValueError("window must be >= 3")
        self.window = int(window)
        if period != "auto" and (not isinstance(period, int) or period < 0):
            raise ValueError("period must be an integer >= 0 or 'auto'")
        self.period_setting = period
        self.period = 0
        self._profile = np.empty(0)
        self._phase = 0
        self._level = 0.0
        self._scale = 0.0
        self._center = 0.0

    def fit(self, history: np.ndarray) -> None:
        h = np.asarray(history, dtype=float)
        h = h[np.isfinite(h)] if not self.period_setting else h
        if h.size < 3:
            raise ValueError(f"{self.name}: need at least 3 points to fit, got {h.size}")
        floor = scale_floor(h)
        period = self.period_setting
        if period == "auto":
            period = detect_period(h)
        if period and h.size >= 2 * period:
            cycles = h.size // period
            tail = h[h.size - cycles * period:].reshape(cycles, period)
            with np.errstate(all="ignore"):
                profile = np.nanmedian(tail, axis=0)
            profile = np.where(np.isfinite(profile), profile, np.nanmedian(h))
            # Leave-one-cycle-out residuals: judged against a profile that did not see them, as
            # new points will be (in-sample residuals would understate the scale).
            if cycles >= 3:
                with np.errstate(all="ignore"):
                    resid = np.concatenate([
                        tail[c] - np.nanmedian(np.delete(tail, c, axis=0), axis=0)
                        for c in range(cycles)])
            else:
                resid = (tail - profile).ravel()
            recent = (tail - profile).ravel()[-self.window:]
            self._level = float(np.nanmedian(recent)) if np.isfinite(recent).any() else 0.0
            self._scale = robust_scale(resid, floor)
            self._profile = profile
            self._phase = 0  # next point continues at phase 0 of the reshaped tail
            self.period = int(period)
        else:
            recent = h[np.isfinite(h)][-self.window:]
            self._center = float(np.median(recent))
            self._scale = robust_scale(recent, floor)
            self.period = 0
        self.fitted = True

    def _predict(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(values)
        if self.period:
            idx = (self._phase + np.arange(n)) % self.period
            self._phase = int((self._phase + n) % self.period)
            expected = self._profile[idx] + self._level
        else:
            expected = np.full(n, self._center)
        return expected, np.full(n, self._scale)
