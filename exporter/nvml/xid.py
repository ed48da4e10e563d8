"""Xid errors from an NVML event set, counted by a background thread.

NVML delivers Xid critical errors as events; waiting for them blocks, so a daemon thread waits with a
timeout (so it can be stopped) and counts them per GPU and Xid code. Counts and last-seen times live
here, keyed by GPU uuid, so they survive NVML re-initialisation and are exported as a counter plus a
timestamp: nothing can get stuck on an old value the way a "last Xid" gauge does.
"""
from __future__ import annotations

import ctypes
import logging
import threading
import time
from typing import Any, Callable

from exporter.nvml.errors import ErrorCodes, error_label

log = logging.getLogger(__name__)

ErrorRecorder = Callable[[str, str], None]  # (function, error label)


def _handle_key(handle: Any) -> Any:
    """A hashable identity for a device handle (ctypes pointer from the real binding, any object else)."""
    if isinstance(handle, ctypes._Pointer):
        return ctypes.cast(handle, ctypes.c_void_p).value
    return handle


class XidMonitor:
    """Owns the event thread of the current NVML generation and the Xid tallies across generations."""

    def __init__(self, nvml: Any, record_error: ErrorRecorder, wait_ms: int, wall: Callable[[], float] = time.time) -> None:
        self._nvml = nvml
        self._codes = ErrorCodes.from_module(nvml)
        self._record_error = record_error
        self._wait_ms = wait_ms
        self._wall = wall
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, str, str], int] = {}  # (gpu, uuid, xid) -> events
        self._last: dict[tuple[str, str], float] = {}  # (gpu, uuid) -> wall time of the last Xid
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._registered = threading.Event()
        self._lost_library = False  # the thread ended because NVML failed under it

    # -- lifecycle (called from the NVML pass thread, with NVML initialised) --------------------------
    def start(self) -> None:
        """Start a thread for the current NVML generation (after nvmlInit)."""
        self.stop()
        self._lost_library = False
        self._stop = threading.Event()
        self._registered = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._stop, self._registered), name="nvml-xid", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = None) -> bool:
        """Ask the thread to finish and wait up to one wait period; True when it has ended."""
        thread = self._thread
        if thread is None:
            return True
        self._stop.set()
        thread.join(self._wait_ms / 1000.0 + 1.0 if timeout is None else timeout)
        if thread.is_alive():
            log.warning("Xid event thread did not stop within its wait timeout")
            return False
        self._thread = None
        return True

    def wait_registered(self, timeout: float) -> bool:
        """For tests and start-up: True once the current thread registered its devices."""
        return self._registered.wait(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def needs_restart(self) -> bool:
        """True when the thread died from an NVML failure while the pass thread still has NVML."""
        return self._lost_library and not self.running

    # -- results ---------------------------------------------------------------------------------------
    def counts(self) -> dict[tuple[str, str, str], int]:
        with self._lock:
            return dict(self._counts)

    def last_timestamps(self) -> dict[tuple[str, str], float]:
        with self._lock:
            return dict(self._last)

    def record(self, gpu: str, uuid: str, xid: int) -> None:
        with self._lock:
            key = (gpu, uuid, str(xid))
            self._counts[key] = self._counts.get(key, 0) + 1
            self._last[(gpu, uuid)] = self._wall()

    # -- the thread ------------------------------------------------------------------------------------
    def _call(self, function: str, *args: Any) -> Any:
        return getattr(self._nvml, function)(*args)

    def _register(self, event_set: Any) -> dict[Any, tuple[str, str]]:
        nvml = self._nvml
        devices: dict[Any, tuple[str, str]] = {}
        for index in range(self._call("nvmlDeviceGetCount")):
            try:
                handle = self._call("nvmlDeviceGetHandleByIndex", index)
                uuid = self._call("nvmlDeviceGetUUID", handle)
                self._call("nvmlDeviceRegisterEvents", handle, nvml.nvmlEventTypeXidCriticalError, event_set)
            except nvml.NVMLError as exc:
                # Not supported on this board (e.g. some consumer GPUs) or device lost: no Xid stream for it.
                self._record_error("nvmlDeviceRegisterEvents", error_label(exc))
                continue
            devices[_handle_key(handle)] = (str(index), uuid)
        return devices

    def _run(self, stop: threading.Event, registered: threading.Event) -> None:
        nvml = self._nvml
        try:
            event_set = self._call("nvmlEventSetCreate")
        except nvml.NVMLError as exc:
            self._record_error("nvmlEventSetCreate", error_label(exc))
            registered.set()
            return
        try:
            try:
                devices = self._register(event_set)
            except nvml.NVMLError as exc:
                self._record_error("nvmlDeviceGetCount", error_label(exc))
                return
            finally:
                registered.set()
            while not stop.is_set():
                try:
                    data = self._call("nvmlEventSetWait_v2", event_set, self._wait_ms)
                except nvml.NVMLError as exc:
                    if exc.value == self._codes.timeout:
                        continue
                    self._record_error("nvmlEventSetWait", error_label(exc))
                    if exc.value in self._codes.library_down:
                        self._lost_library = True
                        return  # the pass thread restarts us (after re-initialising NVML if needed)
                    stop.wait(self._wait_ms / 1000.0)  # avoid spinning on a persistent error
                    continue
                if not data.eventType & nvml.nvmlEventTypeXidCriticalError:
                    continue
                gpu, uuid = devices.get(_handle_key(data.device), ("", ""))
                if not uuid:
                    try:
                        uuid = self._call("nvmlDeviceGetUUID", data.device)
                        gpu = str(self._call("nvmlDeviceGetIndex", data.device))
                    except nvml.NVMLError as exc:
                        self._record_error("nvmlDeviceGetUUID", error_label(exc))
                        continue
                self.record(gpu, uuid, int(data.eventData))
        finally:
            try:
                self._call("nvmlEventSetFree", event_set)
            except nvml.NVMLError:
                pass
