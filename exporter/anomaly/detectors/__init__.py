"""Online anomaly detectors and the registry that builds them from a job's configuration."""
from __future__ import annotations

from typing import Any

from .base import Detector, DetectorOutput, Direction
from .ensemble import EnsembleDetector
from .holt_winters import HoltWintersDetector
from .robust_z import RobustZScore
from .seasonality import detect_period
from .stl import STLDetector

DETECTORS: dict[str, type[Detector]] = {
    cls.name: cls for cls in (RobustZScore, STLDetector, HoltWintersDetector, EnsembleDetector)
}
DEFAULT_DETECTOR = "ensemble"


def build_detector(name: str, params: dict[str, Any] | None = None, *,
                   direction: Direction | str = Direction.BOTH, min_deviation: float = 0.0
                   ) -> Detector:
    """A fresh detector; raises ValueError/TypeError naming the bad parameter."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ValueError(f"unknown detector {name!r} (known: {', '.join(sorted(DETECTORS))})") from None
    return cls(direction=direction, min_deviation=min_deviation, **(params or {}))


__all__ = ["DETECTORS", "DEFAULT_DETECTOR", "Detector", "DetectorOutput", "Direction",
           "build_detector", "detect_period", "EnsembleDetector", "HoltWintersDetector",
           "RobustZScore", "STLDetector"]
