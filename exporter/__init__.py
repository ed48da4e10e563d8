"""The exporter: GPU metrics from NVML and anomaly scores over Prometheus series, on one /metrics."""
from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("ecommerce-model-monitoring")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
