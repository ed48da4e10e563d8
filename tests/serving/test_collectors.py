"""Custom collectors describe their (static) families, so a duplicate registration fails loudly instead of
exposing a family twice."""
from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from exporter.nvml.collector import NvmlCollector
from inference_server.lifecycle.drift import DriftCollector
from inference_server.lifecycle.manager import LifecycleCollector
from inference_server.serving.metrics import ServingStateCollector

COLLECTORS = {
    "serving_state": lambda: ServingStateCollector(lambda: None),
    "drift": lambda: DriftCollector(lambda: []),
    "lifecycle": lambda: LifecycleCollector(None),
    "nvml": lambda: NvmlCollector(lambda: (None, False)),
}


@pytest.mark.parametrize("name", sorted(COLLECTORS))
def test_collector_describes_its_families_and_refuses_a_duplicate(name):
    registry = CollectorRegistry()
    collector = COLLECTORS[name]()
    described = {m.name for m in collector.describe()}
    assert described, "describe() must list the families"
    registry.register(collector)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        registry.register(COLLECTORS[name]())


def test_described_families_cover_what_is_collected():
    collector = ServingStateCollector(lambda: None)
    assert {m.name for m in collector.collect()} <= {m.name for m in collector.describe()}
