"""Holt-Winters (statsmodels ExponentialSmoothing): additive trend and, when present, seasonality.

Fit estimates the smoothing parameters on the history; new points are scored against the model's
multi-step forecast from the end of the history (state is not updated between fits, which keeps
scoring a lookup). The scale is the MAD of the in-sample one-step residuals, widened with the
horizon as the forecast variance of a random walk would be.
"""
from __future__ import annotations

import warnings

import numpy as np
from statsmodels.tsa.holtwinters import ExponentialSmoothing

from .base import BandDetector, robust_scale, scale_floor
from .seasonality import detect_period
from .stl import _fill_gaps


class HoltWintersDetector(BandDetector):
    name = "holt_winters"

    def __init__(self, *, period: int | str = "auto", trend: bool = True, damped: bool = True,
                 horizon: int = 1440, sigmas: float = 3.5, **kwargs) -> None:
        # 3.5 sigmas by default: in-sample one-step residuals understate out-of-sample errors.
        super().__init__(sigmas=sigmas, **kwargs)
        if period != "auto" and (not isinstance(period, int) or period < 0):
            raise ValueError("period must be an integer >= 0 or 'auto'")
        self.period_setting = period
        self.trend = bool(trend)
        self.damped = bool(damped) and self.trend
        self.horizon = int(horizon)
        self.period = 0
        self._forecast = np.empty(0)
        self._scale = 0.0
        self._alpha = 0.0
        self._step = 0

    def fit(self, history: np.ndarray) -> None:
        h = _fill_gaps(np.asarray(history, dtype=float))
        floor = scale_floor(h)
        period = self.period_setting if self.period_setting != "auto" else detect_period(h)
        seasonal = "add" if period >= 2 and h.size >= 2 * period + 2 else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = ExponentialSmoothing(
                h, trend="add" if self.trend else None, damped_trend=self.damped,
                seasonal=seasonal, seasonal_periods=int(period) if seasonal else None,
                # Heuristic initial states + no brute-force grid keep a 1440-point season fast.
                initialization_method="heuristic" if seasonal and h.size >= 2 * period + 10
                else "estimated",
            )
            res = model.fit(use_brute=False)
        self._forecast = np.asarray(res.forecast(self.horizon), dtype=float)
        resid = h - np.asarray(res.fittedvalues)
        self._scale = robust_scale(resid, floor)
        self._alpha = float(res.params.get("smoothing_level", 0.0) or 0.0)
        self.period = int(period) if seasonal else 0
        self._step = 0
        self.fitted = True

    def _predict(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = len(values)
        steps = self._step + np.arange(n)
        self._step += n
        idx = np.minimum(steps, self._forecast.size - 1)
        expected = self._forecast[idx]
        # h-step forecast error of simple exponential smoothing: sigma * sqrt(1 + (h-1) alpha^2).
        widen = np.sqrt(1.0 + steps * self._alpha ** 2)
        return expected, self._scale * widen
