"""The detector contract shared by every online anomaly detector.

A detector separates an expensive ``fit(history)`` (run every ``fit_every``) from a cheap
``score(values)`` that scores points *following* everything it has seen, using only fitted state and
those earlier points, so a score at time t never depends on data after t.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from enum import Enum

import numpy as np

MAD_TO_SIGMA = 1.4826


class Direction(str, Enum):
    """Which side of the expected value counts as anomalous."""

    ABOVE = "above"
    BELOW = "below"
    BOTH = "both"

    def fold(self, deviation: np.ndarray) -> np.ndarray:
        """The size of a signed deviation on the side(s) that count; the other side scores 0."""
        if self is Direction.ABOVE:
            return np.maximum(deviation, 0.0)
        if self is Direction.BELOW:
            return np.maximum(-deviation, 0.0)
        return np.abs(deviation)


@dataclass(frozen=True)
class DetectorOutput:
    """Per-point results: score >= 0 (> 1 anomalous), expected value and the band [lower, upper]."""

    score: np.ndarray
    expected: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def __len__(self) -> int:
        return len(self.score)

    @staticmethod
    def concat(parts: list["DetectorOutput"]) -> "DetectorOutput":
        if not parts:
            empty = np.empty(0)
            return DetectorOutput(empty, empty, empty, empty)
        return DetectorOutput(*(np.concatenate([getattr(p, f) for p in parts])
                                for f in ("score", "expected", "lower", "upper")))


def robust_scale(residuals: np.ndarray, floor: float = 0.0) -> float:
    """Sigma estimate from the MAD, falling back to the mean absolute deviation when MAD is 0."""
    r = np.asarray(residuals, dtype=float)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return floor
    med = float(np.median(r))
    mad = MAD_TO_SIGMA * float(np.median(np.abs(r - med)))
    if mad <= 0.0:
        mad = 1.2533 * float(np.mean(np.abs(r - med)))  # sigma from mean absolute deviation
    return max(mad, floor)


def scale_floor(values: np.ndarray) -> float:
    """A tiny scale so a perfectly flat history does not make every change infinitely anomalous."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    level = float(np.median(np.abs(v))) if v.size else 0.0
    return max(1e-3 * level, 1e-9)


class Detector(ABC):
    """An online detector: `fit` on history, then `score` the points that follow it, in order.

    Every detector takes a direction (which side of the expected value counts), a min_deviation
    (deviations smaller than this never score above 1) and sigmas (the band's width in scales).
    """

    name: str = "detector"

    def __init__(self, *, direction: Direction | str = Direction.BOTH, min_deviation: float = 0.0,
                 sigmas: float = 3.0) -> None:
        self.direction = Direction(direction)
        if min_deviation < 0 or not math.isfinite(min_deviation):
            raise ValueError("min_deviation must be a finite number >= 0")
        if sigmas <= 0:
            raise ValueError("sigmas must be > 0")
        self.min_deviation = float(min_deviation)
        self.sigmas = float(sigmas)
        self.fitted = False

    @abstractmethod
    def fit(self, history: np.ndarray) -> None:
        """Estimate state from ``history`` (oldest first); the next ``score`` call continues it."""

    @abstractmethod
    def score(self, values: np.ndarray) -> DetectorOutput:
        """Score points that follow the fitted history, in order."""


class BandDetector(Detector):
    """A detector that predicts an expected value and a scale per point.

    The band is expected +/- max(sigmas * scale, min_deviation), and the score is the deviation
    divided by the band's half-width.
    """

    @abstractmethod
    def _predict(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Expected value and scale (sigma) for each of ``values``, advancing internal state."""

    def score(self, values: np.ndarray) -> DetectorOutput:
        if not self.fitted:
            raise RuntimeError(f"{self.name}: score() before fit()")
        values = np.asarray(values, dtype=float)
        expected, scale = self._predict(values)
        half = np.maximum(self.sigmas * np.asarray(scale, dtype=float), self.min_deviation)
        half = np.maximum(half, 1e-12)
        dev = self.direction.fold(values - expected)
        score = np.where(np.isfinite(dev), dev / half, 0.0)
        return DetectorOutput(score=score, expected=expected, lower=expected - half,
                              upper=expected + half)
