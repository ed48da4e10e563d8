"""The arrival schedule: a daily traffic curve on a (compressible) simulated clock."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass

from loadgen.config import RateConfig


@dataclass
class DailyPattern:
    """rate(h) = mean * (1 + amplitude * cos(2 pi (h - peak_hour) / 24)) at simulated hour h.

    The mean over a day is `requests_per_second`; `day_length_s` wall seconds make one simulated day,
    so a demo can show a whole day's swing in minutes.
    """

    cfg: RateConfig
    start_hour: float

    def simulated_hour(self, elapsed_s: float) -> float:
        return (self.start_hour + 24.0 * elapsed_s / self.cfg.day_length_s) % 24.0

    def rate(self, elapsed_s: float, multiplier: float = 1.0) -> float:
        hour = self.simulated_hour(elapsed_s)
        shape = 1.0 + self.cfg.daily_amplitude * math.cos(2 * math.pi * (hour - self.cfg.peak_hour) / 24.0)
        return self.cfg.requests_per_second * shape * multiplier

    def next_gap(self, elapsed_s: float, rng: random.Random, multiplier: float = 1.0) -> float:
        """Seconds to the next arrival of a Poisson process at the current rate."""
        return rng.expovariate(self.rate(elapsed_s, multiplier))
