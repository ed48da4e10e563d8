"""Run a detector online over a whole series: refit every ``fit_every`` points, score in between."""
from __future__ import annotations

import numpy as np

from .detectors import Detector, DetectorOutput


def stream(detector: Detector, values: np.ndarray, *, fit_every: int, fit_window: int,
           min_fit: int) -> DetectorOutput:
    """Score every point of ``values`` using only earlier points.

    Points before the first fit (fewer than ``min_fit`` seen) score 0 with the value as expected.
    Each refit sees the last ``fit_window`` points before the chunk it then scores.
    """
    values = np.asarray(values, dtype=float)
    n = values.size
    parts: list[DetectorOutput] = []
    start = min(max(min_fit, 1), n)
    warm = values[:start]
    parts.append(DetectorOutput(np.zeros(start), warm.copy(), warm.copy(), warm.copy()))
    t = start
    while t < n:
        try:
            detector.fit(values[max(0, t - fit_window):t])
        except ValueError:
            if not detector.fitted:
                end = min(t + fit_every, n)
                chunk = values[t:end]
                parts.append(DetectorOutput(np.zeros(end - t), chunk.copy(), chunk.copy(), chunk.copy()))
                t = end
                continue
        end = min(t + fit_every, n)
        parts.append(detector.score(values[t:end]))
        t = end
    return DetectorOutput.concat(parts)
