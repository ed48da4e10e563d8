"""Seasonal period detection from the autocorrelation function."""
from __future__ import annotations

import numpy as np


def autocorrelation(values: np.ndarray, max_lag: int) -> np.ndarray:
    """ACF for lags 0..max_lag via FFT (NaNs replaced by the mean)."""
    x = np.asarray(values, dtype=float)
    x = np.where(np.isfinite(x), x, np.nanmean(x) if np.isfinite(x).any() else 0.0)
    x = x - x.mean()
    n = len(x)
    size = 1 << int(np.ceil(np.log2(2 * n)))
    spec = np.fft.rfft(x, size)
    acf = np.fft.irfft(spec * np.conj(spec), size)[: max_lag + 1]
    return acf / acf[0] if acf[0] > 0 else np.zeros(max_lag + 1)


def detect_period(values: np.ndarray, *, min_period: int = 4, max_period: int | None = None,
                  min_acf: float = 0.3, min_prominence: float = 0.2) -> int:
    """The lag of the highest ACF local peak with two full cycles in the data; 0 if none.

    A peak counts when its ACF is >= ``min_acf`` and rises at least ``min_prominence`` above the
    lowest ACF at shorter lags, so the slow ripples of a smooth, non-seasonal series are ignored.
    """
    n = len(values)
    max_period = min(max_period or n // 2, n // 2)
    if max_period <= min_period + 1:
        return 0
    acf = autocorrelation(values, max_period + 1)
    lags = np.arange(min_period, max_period)
    peaks = lags[(acf[lags] > acf[lags - 1]) & (acf[lags] >= acf[lags + 1]) & (acf[lags] >= min_acf)]
    if peaks.size:
        trough = np.minimum.accumulate(acf)
        peaks = peaks[acf[peaks] - trough[peaks] >= min_prominence]
    if peaks.size == 0:
        return 0
    best = int(peaks[np.argmax(acf[peaks])])
    # Prefer the fundamental: the smallest peak nearly as strong as the best whose multiple it is.
    for p in peaks:
        if p < best and abs(best / p - round(best / p)) * p <= 1 and acf[p] >= 0.9 * acf[best]:
            best = int(p)
            break
    return _refine(acf, best, max_period)


def _refine(acf: np.ndarray, period: int, max_lag: int) -> int:
    """Sharpen the period with the furthest multiple's peak (noise shifts a single peak by a lag)."""
    mult = max_lag // period
    if mult < 2:
        return period
    lo, hi = mult * period - mult, min(mult * period + mult, len(acf) - 1)
    peak = lo + int(np.argmax(acf[lo:hi + 1]))
    return max(2, int(round(peak / mult)))
