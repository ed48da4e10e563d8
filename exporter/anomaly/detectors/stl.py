"""Seasonal-trend detector: robust STL (statsmodels) on the fit window.

Fit decomposes the history into trend + seasonal + residual with LOESS (robust weights, so past
anomalies do not bend the fit). New points are expected at the last trend value plus the linear
trend slope, plus the seasonal component of their phase; the scale is the MAD of the residuals.
"""
from __future__ import annotations

import numpy as np
from statsmodels.tsa.seasonal import STL

from .base import Detector, robust_scale, scale_floor
from .seasonality import detect_period


class STLDetector(Detector):
    name = "stl"

    def __init__(self, *, period: int | str = "auto", robust: bool = True, slope_window: int = 10,
                 **kwargs) -> None:
        super().__init__(**kwargs)
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
            res = STL(h, period=int(period), robust=self.robust).fit()
            trend = np.asarray(res.trend)
            k = min(self.slope_window, trend.size - 1)
            self._slope = float((trend[-1] - trend[-1 - k]) / k) if k > 0 else 0.0
            self._trend_last = float(trend[-1])
            seasonal = np.asarray(res.seasonal)
            # The seasonal value for the phase that follows the history.
            self._seasonal = seasonal[-period:]
            self._scale = robust_scale(np.asarray(res.resid), floor)
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


def _fill_gaps(h: np.ndarray) -> np.ndarray:
    ok = np.isfinite(h)
    if not ok.any():
        raise ValueError("history has no finite values")
    idx = np.arange(h.size)
    return np.interp(idx, idx[ok], h[ok])
