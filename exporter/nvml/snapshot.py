"""One NVML pass as plain data, and the metric families it fills (names, types, labels)."""
from __future__ import annotations

from dataclasses import dataclass, field

GPU_LABELS = ("gpu", "uuid")


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # "gauge" or "counter"
    help: str
    labels: tuple[str, ...]


def _gpu(name: str, kind: str, help: str, *extra: str) -> Family:
    return Family(name, kind, help, GPU_LABELS + extra)


FAMILIES: tuple[Family, ...] = (
    Family("nvidia_gpu_nvml_up", "gauge", "1 when NVML is initialised.", ()),
    Family("nvidia_gpu_nvml_status", "gauge", "Why NVML is up or down (1 for the current reason).", ("reason",)),
    Family("nvidia_gpu_devices", "gauge", "Devices NVML reports.", ()),
    _gpu("nvidia_gpu_info", "gauge", "GPU identity; always 1.", "name", "driver_version", "cuda_version", "pci_bus_id", "compute_capability"),
    _gpu("nvidia_gpu_up", "gauge", "0 when the device is lost or answers with errors."),
    _gpu("nvidia_gpu_utilization_ratio", "gauge", "GPU busy share, 0..1."),
    _gpu("nvidia_gpu_memory_utilization_ratio", "gauge", "Memory-controller busy share, 0..1."),
    _gpu("nvidia_gpu_memory_total_bytes", "gauge", "Framebuffer memory total."),
    _gpu("nvidia_gpu_memory_used_bytes", "gauge", "Framebuffer memory used."),
    _gpu("nvidia_gpu_memory_free_bytes", "gauge", "Framebuffer memory free."),
    _gpu("nvidia_gpu_memory_reserved_bytes", "gauge", "Framebuffer memory reserved by the driver."),
    _gpu("nvidia_gpu_temperature_celsius", "gauge", "Temperatures by sensor.", "sensor"),
    _gpu("nvidia_gpu_power_usage_watts", "gauge", "Power draw."),
    _gpu("nvidia_gpu_power_limit_watts", "gauge", "Enforced power limit."),
    _gpu("nvidia_gpu_energy_joules_total", "counter", "Energy since the driver was loaded."),
    _gpu("nvidia_gpu_clock_hz", "gauge", "Current clocks.", "clock"),
    _gpu("nvidia_gpu_clock_event_active", "gauge", "1 while a clock-event (throttle) reason is active.", "reason"),
    _gpu("nvidia_gpu_pstate", "gauge", "Performance state (0 = P0)."),
    _gpu("nvidia_gpu_fan_speed_ratio", "gauge", "Fan speed, 0..1.", "fan"),
    _gpu("nvidia_gpu_ecc_errors_total", "counter", "Aggregate (lifetime) ECC error counts.", "type"),
    _gpu("nvidia_gpu_retired_pages", "gauge", "Retired pages (pre-Ampere).", "cause"),
    _gpu("nvidia_gpu_remapped_rows", "gauge", "Row remapping (Ampere+).", "kind"),
    _gpu("nvidia_gpu_pcie_replay_errors_total", "counter", "PCIe replay counter."),
    _gpu("nvidia_gpu_pcie_throughput_bytes_per_second", "gauge", "PCIe throughput (sampled by NVML over 20 ms).", "direction"),
    _gpu("nvidia_gpu_xid_errors_total", "counter", "Xid events seen by the event thread.", "xid"),
    _gpu("nvidia_gpu_last_xid_timestamp_seconds", "gauge", "When the last Xid arrived (0 = none)."),
    _gpu("nvidia_gpu_process_memory_used_bytes", "gauge", "GPU memory used by a process.", "pid", "process"),
    Family("nvidia_gpu_process_series_dropped_total", "counter", "Process series left out by the series cap, summed over passes.", ()),
    _gpu("nvidia_gpu_mig_memory_used_bytes", "gauge", "Memory used on a MIG device.", "mig_index", "mig_uuid", "gi", "ci"),
    _gpu("nvidia_gpu_mig_memory_total_bytes", "gauge", "Memory total of a MIG device.", "mig_index", "mig_uuid", "gi", "ci"),
    Family("nvidia_gpu_snapshot_timestamp_seconds", "gauge", "When the NVML pass being served finished (0 = none yet).", ()),
    Family("nvidia_gpu_snapshot_stale", "gauge", "1 when a pass overran the scrape timeout and the last good pass is served.", ()),
)
FAMILY_BY_NAME = {f.name: f for f in FAMILIES}

Sample = tuple[tuple[str, ...], float]


@dataclass
class Snapshot:
    """The result of one NVML pass: samples per family name, plus when it finished."""

    nvml_up: bool
    reason: str
    samples: dict[str, list[Sample]] = field(default_factory=dict)
    completed_wall: float = 0.0
    completed_monotonic: float = 0.0

    def add(self, family: str, labels: tuple[str, ...], value: float) -> None:
        spec = FAMILY_BY_NAME[family]
        if len(labels) != len(spec.labels):
            raise ValueError(f"{family} takes labels {spec.labels}, got {labels}")
        self.samples.setdefault(family, []).append((labels, float(value)))

    def get(self, family: str) -> list[Sample]:
        return self.samples.get(family, [])
