"""One NVML pass over every GPU, with the library's lifecycle: init, loss, re-init with backoff.

Runs in a worker thread (NVML calls block). A function a device does not support is remembered per
device and function, counted once and never retried until NVML is re-initialised; a lost device or a
device answering with errors is reported with `nvidia_gpu_up 0` while the others keep reporting; NVML
itself failing (driver unloaded, library missing) turns into `nvidia_gpu_nvml_up 0` with a reason and
a re-initialisation attempt after an exponentially growing delay.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from exporter.config import NvmlConfig
from exporter.nvml.errors import ErrorCodes, error_label
from exporter.nvml.processes import process_name
from exporter.nvml.snapshot import Snapshot
from exporter.nvml.xid import XidMonitor

log = logging.getLogger(__name__)

ErrorRecorder = Callable[[str, str], None]  # (function, error label)

# NVML's clock-event (formerly "throttle") reason bits, from nvml.h; stable ABI values.
CLOCK_EVENT_REASONS: tuple[tuple[str, int], ...] = (
    ("gpu_idle", 0x1),
    ("applications_clocks_setting", 0x2),
    ("sw_power_cap", 0x4),
    ("hw_slowdown", 0x8),
    ("sync_boost", 0x10),
    ("sw_thermal_slowdown", 0x20),
    ("hw_thermal_slowdown", 0x40),
    ("hw_power_brake_slowdown", 0x80),
    ("display_clock_setting", 0x100),
)


class _Missing:
    """Marker: the value is not available (unsupported, or the call failed and was counted)."""


MISSING = _Missing()


class _DeviceLost(Exception):
    pass


class _LibraryDown(Exception):
    def __init__(self, code: int | None, function: str, error: str) -> None:
        super().__init__(code, function, error)
        self.code, self.function, self.error = code, function, error


@dataclass
class _Identity:
    uuid: str
    name: str
    pci_bus_id: str
    compute_capability: str


@dataclass
class _Device:
    index: str
    uuid: str
    handle: Any
    ok: bool = True

    @property
    def labels(self) -> tuple[str, str]:
        return (self.index, self.uuid)


def _format_cuda_version(version: int) -> str:
    return f"{version // 1000}.{(version % 1000) // 10}"


class NvmlSampler:
    """Produces Snapshots; one pass at a time (a lock guards the NVML session state)."""

    def __init__(
        self,
        nvml: Any,
        config: NvmlConfig,
        record_error: ErrorRecorder,
        *,
        name_of_process: Callable[[int], str] = process_name,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._nvml = nvml
        self._config = config
        self._record_error = record_error
        self._name_of_process = name_of_process
        self._monotonic = monotonic
        self._wall = wall
        self._codes = ErrorCodes.from_module(nvml)
        self._lock = threading.Lock()
        self._initialised = False
        self._reason = "error"
        self._next_init_at = 0.0
        self._backoff = config.reinit_backoff_initial_seconds
        self._warned: str | None = None  # the failure already logged as a warning in this down period
        self._driver_version = ""
        self._cuda_version = ""
        self._identities: dict[int, _Identity] = {}
        self._known_uuids: dict[int, str] = {}  # index -> uuid, kept across generations for gpu_up 0
        self._unsupported: set[tuple[str, str]] = set()
        self._supported_reasons: dict[str, int] = {}
        self._process_series_dropped = 0
        self.xid = XidMonitor(nvml, record_error, config.xid_wait_milliseconds, wall=wall) if config.xid_events else None

    # -- lifecycle -----------------------------------------------------------------------------------
    @property
    def initialised(self) -> bool:
        return self._initialised

    def _try_init(self) -> bool:
        nvml = self._nvml
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            self._schedule_reinit(exc.value, "nvmlInit", error_label(exc))
            return False
        except OSError as exc:  # a broken library file that ctypes cannot load
            self._schedule_reinit(None, "nvmlInit", type(exc).__name__.lower())
            return False
        self._initialised = True
        self._reason = "ok"
        self._warned = None
        self._backoff = self._config.reinit_backoff_initial_seconds
        self._identities.clear()
        self._unsupported.clear()
        self._supported_reasons.clear()
        self._driver_version = self._system_string("nvmlSystemGetDriverVersion")
        cuda = self._system_value("nvmlSystemGetCudaDriverVersion_v2")
        if cuda is MISSING:
            cuda = self._system_value("nvmlSystemGetCudaDriverVersion")
        self._cuda_version = "" if cuda is MISSING else _format_cuda_version(int(cuda))
        log.info("NVML initialised (driver %s, CUDA %s)", self._driver_version, self._cuda_version)
        if self.xid is not None:
            self.xid.start()
        return True

    def _schedule_reinit(self, code: int | None, function: str, error: str) -> None:
        self._reason = self._codes.down_reason(code)
        self._record_error(function, error)
        self._next_init_at = self._monotonic() + self._backoff
        # Warn once per down period and kind of failure (a CPU host would log it every minute forever);
        # every attempt is counted in exporter_collector_errors_total and shown by nvidia_gpu_nvml_up.
        if self._warned != f"{function}:{error}":
            self._warned = f"{function}:{error}"
            log.warning("NVML unavailable (%s: %s); retrying with backoff (up to %.0fs), further failures are "
                        "counted in exporter_collector_errors_total, not logged", function, error,
                        self._config.reinit_backoff_max_seconds)
        else:
            log.debug("NVML still unavailable (%s: %s); next init attempt in %.1fs", function, error, self._backoff)
        self._backoff = min(self._backoff * 2, self._config.reinit_backoff_max_seconds)

    def _lose_library(self, code: int | None, function: str, error: str) -> None:
        """NVML stopped working under us (driver restart): tear down and re-init later."""
        if self.xid is not None:
            self.xid.stop()
        try:
            self._nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - best effort; the library is already broken
            pass
        self._initialised = False
        self._schedule_reinit(code, function, error)

    def shutdown(self) -> None:
        """Stop the Xid thread and release NVML (called once at exporter stop)."""
        with self._lock:
            if self.xid is not None:
                self.xid.stop()
            if self._initialised:
                try:
                    self._nvml.nvmlShutdown()
                except Exception:  # noqa: BLE001
                    pass
                self._initialised = False

    def _system_value(self, function: str) -> Any:
        try:
            return getattr(self._nvml, function)()
        except AttributeError:
            return MISSING
        except self._nvml.NVMLError as exc:
            self._record_error(function, error_label(exc))
            return MISSING

    def _system_string(self, function: str) -> str:
        value = self._system_value(function)
        return "" if value is MISSING else str(value)

    # -- one pass ------------------------------------------------------------------------------------
    def sample(self) -> Snapshot:
        """Run one NVML pass. Never raises for NVML errors; they end up in the snapshot and counters."""
        with self._lock:
            snapshot = self._sample_locked()
            snapshot.completed_wall = self._wall()
            snapshot.completed_monotonic = self._monotonic()
            return snapshot

    def _down_snapshot(self) -> Snapshot:
        snap = Snapshot(nvml_up=False, reason=self._reason)
        snap.add("nvidia_gpu_nvml_up", (), 0)
        snap.add("nvidia_gpu_nvml_status", (self._reason,), 1)
        self._add_xid(snap, [])
        return snap

    def _sample_locked(self) -> Snapshot:
        nvml = self._nvml
        if not self._initialised:
            if self._monotonic() < self._next_init_at or not self._try_init():
                return self._down_snapshot()
        try:
            count = nvml.nvmlDeviceGetCount()
        except nvml.NVMLError as exc:
            self._lose_library(exc.value, "nvmlDeviceGetCount", error_label(exc))
            return self._down_snapshot()
        if self.xid is not None and self.xid.needs_restart:
            self.xid.start()
        snap = Snapshot(nvml_up=True, reason="ok")
        snap.add("nvidia_gpu_nvml_up", (), 1)
        snap.add("nvidia_gpu_nvml_status", ("ok",), 1)
        snap.add("nvidia_gpu_devices", (), count)
        processes: list[tuple[tuple[str, ...], float]] = []
        seen: list[tuple[str, str]] = []
        try:
            for index in range(count):
                device = self._sample_device(index, snap, processes)
                seen.append(device.labels)
        except _LibraryDown as down:
            self._lose_library(down.code, down.function, down.error)
            return self._down_snapshot()
        if self._config.process_memory:
            self._add_processes(snap, processes)
        self._add_xid(snap, seen)
        return snap

    def _add_xid(self, snap: Snapshot, seen: list[tuple[str, str]]) -> None:
        if self.xid is None:
            return
        for (gpu, uuid, xid), value in sorted(self.xid.counts().items()):
            snap.add("nvidia_gpu_xid_errors_total", (gpu, uuid, xid), value)
        last = self.xid.last_timestamps()
        for labels in seen:
            last.setdefault(labels, 0.0)
        for labels, ts in sorted(last.items()):
            snap.add("nvidia_gpu_last_xid_timestamp_seconds", labels, ts)

    def _add_processes(self, snap: Snapshot, processes: list[tuple[tuple[str, ...], float]]) -> None:
        cap = self._config.max_process_series
        processes.sort(key=lambda item: (-item[1], item[0]))  # keep the biggest users under the cap
        kept, dropped = processes[:cap], processes[cap:]
        self._process_series_dropped += len(dropped)
        for labels, used in kept:
            snap.add("nvidia_gpu_process_memory_used_bytes", labels, used)
        snap.add("nvidia_gpu_process_series_dropped_total", (), self._process_series_dropped)

    # -- calls ---------------------------------------------------------------------------------------
    def _call(self, device: _Device, function: str, *args: Any, variant: str = "", absent: tuple[int, ...] = (), **kwargs: Any) -> Any:
        """Call an NVML device function; MISSING when unsupported/failed (recorded), raise on loss."""
        key = (device.uuid or f"index:{device.index}", f"{function}/{variant}")
        if key in self._unsupported:
            return MISSING
        nvml = self._nvml
        try:
            fn = getattr(nvml, function)
        except AttributeError:  # an older binding without this function
            self._unsupported.add(key)
            return MISSING
        try:
            return fn(*args, **kwargs)
        except nvml.NVMLError as exc:
            code = exc.value
            if code in absent:
                return MISSING
            if code in self._codes.library_down:
                raise _LibraryDown(code, function, error_label(exc)) from None
            self._record_error(function, error_label(exc))
            if code in self._codes.not_supported:
                self._unsupported.add(key)
                return MISSING
            device.ok = False
            if code in self._codes.gpu_lost:
                raise _DeviceLost() from None
            return MISSING
        except Exception as exc:  # noqa: BLE001 - e.g. NVMLLibraryMismatchError: binding and library disagree
            self._record_error(function, error_label(exc))
            self._unsupported.add(key)  # permanent for this library; retried after re-init
            return MISSING

    def _identity(self, device: _Device, index: int) -> _Identity | None:
        ident = self._identities.get(index)
        if ident is not None:
            return ident
        uuid = self._call(device, "nvmlDeviceGetUUID", device.handle)
        if uuid is MISSING:
            return None
        device.uuid = str(uuid)
        name = self._call(device, "nvmlDeviceGetName", device.handle)
        pci = self._call(device, "nvmlDeviceGetPciInfo", device.handle)
        cc = self._call(device, "nvmlDeviceGetCudaComputeCapability", device.handle)
        ident = _Identity(
            uuid=device.uuid,
            name="" if name is MISSING else str(name),
            pci_bus_id="" if pci is MISSING else str(pci.busId),
            compute_capability="" if cc is MISSING else f"{cc[0]}.{cc[1]}",
        )
        if device.ok:  # cache only a complete identity
            self._identities[index] = ident
        return ident

    def _sample_device(self, index: int, snap: Snapshot, processes: list) -> _Device:
        device = _Device(index=str(index), uuid=self._known_uuids.get(index, ""), handle=None)
        try:
            handle = self._call(device, "nvmlDeviceGetHandleByIndex", index)
            if handle is MISSING:
                device.ok = False
            else:
                device.handle = handle
                ident = self._identity(device, index)
                if ident is None:
                    device.ok = False
                else:
                    device.uuid = ident.uuid
                    self._known_uuids[index] = ident.uuid
                    snap.add(
                        "nvidia_gpu_info",
                        (*device.labels, ident.name, self._driver_version, self._cuda_version, ident.pci_bus_id, ident.compute_capability),
                        1,
                    )
                    self._sample_metrics(device, snap, processes)
        except _DeviceLost:
            device.ok = False
        snap.add("nvidia_gpu_up", device.labels, 1 if device.ok else 0)
        return device

    def _sample_metrics(self, d: _Device, snap: Snapshot, processes: list) -> None:
        nvml, h, labels = self._nvml, d.handle, d.labels
        call = self._call

        util = call(d, "nvmlDeviceGetUtilizationRates", h)
        if util is not MISSING:
            snap.add("nvidia_gpu_utilization_ratio", labels, util.gpu / 100.0)
            snap.add("nvidia_gpu_memory_utilization_ratio", labels, util.memory / 100.0)

        mem = call(d, "nvmlDeviceGetMemoryInfo", h, variant="v2", version=nvml.nvmlMemory_v2)
        if mem is MISSING:
            mem = call(d, "nvmlDeviceGetMemoryInfo", h)
        if mem is not MISSING:
            snap.add("nvidia_gpu_memory_total_bytes", labels, mem.total)
            snap.add("nvidia_gpu_memory_used_bytes", labels, mem.used)
            snap.add("nvidia_gpu_memory_free_bytes", labels, mem.free)
            reserved = getattr(mem, "reserved", None)
            if reserved is not None:
                snap.add("nvidia_gpu_memory_reserved_bytes", labels, reserved)

        temp = call(d, "nvmlDeviceGetTemperature", h, nvml.NVML_TEMPERATURE_GPU)
        if temp is not MISSING:
            snap.add("nvidia_gpu_temperature_celsius", (*labels, "gpu"), temp)
        mem_temp = self._field_value(d, nvml.NVML_FI_DEV_MEMORY_TEMP, "memory_temp")
        if mem_temp is not MISSING:
            snap.add("nvidia_gpu_temperature_celsius", (*labels, "memory"), mem_temp)

        power = call(d, "nvmlDeviceGetPowerUsage", h)
        if power is not MISSING:
            snap.add("nvidia_gpu_power_usage_watts", labels, power / 1000.0)
        limit = call(d, "nvmlDeviceGetEnforcedPowerLimit", h)
        if limit is not MISSING:
            snap.add("nvidia_gpu_power_limit_watts", labels, limit / 1000.0)
        energy = call(d, "nvmlDeviceGetTotalEnergyConsumption", h)
        if energy is not MISSING:
            snap.add("nvidia_gpu_energy_joules_total", labels, energy / 1000.0)

        for clock_name, clock_type in (("sm", nvml.NVML_CLOCK_SM), ("memory", nvml.NVML_CLOCK_MEM), ("graphics", nvml.NVML_CLOCK_GRAPHICS)):
            mhz = call(d, "nvmlDeviceGetClockInfo", h, clock_type, variant=clock_name)
            if mhz is not MISSING:
                snap.add("nvidia_gpu_clock_hz", (*labels, clock_name), mhz * 1e6)

        self._sample_clock_events(d, snap)

        pstate = call(d, "nvmlDeviceGetPerformanceState", h)
        if pstate is not MISSING and pstate != nvml.NVML_PSTATE_UNKNOWN:
            snap.add("nvidia_gpu_pstate", labels, pstate)

        fans = call(d, "nvmlDeviceGetNumFans", h)
        if fans is not MISSING:
            for fan in range(int(fans)):
                speed = call(d, "nvmlDeviceGetFanSpeed_v2", h, fan, variant=str(fan))
                if speed is not MISSING:
                    snap.add("nvidia_gpu_fan_speed_ratio", (*labels, str(fan)), speed / 100.0)

        for ecc_name, ecc_type in (("corrected", nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED), ("uncorrected", nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)):
            count = call(d, "nvmlDeviceGetTotalEccErrors", h, ecc_type, nvml.NVML_AGGREGATE_ECC, variant=ecc_name)
            if count is not MISSING:
                snap.add("nvidia_gpu_ecc_errors_total", (*labels, ecc_name), count)

        for cause_name, cause in (
            ("single_bit", nvml.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS),
            ("double_bit", nvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR),
        ):
            pages = call(d, "nvmlDeviceGetRetiredPages", h, cause, variant=cause_name)
            if pages is not MISSING:
                snap.add("nvidia_gpu_retired_pages", (*labels, cause_name), len(pages))

        rows = call(d, "nvmlDeviceGetRemappedRows", h)
        if rows is not MISSING:
            for kind, value in zip(("correctable", "uncorrectable", "pending", "failure"), rows):
                snap.add("nvidia_gpu_remapped_rows", (*labels, kind), value)

        replay = call(d, "nvmlDeviceGetPcieReplayCounter", h)
        if replay is not MISSING:
            snap.add("nvidia_gpu_pcie_replay_errors_total", labels, replay)

        if self._config.pcie_throughput:
            for direction, counter in (("tx", nvml.NVML_PCIE_UTIL_TX_BYTES), ("rx", nvml.NVML_PCIE_UTIL_RX_BYTES)):
                kbps = call(d, "nvmlDeviceGetPcieThroughput", h, counter, variant=direction)
                if kbps is not MISSING:
                    snap.add("nvidia_gpu_pcie_throughput_bytes_per_second", (*labels, direction), kbps * 1024.0)

        if self._config.process_memory:
            self._collect_processes(d, processes)

        if self._config.mig:
            self._sample_mig(d, snap)

    def _field_value(self, d: _Device, field_id: int, variant: str) -> Any:
        """One NVML field value as a number; per-field NOT_SUPPORTED is remembered like a function's."""
        key = (d.uuid, f"nvmlDeviceGetFieldValues/{variant}")
        values = self._call(d, "nvmlDeviceGetFieldValues", d.handle, [field_id], variant=variant)
        if values is MISSING:
            return MISSING
        fv = values[0]
        if fv.nvmlReturn != self._nvml.NVML_SUCCESS:
            exc = self._nvml.NVMLError(fv.nvmlReturn)
            self._record_error("nvmlDeviceGetFieldValues", error_label(exc))
            if fv.nvmlReturn in self._codes.not_supported:
                self._unsupported.add(key)
            return MISSING
        nvml = self._nvml
        by_type = {
            nvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
            nvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
            nvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
            nvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
            nvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
            nvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
            nvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
        }
        attr = by_type.get(fv.valueType)
        return MISSING if attr is None else getattr(fv.value, attr)

    def _sample_clock_events(self, d: _Device, snap: Snapshot) -> None:
        h = d.handle
        supported = self._supported_reasons.get(d.uuid)
        if supported is None:
            supported = self._call(d, "nvmlDeviceGetSupportedClocksEventReasons", h)
            if supported is MISSING:
                supported = self._call(d, "nvmlDeviceGetSupportedClocksThrottleReasons", h)
            supported = sum(bit for _, bit in CLOCK_EVENT_REASONS) if supported is MISSING else int(supported)
            self._supported_reasons[d.uuid] = supported
        active = self._call(d, "nvmlDeviceGetCurrentClocksEventReasons", h)
        if active is MISSING:
            active = self._call(d, "nvmlDeviceGetCurrentClocksThrottleReasons", h)
        if active is MISSING:
            return
        for reason, bit in CLOCK_EVENT_REASONS:
            if supported & bit:
                snap.add("nvidia_gpu_clock_event_active", (*d.labels, reason), 1 if int(active) & bit else 0)

    def _collect_processes(self, d: _Device, out: list) -> None:
        used_by_pid: dict[int, float] = {}
        for function in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            procs = self._call(d, function, d.handle)
            if procs is MISSING:
                continue
            for proc in procs:
                used = proc.usedGpuMemory
                if used is None:  # not available (e.g. WDDM, or without permission)
                    continue
                used_by_pid[int(proc.pid)] = used_by_pid.get(int(proc.pid), 0.0) + float(used)
        for pid, used in used_by_pid.items():
            out.append(((*d.labels, str(pid), self._name_of_process(pid)), used))

    def _sample_mig(self, d: _Device, snap: Snapshot) -> None:
        nvml, h = self._nvml, d.handle
        mode = self._call(d, "nvmlDeviceGetMigMode", h)
        if mode is MISSING or mode[0] != nvml.NVML_DEVICE_MIG_ENABLE:
            return
        slots = self._call(d, "nvmlDeviceGetMaxMigDeviceCount", h)
        if slots is MISSING:
            return
        for slot in range(int(slots)):
            mig = self._call(d, "nvmlDeviceGetMigDeviceHandleByIndex", h, slot, variant=str(slot), absent=(self._codes.not_found,))
            if mig is MISSING:
                continue
            mig_uuid = self._call(d, "nvmlDeviceGetUUID", mig, variant="mig")
            gi = self._call(d, "nvmlDeviceGetGpuInstanceId", mig)
            ci = self._call(d, "nvmlDeviceGetComputeInstanceId", mig)
            mem = self._call(d, "nvmlDeviceGetMemoryInfo", mig, variant="mig")
            if any(value is MISSING for value in (mig_uuid, gi, ci, mem)):
                continue
            labels = (*d.labels, str(slot), str(mig_uuid), str(gi), str(ci))
            snap.add("nvidia_gpu_mig_memory_used_bytes", labels, mem.used)
            snap.add("nvidia_gpu_mig_memory_total_bytes", labels, mem.total)
