"""Run the real exporter app with a fake NVML (two GPUs), for tests on machines without a GPU.

NVML is the one boundary that cannot run here. Everything else is the exporter as shipped: its
config loader, app factory, collectors, anomaly component and HTTP server. The fake GPUs show what a
busy host shows (one GPU throttled by a hardware slowdown), and one Xid event per GPU is delivered
once the exporter's event thread has registered, so every GPU series the dashboards query exists.

  python -m tests.bundle.fake_gpu_exporter --config exporter.yaml --port 9400
"""
from __future__ import annotations

import argparse
import logging
import threading
import time
from pathlib import Path

from aiohttp import web
from prometheus_client import disable_created_metrics

from exporter.app import create_app
from exporter.config import load_config
from devstack.fake_nvml import FakeGPU, FakeNVML

HW_SLOWDOWN = 0x8


def fake_nvml() -> FakeNVML:
    busy = FakeGPU(utilization_gpu=97, temperature_gpu=78, memory_used=70 * 1024**3,
                   clock_event_reasons=HW_SLOWDOWN | 0x4)
    return FakeNVML([FakeGPU(), busy])


def deliver_xids_when_registered(nvml: FakeNVML, events: list[tuple[int, int]], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if {index for index, _ in events} <= nvml.registered_event_devices():
            for index, xid in events:
                nvml.push_xid(index, xid)
            return
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="exporter YAML config")
    parser.add_argument("--port", type=int, required=True, help="TCP port on 127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    disable_created_metrics()
    config = load_config(args.config)
    nvml = fake_nvml()
    app = create_app(config, config_dir=args.config.resolve().parent, nvml_module=nvml)
    threading.Thread(target=deliver_xids_when_registered, args=(nvml, [(0, 79), (1, 13)]), daemon=True).start()
    web.run_app(app, host="127.0.0.1", port=args.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
