"""Seasonal-trend detector: robust STL (statsmodels) on the fit window.

Fit decomposes the history into trend + seasonal + residual with LOESS (robust weights, so past
anomalies do not bend the fit). New points are expected at the last trend value plus the linear
trend slope, plus the seasonal component of their phase; the scale is the MAD of the residuals.
"""
from __future__ import annotations

import numpy as np
from statsmodels.tsa.seasonal import STL

from .base import BandDetector, robust_scale, scale_floor
from .seasonality import detect_period


class STLDetector(BandDetector):
    name = "stl"

    def __init__(self, *, period: int | str = "auto", robust: bool = True, slope_window: int = 10,
                 sigmas: float = 4.0, **kwargs) -> None:
        # 4 sigmas by default: the edge of a LOESS decomposition, which new points are compared
        # with, is noisier than the in-sample residuals suggest.
        super().__init__(sigmas=sigmas, **kwargs)
        if period != "auto" and (not isinstance(period, int) or period < 2):
            raise ValueError("period must be an integer >= 2 or 'auto'")
        self.period_setting = period
        self.robust = bool(robust)
        self.slope_window = int(slope_window)
        self.period = 0
        self._seasonal = np.empty(0)
        self._trend_last = 0.0
        self._slope = 0.0
        self._scale = 0.0
        self._step = 0

    def fit(self, history: np.ndarray) -> None:
        h = np.asarray(history, dtype=float)
        if not np.isfinite(h).all():
            h = _fill_gaps(h)
        floor = scale_floor(h)
        period = self.period_setting if self.period_setting != "auto" else detect_period(h)
        if period < 2 or h.size < 2 * period + 1:
            # No usable seasonality: a robust local level is the best STL can say.
            recent = h[-max(self.slope_window * 3, 10):]
            self.period, self._seasonal = 0, np.empty(0)
            self._trend_last, self._slope = float(np.median(recent)), 0.0
            self._scale = robust_scale(np.diff(h) / np.sqrt(2.0), floor) if h.size > 2 else floor
        else:
            # LOESS jumps keep long periods (1440 at 1-minute steps) affordable; see statsmodels STL.
            jump = max(1, int(period) // 25)
            res = STL(h, period=int(period), robust=self.robust, seasonal_jump=jump,
                      trend_jump=jump, low_pass_jump=jump).fit()
            trend = np.asarray(res.trend)
            seasonal = np.asarray(res.seasonal)
            # The slope over a whole cycle: short-window slopes of a LOESS trend are noisy.
            k = min(max(self.slope_window, int(period)), trend.size - 1)
            self._slope = float((trend[-1] - trend[-1 - k]) / k) if k > 0 else 0.0
            self._trend_last = float(trend[-1])
            # The seasonal value for the phase that follows the history: the mean of the last cycles'
            # components (the edge cycle alone is a one-sided LOESS estimate, as noisy as the data).
            cycles = min(4, seasonal.size // period)
            self._seasonal = seasonal[seasonal.size - cycles * period:].reshape(cycles, period).mean(axis=0)
            # In-sample residuals understate the error of a forecast (the fit absorbs noise), so the
            # scale comes from pseudo one-step forecasts: previous trend + slope + last cycle's season.
            self._scale = robust_scale(_pseudo_forecast_errors(h, trend, seasonal, int(period), k), floor)
            self.period = int(period)
        self._step = 0
        self.fitted = True

    def _predict(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(values)
        steps = self._step + 1 + np.arange(n)
        self._step += n
        expected = self._trend_last + self._slope * steps
        if self.period:
            expected = expected + self._seasonal[(steps - 1) % self.period]
        return expected, np.full(n, self._scale)


def _pseudo_forecast_errors(h: np.ndarray, trend: np.ndarray, seasonal: np.ndarray, period: int,
                            k: int) -> np.ndarray:
    start = period + k + 1
    if h.size <= start:
        return h - trend - seasonal
    t = np.arange(start, h.size)
    slope = (trend[t - 1] - trend[t - 1 - k]) / k if k > 0 else 0.0
    return h[t] - (trend[t - 1] + slope + seasonal[t - period])


def _fill_gaps(h: np.ndarray) -> np.ndarray:
    ok = np.isfinite(h)
    if not ok.any():
        raise ValueError("history has no finite values")
    idx = np.arange(h.size)
    return np.interp(idx, idx[ok], h[ok])
