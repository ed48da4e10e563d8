"""A prometheus_client custom collector that renders the NVML snapshot being served."""
from __future__ import annotations

from typing import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from exporter.nvml.snapshot import FAMILIES, Snapshot


class NvmlCollector(Collector):
    """Renders whatever snapshot `current()` returns; never touches NVML itself (cheap, non-blocking)."""

    def __init__(self, current: Callable[[], tuple[Snapshot | None, bool]]) -> None:
        self._current = current

    def describe(self) -> list[Metric]:
        """Every family the exporter can serve (which ones carry samples depends on the hardware)."""
        return [_family(family) for family in FAMILIES]

    def collect(self) -> Iterator[Metric]:
        snapshot, stale = self._current()
        samples = dict(snapshot.samples) if snapshot is not None else {
            "nvidia_gpu_nvml_up": [((), 0.0)],
            "nvidia_gpu_nvml_status": [(("error",), 1.0)],
        }
        samples["nvidia_gpu_snapshot_timestamp_seconds"] = [((), snapshot.completed_wall if snapshot else 0.0)]
        samples["nvidia_gpu_snapshot_stale"] = [((), 1.0 if stale else 0.0)]
        for family in FAMILIES:
            rows = samples.get(family.name)
            if not rows:
                continue
            metric = _family(family)
            for labels, value in rows:
                metric.add_metric(list(labels), value)
            yield metric


def _family(family) -> Metric:
    cls = CounterMetricFamily if family.kind == "counter" else GaugeMetricFamily
    return cls(family.name, family.help, labels=list(family.labels))
