"""Against the real NVML on a machine with an NVIDIA GPU: the exporter agrees with nvidia-smi.

Skipped (with the reason) where there is no nvidia-smi or NVML cannot be initialised.
"""
from __future__ import annotations

import shutil
import subprocess

import pytest

from exporter.app import create_app
from exporter.config import ExporterConfig, parse_config
from tests.exporter.conftest import promtool_check, samples, value

pytestmark = pytest.mark.gpu

MiB = 1024**2
QUERY = "index,memory.used,memory.total,temperature.gpu,power.draw"


def _nvml_available() -> str | None:
    """None when NVML initialises, else why not."""
    if shutil.which("nvidia-smi") is None:
        return "nvidia-smi is not on PATH (no NVIDIA driver on this machine)"
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception as exc:  # noqa: BLE001 - any failure means: no usable GPU here
        return f"NVML cannot be initialised: {exc}"
    return None


def _smi() -> dict[str, dict[str, float]]:
    out = subprocess.run(
        ["nvidia-smi", f"--query-gpu={QUERY}", "--format=csv,noheader,nounits"], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    rows = {}
    for line in out.strip().splitlines():
        index, used, total, temp, power = [part.strip() for part in line.split(",")]
        rows[index] = {"used": float(used) * MiB, "total": float(total) * MiB, "temp": float(temp), "power": float(power) if power not in ("[N/A]", "N/A") else float("nan")}
    return rows


@pytest.fixture(scope="module")
def gpu_required() -> None:
    reason = _nvml_available()
    if reason is not None:
        pytest.skip(f"needs an NVIDIA GPU: {reason}")


async def test_exporter_matches_nvidia_smi(gpu_required, aiohttp_client):
    cfg: ExporterConfig = parse_config({"nvml": {"max_age_seconds": 0, "process_memory": True}})
    client = await aiohttp_client(create_app(cfg))  # the real pynvml
    resp = await client.get("/metrics")
    text = await resp.text()
    smi = _smi()
    parsed = samples(text)
    assert value(parsed, "nvidia_gpu_nvml_up") == 1
    assert value(parsed, "nvidia_gpu_devices") == len(smi)
    for index, ref in smi.items():
        assert value(parsed, "nvidia_gpu_up", gpu=index) == 1
        total = value(parsed, "nvidia_gpu_memory_total_bytes", gpu=index)
        used = value(parsed, "nvidia_gpu_memory_used_bytes", gpu=index)
        reserved = value(parsed, "nvidia_gpu_memory_reserved_bytes", gpu=index) or 0.0
        assert total == pytest.approx(ref["total"], rel=0.01, abs=2 * MiB)
        # nvidia-smi reports used with or without the driver-reserved part depending on its version
        tolerance = max(256 * MiB, 0.05 * ref["used"])
        assert min(abs(used - ref["used"]), abs(used + reserved - ref["used"])) <= tolerance
        assert value(parsed, "nvidia_gpu_temperature_celsius", gpu=index, sensor="gpu") == pytest.approx(ref["temp"], abs=3)
        if ref["power"] == ref["power"]:  # not NaN
            assert value(parsed, "nvidia_gpu_power_usage_watts", gpu=index) == pytest.approx(ref["power"], rel=0.15, abs=30)
    assert promtool_check(text) == ""
