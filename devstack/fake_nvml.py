"""A fake `pynvml` module for tests: the NVML boundary, which cannot run on a machine without a GPU.

It implements the subset of the nvidia-ml-py API the exporter calls, with the real binding's exception
classes (`pynvml.NVMLError(code)` maps to `NVMLError_NotSupported` etc.) and constants, so code written
against it behaves the same with the real library. Scenarios: any number of GPUs, unsupported
functions, per-function errors, a lost GPU, a missing library or driver, a driver restart, a hung call,
Xid events, running processes and MIG devices. Pass an instance wherever the exporter takes the NVML
module (`NvmlComponent(..., nvml=fake)`, `create_app(..., nvml_module=fake)`).
"""
from __future__ import annotations

import queue
import threading
from collections import Counter
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml as _real

GiB = 1024**3
NVMLError = _real.NVMLError


def nvml_error(code: int) -> Exception:
    """The real binding's exception for `code` (e.g. NVMLError_GpuIsLost)."""
    return _real.NVMLError(code)


@dataclass
class FakeProcess:
    pid: int
    used_memory: int | None  # None: NVML reports "not available"
    kind: str = "compute"  # or "graphics"


@dataclass
class FakeMigDevice:
    slot: int
    uuid: str
    gpu_instance_id: int
    compute_instance_id: int
    memory_total: int = 10 * GiB
    memory_used: int = 1 * GiB


@dataclass
class FakeGPU:
    """One device; every field is what the matching NVML call returns. Mutate between scrapes."""

    name: str = "NVIDIA H100 80GB HBM3"
    uuid: str = ""
    pci_bus_id: str = ""
    compute_capability: tuple[int, int] = (9, 0)
    memory_total: int = 80 * GiB
    memory_used: int = 20 * GiB
    memory_reserved: int = 512 * 1024**2
    utilization_gpu: int = 42  # percent
    utilization_memory: int = 17  # percent
    temperature_gpu: int = 55
    temperature_memory: int = 61
    power_usage_mw: int = 250_000
    power_limit_mw: int = 700_000
    energy_mj: int = 123_456_789
    clocks_mhz: dict[str, int] = field(default_factory=lambda: {"sm": 1980, "memory": 2619, "graphics": 1755})
    clock_event_reasons: int = 0x1 | 0x4  # gpu_idle + sw_power_cap
    supported_clock_event_reasons: int = 0x1FF
    pstate: int = 0
    fan_speeds: list[int] | None = None  # percent per fan; None: not supported (data-centre boards)
    ecc_corrected: int = 3
    ecc_uncorrected: int = 0
    retired_single_bit: list[int] = field(default_factory=list)
    retired_double_bit: list[int] = field(default_factory=list)
    remapped_rows: tuple[int, int, int, int] = (2, 0, 0, 0)
    pcie_replay: int = 7
    pcie_tx_kbps: int = 1000
    pcie_rx_kbps: int = 2000
    processes: list[FakeProcess] = field(default_factory=list)
    mig_enabled: bool = False
    mig_devices: list[FakeMigDevice] = field(default_factory=list)
    max_mig_devices: int = 7
    unsupported: set[str] = field(default_factory=set)  # function names (or "memory_temp") -> NOT_SUPPORTED
    errors: dict[str, int] = field(default_factory=dict)  # function name -> NVML error code to raise
    exceptions: dict[str, Exception] = field(default_factory=dict)  # function name -> non-NVML exception
    lost: bool = False  # every call after the handle raises GPU_IS_LOST
    xid_supported: bool = True


@dataclass(frozen=True)
class _Handle:
    index: int
    generation: int


@dataclass(frozen=True)
class _MigHandle:
    parent: int
    slot: int


class _EventSet:
    def __init__(self) -> None:
        self.queue: queue.Queue = queue.Queue()
        self.devices: set[int] = set()
        self.freed = False


