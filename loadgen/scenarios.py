"""Fault drills: each scenario changes the server (admin API) or the traffic, then undoes it.

- latency-spike: `POST /v1/admin/faults {"latency_ms"}` -> latency SLO burn, p95 up.
- error-burst: `POST /v1/admin/faults {"error_rate"}` -> 5xx, availability SLO burn, critical page.
- degraded-canary: shifts `canary_weight`% of traffic to the degraded version (default "2", loaded if
  needed) -> its CTR drops, the canary-regression alert fires and Alertmanager's rollback webhook
  sets its weight back to 0.
- surge: multiplies the arrival rate by `surge_factor` -> queue saturation, 429s.
- query-drift: shoppers only ask the longest `drift_share` of the judged queries (a shift in the query
  mix, e.g. after a voice-search launch) -> the served versions' drift statistics (PSI of query tokens
  and scores against the registration reference) move and ModelDriftHigh fires.

Server-side faults carry their own `duration_s`, so they expire even if the simulator dies.
"""
from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Optional

from loadgen.client import AdminError, ServerClient
from loadgen.config import ScenarioConfig

log = logging.getLogger(__name__)


@dataclass
class TrafficControl:
    """Knobs the runner reads on every arrival; scenarios turn them."""

    rate_multiplier: float = 1.0
    longest_query_share: Optional[float] = None  # set: shoppers draw intents from the longest queries only
    active: dict[str, "Scenario"] = field(default_factory=dict)


class Scenario(ABC):
    def __init__(self, cfg: ScenarioConfig, client: ServerClient, control: TrafficControl) -> None:
        self.cfg = cfg
        self.client = client
        self.control = control

    @property
    def label(self) -> str:
        return self.cfg.name

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...


class LatencySpike(Scenario):
    async def start(self) -> None:
        body = {"latency_ms": self.cfg.latency_ms, "duration_s": self.cfg.duration_s}
        if self.cfg.version:
            body["version"] = self.cfg.version
        await self.client.admin("POST", "/v1/admin/faults", body)

    async def stop(self) -> None:
        await self.client.admin("DELETE", "/v1/admin/faults")


class ErrorBurst(Scenario):
    async def start(self) -> None:
        body = {"error_rate": self.cfg.error_rate, "duration_s": self.cfg.duration_s}
        if self.cfg.version:
            body["version"] = self.cfg.version
        await self.client.admin("POST", "/v1/admin/faults", body)

    async def stop(self) -> None:
        await self.client.admin("DELETE", "/v1/admin/faults")


class Surge(Scenario):
    async def start(self) -> None:
        self.control.rate_multiplier *= self.cfg.surge_factor

    async def stop(self) -> None:
        self.control.rate_multiplier /= self.cfg.surge_factor


def current_weights(models: list[dict], name: str) -> dict[str, int]:
    """The live traffic split of model `name` from `/v1/models`, as integer percentages."""
    weights = {}
    for m in models:
        if m.get("name") == name and m.get("traffic_weight") is not None:
            weights[str(m["version"])] = float(m["traffic_weight"])
    total = sum(weights.values())
    if total <= 0:
        return {}
    scale = 100.0 / total if total > 1.0 + 1e-9 else 100.0  # ratios 0..1 or percentages
    return {v: int(round(w * scale)) for v, w in weights.items() if w > 0}


class DegradedCanary(Scenario):
    """Shift part of the traffic to the degraded version; restore the previous split afterwards."""

    ready_timeout_s = 120.0

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.previous: Optional[dict[str, int]] = None

    async def _version_state(self) -> Optional[str]:
        for m in await self.client.models():
            if m.get("name") == self.client.cfg.model and str(m.get("version")) == self.cfg.canary_version:
                return m.get("state")
        return None

    async def start(self) -> None:
        model, canary = self.client.cfg.model, self.cfg.canary_version
        models = await self.client.models()
        self.previous = current_weights(models, model)
        if await self._version_state() != "ready":
            await self.client.admin("POST", f"/v1/admin/models/{model}/versions/{canary}/load")
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.ready_timeout_s
            while (state := await self._version_state()) != "ready":
                if state == "failed" or loop.time() > deadline:
                    raise AdminError(f"version {canary} of {model} did not become ready (state {state})")
                await asyncio.sleep(1.0)
        stable = {v: w for v, w in self.previous.items() if v != canary} or {"1": 100}
        stable_total = sum(stable.values())
        remaining = 100 - self.cfg.canary_weight
        weights = {v: round(remaining * w / stable_total) for v, w in stable.items()}
        weights[canary] = self.cfg.canary_weight
        await self.client.admin("PUT", f"/v1/admin/models/{model}/traffic", {"weights": weights})
        log.info("degraded-canary: %s -> %s", self.previous, weights)

    async def stop(self) -> None:
        if self.previous:
            await self.client.admin("PUT", f"/v1/admin/models/{self.client.cfg.model}/traffic",
                                    {"weights": self.previous})


class QueryDrift(Scenario):
    """Narrow the shoppers' intents to the longest queries; the server sees a shifted input population."""

    async def start(self) -> None:
        self.control.longest_query_share = self.cfg.drift_share

    async def stop(self) -> None:
        self.control.longest_query_share = None


SCENARIOS: dict[str, type[Scenario]] = {
    "latency-spike": LatencySpike,
    "error-burst": ErrorBurst,
    "degraded-canary": DegradedCanary,
    "surge": Surge,
    "query-drift": QueryDrift,
}


def make_scenario(cfg: ScenarioConfig, client: ServerClient, control: TrafficControl) -> Scenario:
    return SCENARIOS[cfg.name](cfg, client, control)
