"""Calibrated scores: the tail probability of a deviation under the series' own recent deviations.

A detector's raw deviation (>= 0, larger = more unusual) means different things on different series:
3 robust sigmas is routine on a spiky host-CPU series and rare on a smooth one. ``TailModel`` turns
it into a probability. It keeps the distribution of the raw deviations of the last points it was
fitted on and models their upper tail by peaks over threshold (extreme value theory, as in the SPOT
detector of Siffer et al., KDD 2017): above ``u``, the ``1 - TAIL_FRACTION`` quantile, the excesses
follow a generalised Pareto distribution whose shape and scale are estimated by probability-weighted
moments (Hosking & Wallis, 1987; closed form, no optimiser). So

    P(raw > x) = TAIL_FRACTION * (1 + xi (x - u) / sigma) ** (-1 / xi)      for x > u

and the score is ``log P / log rate``: 1 at the nominal ``rate``, 2 at ``rate**2``. On a series that
behaves as it did recently, a fraction ``rate`` of the points score above 1, whatever its scale and
noise shape (Gaussian, heavy-tailed, spiky, count-like).
"""
from __future__ import annotations

import math

import numpy as np

TAIL_FRACTION = 0.02
MIN_EXCESSES = 10  # fewer excesses than this: an exponential tail with the mean excess as scale
SHAPE_LIMITS = (-0.5, 0.5)  # keep the PWM shape where its estimator is well behaved
MAX_NEG_LOG_P = 700.0  # p >= 1e-304: scores stay finite


def gpd_pwm(excesses: np.ndarray) -> tuple[float, float]:
    """Shape xi and scale sigma of a generalised Pareto fitted by probability-weighted moments."""
    y = np.sort(np.asarray(excesses, dtype=float))
    n = y.size
    if n == 0:  # every deviation ties at or below u: anything above it is beyond all seen
        return 0.0, 1e-12
    a0 = float(y.mean())
    if n < MIN_EXCESSES or a0 <= 0.0:
        return 0.0, max(a0, 1e-12)
    p = (np.arange(1, n + 1) - 0.35) / n
    a1 = float(np.mean((1.0 - p) * y))
    denom = a0 - 2.0 * a1
    if denom <= 0.0:
        return 0.0, a0
    k = a0 / denom - 2.0  # Hosking's k = -xi
    xi = float(np.clip(-k, *SHAPE_LIMITS))
    sigma = 2.0 * a0 * a1 / denom
    # Refit the scale for the clipped shape so the mean excess stays right: E[Y] = sigma / (1 - xi).
    if xi != -k:
        sigma = a0 * (1.0 - xi)
    return xi, max(sigma, 1e-12)


class TailModel:
    """Distribution of recent raw deviations; ``score(raw) = log P(raw' > raw) / log rate``."""

    def __init__(self, rate: float) -> None:
        if not 0.0 < rate < TAIL_FRACTION:
            raise ValueError(f"rate must be in (0, {TAIL_FRACTION})")
        self.rate = float(rate)
        self._log_rate = -math.log(self.rate)
        self.u = math.inf  # unfitted: nothing scores (but novelty rules may still fire)
        self.xi = 0.0
        self.sigma = 1.0

    @property
    def fitted(self) -> bool:
        return math.isfinite(self.u)

    def fit(self, raw: np.ndarray) -> None:
        r = np.asarray(raw, dtype=float)
        r = r[np.isfinite(r)]
        if r.size < 2 * MIN_EXCESSES:
            self.u = math.inf
            return
        u = float(np.quantile(r, 1.0 - TAIL_FRACTION))
        excess = r[r > u] - u
        self.u = u
        self.xi, self.sigma = gpd_pwm(excess)

    def neg_log_p(self, raw: np.ndarray) -> np.ndarray:
        """-log P(a recent raw deviation exceeds ``raw``) (below u: linear up to -log TAIL_FRACTION)."""
        x = np.asarray(raw, dtype=float)
        base = -math.log(TAIL_FRACTION)
        if not self.fitted:
            return np.zeros_like(x)
        y = x - self.u
        with np.errstate(all="ignore"):
            if abs(self.xi) < 1e-6:
                tail = y / self.sigma
            else:
                arg = 1.0 + self.xi * y / self.sigma
                tail = np.where(arg > 0.0, np.log(np.maximum(arg, 1e-300)) / self.xi, MAX_NEG_LOG_P)
            below = base * np.maximum(x, 0.0) / self.u if self.u > 0 else np.zeros_like(x)
        out = np.where(y > 0.0, base + tail, below)
        return np.clip(np.nan_to_num(out, nan=0.0, posinf=MAX_NEG_LOG_P), 0.0, MAX_NEG_LOG_P)

    def score(self, raw: np.ndarray) -> np.ndarray:
        """log P / log rate: > 1 exactly when the deviation is rarer than ``rate``."""
        return self.neg_log_p(raw) / self._log_rate

    def level(self, score: float = 1.0) -> float:
        """The raw deviation at which the score reaches ``score`` (inf when unfitted)."""
        if not self.fitted:
            return math.inf
        target = score * self._log_rate + math.log(TAIL_FRACTION)  # -log S(y) for the excess
        if target <= 0.0:
            return self.u * score * self._log_rate / -math.log(TAIL_FRACTION) if self.u > 0 else 0.0
        if abs(self.xi) < 1e-6:
            return self.u + self.sigma * target
        return self.u + self.sigma / self.xi * math.expm1(self.xi * target)
