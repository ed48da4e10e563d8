"""Server-side fault injection for drills, alert tests and the traffic simulator.

An operator (or the simulator) sets a fault through `POST /v1/admin/faults`: extra latency per request,
a share of requests failed with 503 `injected_fault`, optionally only on one model version, for a
bounded duration. Faults apply to model requests (search, rank, recommend) after routing, so a fault on
a canary version hits only the canary's traffic. Every injection is counted in
`inference_injected_faults_total{kind, model, version}`; `inference_fault_injection_active` is 1 while a
fault is set.
"""
from __future__ import annotations

import asyncio
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge

__all__ = ["Fault", "FaultError", "FaultInjector", "FaultMetrics", "InjectedFault", "MAX_FAULT_DURATION_S",
           "MAX_FAULT_LATENCY_MS"]

MAX_FAULT_LATENCY_MS = 60_000
MAX_FAULT_DURATION_S = 24 * 3600.0
_FIELDS = ("latency_ms", "error_rate", "version", "duration_s")


class FaultError(ValueError):
    """A fault request that is not valid; `field` names the offending key."""

    def __init__(self, message: str, field: Optional[str] = None) -> None:
        super().__init__(message)
        self.field = field


class InjectedFault(Exception):
    """Raised for a request picked to fail; answered 503 `injected_fault` with Retry-After."""

    code = "injected_fault"

    def __init__(self, version: str) -> None:
        super().__init__(f"injected fault (drill) on version {version}")
        self.version = version


@dataclass(frozen=True)
class Fault:
    latency_ms: int
    error_rate: float
    version: Optional[str]
    duration_s: float
    started_at: float      # wall clock, for display
    expires_at: float      # monotonic

    @classmethod
    def parse(cls, body: Any, *, now_wall: float, now_mono: float) -> "Fault":
        if not isinstance(body, Mapping):
            raise FaultError("body must be a JSON object")
        for key in body:
            if key not in _FIELDS:
                raise FaultError(f"unknown field {key!r}; allowed: {', '.join(_FIELDS)}", str(key))
        latency = body.get("latency_ms", 0)
        if isinstance(latency, bool) or not isinstance(latency, int) or not 0 <= latency <= MAX_FAULT_LATENCY_MS:
            raise FaultError(f"latency_ms must be an integer in [0, {MAX_FAULT_LATENCY_MS}]", "latency_ms")
        rate = body.get("error_rate", 0.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not (0.0 <= rate <= 1.0):
            raise FaultError("error_rate must be a number in [0, 1]", "error_rate")
        version = body.get("version")
        if version is not None and (not isinstance(version, str) or not version):
            raise FaultError("version must be a non-empty string", "version")
        if "duration_s" not in body:
            raise FaultError("duration_s is required (faults always end by themselves)", "duration_s")
        duration = body["duration_s"]
        if isinstance(duration, bool) or not isinstance(duration, (int, float)) or not math.isfinite(duration) \
                or not 0 < duration <= MAX_FAULT_DURATION_S:
            raise FaultError(f"duration_s must be a number in (0, {MAX_FAULT_DURATION_S:g}]", "duration_s")
        if latency == 0 and rate == 0:
            raise FaultError("set latency_ms > 0 or error_rate > 0 (or DELETE to clear faults)")
        return cls(latency, float(rate), version, float(duration), now_wall, now_mono + float(duration))

    def as_json(self, now_mono: float) -> dict[str, Any]:
        return {"latency_ms": self.latency_ms, "error_rate": self.error_rate, "version": self.version,
                "duration_s": self.duration_s, "started_at": self.started_at,
                "remaining_s": round(max(0.0, self.expires_at - now_mono), 3)}


class FaultMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.injected = Counter("inference_injected_faults_total", "Faults injected into requests for drills.",
                                ("kind", "model", "version"), registry=registry)
        self.active = Gauge("inference_fault_injection_active", "1 while a fault injection drill is set.", registry=registry)


class FaultInjector:
    """Holds at most one active fault; `apply()` is awaited by each model request after routing."""

    def __init__(self, metrics: FaultMetrics, *, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, rng: Optional[random.Random] = None) -> None:
        self.metrics = metrics
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()
        self._fault: Optional[Fault] = None
        metrics.active.set_function(lambda: 1.0 if self.current() else 0.0)

    def set(self, body: Any) -> Fault:
        fault = Fault.parse(body, now_wall=self._wall(), now_mono=self._clock())
        self._fault = fault
        return fault

    def clear(self) -> bool:
        had = self.current() is not None
        self._fault = None
        return had

    def current(self) -> Optional[Fault]:
        fault = self._fault
        if fault is not None and self._clock() >= fault.expires_at:
            self._fault = None
            return None
        return fault

    def describe(self) -> Optional[dict[str, Any]]:
        fault = self.current()
        return None if fault is None else fault.as_json(self._clock())

    async def apply(self, model: str, version: str) -> None:
        """Delay and/or fail this request when a fault targets its version."""
        fault = self.current()
        if fault is None or (fault.version is not None and fault.version != version):
            return
        if fault.latency_ms:
            self.metrics.injected.labels("latency", model, version).inc()
            await asyncio.sleep(fault.latency_ms / 1000.0)
        if fault.error_rate and self._rng.random() < fault.error_rate:
            self.metrics.injected.labels("error", model, version).inc()
            raise InjectedFault(version)