class FakeNVML:
    """Module-like object: functions are methods, constants and exception classes come from pynvml."""

    NVMLError = _real.NVMLError

    def __init__(
        self,
        gpus: list[FakeGPU] | int = 1,
        *,
        library_present: bool = True,
        driver_loaded: bool = True,
        driver_version: str = "550.54.15",
        cuda_version: int = 12040,
        init_error: int | None = None,
    ) -> None:
        if isinstance(gpus, int):
            gpus = [FakeGPU() for _ in range(gpus)]
        for i, gpu in enumerate(gpus):
            gpu.uuid = gpu.uuid or f"GPU-{i:08d}-0000-0000-0000-{i:012d}"
            gpu.pci_bus_id = gpu.pci_bus_id or f"00000000:{0x10 + i:02X}:00.0"
        self.gpus = gpus
        self.library_present = library_present
        self.driver_loaded = driver_loaded
        self.driver_version = driver_version
        self.cuda_version = cuda_version
        self.init_error = init_error  # e.g. NVML_ERROR_NO_PERMISSION
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._init_count = 0
        self._driver_generation = 0
        self._init_generation = -1
        self._event_sets: list[_EventSet] = []
        self._gate = threading.Event()
        self._gate.set()
        self.blocked = threading.Event()  # set while a call is held at the gate

    # -- scenario controls -----------------------------------------------------------------------------
    def __getattr__(self, name: str) -> Any:
        """Constants and exception classes of the real binding; unimplemented functions do not exist."""
        value = getattr(_real, name)
        if callable(value) and not isinstance(value, type):
            raise AttributeError(f"fake NVML does not implement {name}")
        return value

    def stop_driver(self) -> None:
        """The driver goes away (unloaded / restarting): calls fail, init fails with DRIVER_NOT_LOADED."""
        with self._lock:
            self.driver_loaded = False
            self._driver_generation += 1

    def start_driver(self) -> None:
        """The driver is back; existing NVML sessions stay invalid until nvmlInit runs again."""
        with self._lock:
            self.driver_loaded = True

    def hang(self) -> None:
        """From now on device calls block (a GPU falling off the bus) until release()."""
        self._gate.clear()

    def release(self) -> None:
        self._gate.set()

    def push_xid(self, index: int, xid: int) -> int:
        """Deliver an Xid critical-error event for GPU `index`; returns how many event sets got it."""
        delivered = 0
        for es in list(self._event_sets):
            if index in es.devices and not es.freed:
                es.queue.put((index, xid))
                delivered += 1
        return delivered

    @property
    def initialised(self) -> bool:
        return self._init_count > 0 and self._init_generation == self._driver_generation and self.driver_loaded

    def registered_event_devices(self) -> set[int]:
        return set().union(*(es.devices for es in self._event_sets if not es.freed)) if self._event_sets else set()

    # -- plumbing --------------------------------------------------------------------------------------
    def _enter(self, function: str) -> None:
        self.calls[function] += 1
        if not self.library_present:
            raise nvml_error(_real.NVML_ERROR_UNINITIALIZED)
        if not self.driver_loaded:
            raise nvml_error(_real.NVML_ERROR_DRIVER_NOT_LOADED)
        if not self.initialised:
            raise nvml_error(_real.NVML_ERROR_UNINITIALIZED)

    def _gpu(self, handle: Any, function: str) -> FakeGPU:
        self._enter(function)
        if not self._gate.is_set():
            self.blocked.set()
            self._gate.wait()
            self.blocked.clear()
        index = handle.parent if isinstance(handle, _MigHandle) else handle.index
        gpu = self.gpus[index]
        if isinstance(handle, _Handle) and handle.generation != self._init_generation:
            raise nvml_error(_real.NVML_ERROR_INVALID_ARGUMENT)
        if gpu.lost:
            raise nvml_error(_real.NVML_ERROR_GPU_IS_LOST)
        if function in gpu.unsupported:
            raise nvml_error(_real.NVML_ERROR_NOT_SUPPORTED)
        if function in gpu.errors:
            raise nvml_error(gpu.errors[function])
        if function in gpu.exceptions:
            raise gpu.exceptions[function]
        return gpu

    def _mig(self, handle: _MigHandle) -> FakeMigDevice:
        gpu = self.gpus[handle.parent]
        return next(m for m in gpu.mig_devices if m.slot == handle.slot)

    # -- library ---------------------------------------------------------------------------------------
    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if not self.library_present:
            raise nvml_error(_real.NVML_ERROR_LIBRARY_NOT_FOUND)
        if not self.driver_loaded:
            raise nvml_error(_real.NVML_ERROR_DRIVER_NOT_LOADED)
        if self.init_error is not None:
            raise nvml_error(self.init_error)
        with self._lock:
            if self._init_generation != self._driver_generation:
                self._init_count = 0
            self._init_generation = self._driver_generation
            self._init_count += 1

    def nvmlShutdown(self) -> None:
        self.calls["nvmlShutdown"] += 1
        with self._lock:
            if self._init_count <= 0:
                raise nvml_error(_real.NVML_ERROR_UNINITIALIZED)
            self._init_count -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver_version

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion_v2")
        return self.cuda_version

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        self._enter("nvmlSystemGetCudaDriverVersion")
        return self.cuda_version

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Handle:
        self._enter("nvmlDeviceGetHandleByIndex")
        if not 0 <= index < len(self.gpus):
            raise nvml_error(_real.NVML_ERROR_INVALID_ARGUMENT)
        code = self.gpus[index].errors.get("nvmlDeviceGetHandleByIndex")
        if code is not None:
            raise nvml_error(code)
        return _Handle(index, self._init_generation)

    def nvmlDeviceGetIndex(self, handle: _Handle) -> int:
        self._gpu(handle, "nvmlDeviceGetIndex")
        return handle.index

    # -- identity --------------------------------------------------------------------------------------
    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        gpu = self._gpu(handle, "nvmlDeviceGetUUID")
        return self._mig(handle).uuid if isinstance(handle, _MigHandle) else gpu.uuid

    def nvmlDeviceGetName(self, handle: _Handle) -> str:
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetPciInfo(self, handle: _Handle) -> SimpleNamespace:
        gpu = self._gpu(handle, "nvmlDeviceGetPciInfo")
        return SimpleNamespace(busId=gpu.pci_bus_id, busIdLegacy=gpu.pci_bus_id)

    def nvmlDeviceGetCudaComputeCapability(self, handle: _Handle) -> tuple[int, int]:
        return self._gpu(handle, "nvmlDeviceGetCudaComputeCapability").compute_capability

    # -- readings --------------------------------------------------------------------------------------
    def nvmlDeviceGetUtilizationRates(self, handle: _Handle) -> SimpleNamespace:
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        return SimpleNamespace(gpu=gpu.utilization_gpu, memory=gpu.utilization_memory)

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> SimpleNamespace:
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        if isinstance(handle, _MigHandle):
            mig = self._mig(handle)
            return SimpleNamespace(total=mig.memory_total, used=mig.memory_used, free=mig.memory_total - mig.memory_used)
        if version:
            if "nvmlDeviceGetMemoryInfo_v2" in gpu.unsupported:
                raise nvml_error(_real.NVML_ERROR_FUNCTION_NOT_FOUND)
            free = gpu.memory_total - gpu.memory_used - gpu.memory_reserved
            return SimpleNamespace(version=version, total=gpu.memory_total, reserved=gpu.memory_reserved, free=free, used=gpu.memory_used)
        # v1 reports reserved memory as used
        used = gpu.memory_used + gpu.memory_reserved
        return SimpleNamespace(total=gpu.memory_total, free=gpu.memory_total - used, used=used)

    def nvmlDeviceGetTemperature(self, handle: _Handle, sensor: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetTemperature")
        if sensor != _real.NVML_TEMPERATURE_GPU:
            raise nvml_error(_real.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.temperature_gpu

    def nvmlDeviceGetFieldValues(self, handle: _Handle, field_ids: list) -> list[SimpleNamespace]:
        gpu = self._gpu(handle, "nvmlDeviceGetFieldValues")
        out = []
        for field_id in field_ids:
            if field_id == _real.NVML_FI_DEV_MEMORY_TEMP and "memory_temp" not in gpu.unsupported:
                value = SimpleNamespace(uiVal=gpu.temperature_memory)
                out.append(SimpleNamespace(fieldId=field_id, nvmlReturn=_real.NVML_SUCCESS, valueType=_real.NVML_VALUE_TYPE_UNSIGNED_INT, value=value))
            else:
                out.append(SimpleNamespace(fieldId=field_id, nvmlReturn=_real.NVML_ERROR_NOT_SUPPORTED, valueType=0, value=SimpleNamespace()))
        return out

    def nvmlDeviceGetPowerUsage(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_usage_mw

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit").power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetTotalEnergyConsumption").energy_mj

    def nvmlDeviceGetClockInfo(self, handle: _Handle, clock_type: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetClockInfo")
        name = {_real.NVML_CLOCK_SM: "sm", _real.NVML_CLOCK_MEM: "memory", _real.NVML_CLOCK_GRAPHICS: "graphics"}.get(clock_type)
        if name not in gpu.clocks_mhz:
            raise nvml_error(_real.NVML_ERROR_NOT_SUPPORTED)
        return gpu.clocks_mhz[name]

    def nvmlDeviceGetSupportedClocksEventReasons(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetSupportedClocksEventReasons").supported_clock_event_reasons

    def nvmlDeviceGetSupportedClocksThrottleReasons(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetSupportedClocksThrottleReasons").supported_clock_event_reasons

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksEventReasons").clock_event_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksThrottleReasons").clock_event_reasons

    def nvmlDeviceGetPerformanceState(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetPerformanceState").pstate

    def nvmlDeviceGetNumFans(self, handle: _Handle) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetNumFans")
        if gpu.fan_speeds is None:
            raise nvml_error(_real.NVML_ERROR_NOT_SUPPORTED)
        return len(gpu.fan_speeds)

    def nvmlDeviceGetFanSpeed_v2(self, handle: _Handle, fan: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetFanSpeed_v2")
        if gpu.fan_speeds is None or not 0 <= fan < len(gpu.fan_speeds):
            raise nvml_error(_real.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.fan_speeds[fan]

    def nvmlDeviceGetTotalEccErrors(self, handle: _Handle, error_type: int, counter_type: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetTotalEccErrors")
        if counter_type != _real.NVML_AGGREGATE_ECC:
            raise nvml_error(_real.NVML_ERROR_INVALID_ARGUMENT)
        return gpu.ecc_corrected if error_type == _real.NVML_MEMORY_ERROR_TYPE_CORRECTED else gpu.ecc_uncorrected

    def nvmlDeviceGetRetiredPages(self, handle: _Handle, cause: int) -> list[int]:
        gpu = self._gpu(handle, "nvmlDeviceGetRetiredPages")
        if cause == _real.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS:
            return list(gpu.retired_single_bit)
        return list(gpu.retired_double_bit)

    def nvmlDeviceGetRemappedRows(self, handle: _Handle) -> tuple[int, int, int, int]:
        return self._gpu(handle, "nvmlDeviceGetRemappedRows").remapped_rows

    def nvmlDeviceGetPcieReplayCounter(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetPcieReplayCounter").pcie_replay

    def nvmlDeviceGetPcieThroughput(self, handle: _Handle, counter: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetPcieThroughput")
        return gpu.pcie_tx_kbps if counter == _real.NVML_PCIE_UTIL_TX_BYTES else gpu.pcie_rx_kbps

    def _processes(self, handle: _Handle, function: str, kind: str) -> list[SimpleNamespace]:
        gpu = self._gpu(handle, function)
        return [
            SimpleNamespace(pid=p.pid, usedGpuMemory=p.used_memory, gpuInstanceId=0xFFFFFFFF, computeInstanceId=0xFFFFFFFF)
            for p in gpu.processes
            if p.kind == kind
        ]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: _Handle) -> list[SimpleNamespace]:
        return self._processes(handle, "nvmlDeviceGetComputeRunningProcesses", "compute")

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: _Handle) -> list[SimpleNamespace]:
        return self._processes(handle, "nvmlDeviceGetGraphicsRunningProcesses", "graphics")

    # -- MIG -------------------------------------------------------------------------------------------
    def nvmlDeviceGetMigMode(self, handle: _Handle) -> list[int]:
        gpu = self._gpu(handle, "nvmlDeviceGetMigMode")
        mode = _real.NVML_DEVICE_MIG_ENABLE if gpu.mig_enabled else _real.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: _Handle) -> int:
        return self._gpu(handle, "nvmlDeviceGetMaxMigDeviceCount").max_mig_devices

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: _Handle, index: int) -> _MigHandle:
        gpu = self._gpu(handle, "nvmlDeviceGetMigDeviceHandleByIndex")
        if not gpu.mig_enabled:
            raise nvml_error(_real.NVML_ERROR_INVALID_ARGUMENT)
        if not any(m.slot == index for m in gpu.mig_devices):
            raise nvml_error(_real.NVML_ERROR_NOT_FOUND)
        return _MigHandle(handle.index, index)

    def nvmlDeviceGetGpuInstanceId(self, handle: _MigHandle) -> int:
        self._gpu(handle, "nvmlDeviceGetGpuInstanceId")
        return self._mig(handle).gpu_instance_id

    def nvmlDeviceGetComputeInstanceId(self, handle: _MigHandle) -> int:
        self._gpu(handle, "nvmlDeviceGetComputeInstanceId")
        return self._mig(handle).compute_instance_id

    # -- events ----------------------------------------------------------------------------------------
    def nvmlEventSetCreate(self) -> _EventSet:
        self._enter("nvmlEventSetCreate")
        es = _EventSet()
        self._event_sets.append(es)
        return es

    def nvmlDeviceRegisterEvents(self, handle: _Handle, event_types: int, event_set: _EventSet) -> None:
        gpu = self._gpu(handle, "nvmlDeviceRegisterEvents")
        if not gpu.xid_supported:
            raise nvml_error(_real.NVML_ERROR_NOT_SUPPORTED)
        if event_types & _real.nvmlEventTypeXidCriticalError:
            event_set.devices.add(handle.index)

    def nvmlEventSetWait_v2(self, event_set: _EventSet, timeout_ms: int) -> SimpleNamespace:
        self._enter("nvmlEventSetWait_v2")
        try:
            index, xid = event_set.queue.get(timeout=timeout_ms / 1000.0)
        except queue.Empty:
            if not self.driver_loaded:
                raise nvml_error(_real.NVML_ERROR_DRIVER_NOT_LOADED) from None
            raise nvml_error(_real.NVML_ERROR_TIMEOUT) from None
        return SimpleNamespace(
            device=_Handle(index, self._init_generation),
            eventType=_real.nvmlEventTypeXidCriticalError,
            eventData=xid,
            gpuInstanceId=0xFFFFFFFF,
            computeInstanceId=0xFFFFFFFF,
        )

    def nvmlEventSetFree(self, event_set: _EventSet) -> None:
        self.calls["nvmlEventSetFree"] += 1
        event_set.freed = True
        if event_set in self._event_sets:
            self._event_sets.remove(event_set)
