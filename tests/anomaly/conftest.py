"""A real Prometheus backfilled (promtool tsdb create-blocks-from openmetrics) with two series."""
from __future__ import annotations

import math
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from devstack.processes import start_prometheus
from tests.support.binaries import require_binary

STEP = 60
POINTS = 360  # six hours at one-minute steps
SPIKE_POINTS = 3  # the newest points of the `search` series are anomalous


def _openmetrics(end: int) -> str:
    rng = np.random.default_rng(42)
    lines = ["# HELP demo_latency_seconds p95 latency of a demo service.",
             "# TYPE demo_latency_seconds gauge"]
    for endpoint in ("search", "rank"):
        for i in range(POINTS):
            ts = end - (POINTS - 1 - i) * STEP
            value = 0.2 + 0.05 * math.sin(2 * math.pi * i / 30) + rng.normal(0, 0.005)
            if endpoint == "search" and i >= POINTS - SPIKE_POINTS:
                value += 0.5
            lines.append(f'demo_latency_seconds{{endpoint="{endpoint}",instance="svc:1",job="svc"}} '
                         f"{value:.6f} {ts}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def backfilled_prometheus(tmp_path_factory):
    promtool = require_binary("promtool")
    require_binary("prometheus")
    workdir: Path = tmp_path_factory.mktemp("prom-anomaly")
    end = int(time.time()) // STEP * STEP - STEP
    source = workdir / "series.om"
    source.write_text(_openmetrics(end))
    subprocess.run([promtool, "tsdb", "create-blocks-from", "openmetrics", str(source),
                    str(workdir / "data")], check=True, capture_output=True)
    config = {"global": {"scrape_interval": "15s"}, "scrape_configs": []}
    prom = start_prometheus(workdir, config)
    prom.extra["end"] = end
    try:
        yield prom
    finally:
        prom.stop()
