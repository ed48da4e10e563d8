"""Input/output drift per model version: registration reference vs. a rolling online window.

Features (one value per served search request):
- `top1_score`: cosine score of the first result;
- `score_spread`: top-1 score minus the score at position min(k, 10) (how peaked the ranking is);
- `query_tokens`: tokens of the query (with special tokens, capped at the model's max length).

Statistics, recomputed at scrape time from the current window (cheap: O(n log n) on a few thousand
floats):
- Kolmogorov-Smirnov statistic: the largest gap between the two empirical CDFs (equals
  `scipy.stats.ks_2samp(...).statistic`).
- Population stability index: bins are the reference deciles (`psi_bins` quantile edges, duplicates
  merged so discrete features such as token counts work, open-ended outer bins); each bin's share is
  floored at `psi_epsilon` (1e-4) so an empty bin does not make the log infinite;
  PSI = sum((online - reference) * ln(online / reference)). Rule of thumb: < 0.1 stable, 0.1-0.25
  moderate shift, > 0.25 major shift.

Gauges appear once the window holds `min_samples` values; `inference_drift_window_samples` always.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Iterable, Mapping, Optional

import numpy as np
from scipy.stats import ks_2samp
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from inference_server.config import DriftConfig

__all__ = ["DRIFT_FEATURES", "DriftConfig", "DriftCollector", "DriftMonitor", "ks_statistic", "psi",
           "score_spread"]

DRIFT_FEATURES = ("top1_score", "score_spread", "query_tokens")
SPREAD_DEPTH = 10


def score_spread(scores: Iterable[float]) -> Optional[float]:
    """Top-1 score minus the score at position min(k, 10); None for an empty answer."""
    values = list(scores)
    if not values:
        return None
    return float(values[0] - values[min(len(values), SPREAD_DEPTH) - 1])


def ks_statistic(reference: np.ndarray, online: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic sup |F_ref - F_online| (scipy's ks_2samp); NaN when a side is empty."""
    ref = np.asarray(reference, dtype=np.float64)
    onl = np.asarray(online, dtype=np.float64)
    if ref.size == 0 or onl.size == 0:
        return float("nan")
    return float(ks_2samp(ref, onl).statistic)


def psi_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference quantiles, duplicates merged."""
    qs = np.quantile(np.asarray(reference, dtype=np.float64), np.linspace(0.0, 1.0, bins + 1)[1:-1])
    return np.unique(qs)


def psi(reference: np.ndarray, online: np.ndarray, bins: int = 10, epsilon: float = 1e-4,
        edges: Optional[np.ndarray] = None) -> float:
    """Population stability index of `online` against `reference` (see module docstring)."""
    ref = np.asarray(reference, dtype=np.float64)
    onl = np.asarray(online, dtype=np.float64)
    if ref.size == 0 or onl.size == 0:
        return float("nan")
    inner = psi_edges(ref, bins) if edges is None else edges
    n_bins = inner.size + 1
    p_ref = np.bincount(np.searchsorted(inner, ref, side="right"), minlength=n_bins) / ref.size
    p_onl = np.bincount(np.searchsorted(inner, onl, side="right"), minlength=n_bins) / onl.size
    p_ref = np.maximum(p_ref, epsilon)
    p_onl = np.maximum(p_onl, epsilon)
    return float(np.sum((p_onl - p_ref) * np.log(p_onl / p_ref)))


class DriftMonitor:
    """Reference distributions and online windows of one model version."""

    def __init__(self, model: str, version: str, reference: Mapping[str, np.ndarray], config: DriftConfig) -> None:
        self.model = model
        self.version = version
        self.config = config
        self.reference = {f: np.asarray(reference[f], dtype=np.float64) for f in DRIFT_FEATURES if f in reference}
        self._edges = {f: psi_edges(ref, config.psi_bins) for f, ref in self.reference.items() if ref.size}
        self._windows: dict[str, deque[float]] = {f: deque(maxlen=config.window_size) for f in DRIFT_FEATURES}
        self._lock = threading.Lock()   # observe() on the loop, snapshot() from the scrape thread

    def observe(self, top1_score: Optional[float], spread: Optional[float], query_tokens: Optional[int]) -> None:
        with self._lock:
            if top1_score is not None:
                self._windows["top1_score"].append(float(top1_score))
            if spread is not None:
                self._windows["score_spread"].append(float(spread))
            if query_tokens is not None:
                self._windows["query_tokens"].append(float(query_tokens))

    def observe_answer(self, scores: Iterable[float], query_tokens: Optional[int]) -> None:
        values = list(scores)
        self.observe(values[0] if values else None, score_spread(values), query_tokens)

    def window(self, feature: str) -> np.ndarray:
        with self._lock:
            return np.fromiter(self._windows[feature], dtype=np.float64)

    def statistics(self) -> dict[str, dict[str, float]]:
        """{feature: {"samples", "psi"?, "ks"?}}; psi/ks only with enough samples and a reference."""
        out: dict[str, dict[str, float]] = {}
        for feature in DRIFT_FEATURES:
            online = self.window(feature)
            stats: dict[str, float] = {"samples": float(online.size)}
            ref = self.reference.get(feature)
            if ref is not None and ref.size and online.size >= self.config.min_samples:
                stats["psi"] = psi(ref, online, self.config.psi_bins, self.config.psi_epsilon, self._edges[feature])
                stats["ks"] = ks_statistic(ref, online)
            out[feature] = stats
        return out


class DriftCollector(Collector):
    """Exports the drift gauges of whatever monitors `monitors()` returns at scrape time."""

    def __init__(self, monitors) -> None:
        self._monitors = monitors

    @staticmethod
    def _families() -> list[GaugeMetricFamily]:
        """The (static) families this collector exports, empty."""
        labels = ("model", "version", "feature")
        return [
            GaugeMetricFamily("inference_drift_psi", "Population stability index of the online window vs. the registration reference.", labels=labels),
            GaugeMetricFamily("inference_drift_ks_statistic", "Kolmogorov-Smirnov statistic of the online window vs. the registration reference.", labels=labels),
            GaugeMetricFamily("inference_drift_window_samples", "Samples in the online drift window.", labels=labels),
        ]

    def describe(self):
        return self._families()

    def collect(self):
        psi_g, ks_g, n_g = self._families()
        for monitor in self._monitors():
            for feature, stats in monitor.statistics().items():
                key = (monitor.model, monitor.version, feature)
                n_g.add_metric(key, stats["samples"])
                if "psi" in stats:
                    psi_g.add_metric(key, stats["psi"])
                    ks_g.add_metric(key, stats["ks"])
        yield psi_g
        yield ks_g
        yield n_g
