"""Shared helpers for the exporter tests: render a snapshot, parse exposition text, run promtool."""
from __future__ import annotations

import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.config import NvmlConfig
from exporter.nvml.collector import NvmlCollector
from exporter.nvml.sampler import NvmlSampler
from exporter.nvml.snapshot import Snapshot
from tests.support.binaries import require_binary


class FakeClock:
    """A monotonic clock the test advances by hand (re-init backoff without sleeping)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Errors:
    """Records (function, error) pairs the sampler reports, like exporter_collector_errors_total."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def __call__(self, function: str, error: str) -> None:
        self.seen.append((function, error))

    def count(self, function: str | None = None, error: str | None = None) -> int:
        return sum(1 for f, e in self.seen if (function is None or f == function) and (error is None or e == error))


def render(snapshot: Snapshot | None, stale: bool = False) -> str:
    registry = CollectorRegistry()
    registry.register(NvmlCollector(lambda: (snapshot, stale)))
    return generate_latest(registry).decode()


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Exposition text -> {sample name: [(labels, value)]}."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value(text_or_samples, name: str, **labels: str) -> float | None:
    """The value of the one sample of `name` whose labels include `labels`, or None."""
    parsed = samples(text_or_samples) if isinstance(text_or_samples, str) else text_or_samples
    matches = [v for lbl, v in parsed.get(name, []) if all(lbl.get(k) == want for k, want in labels.items())]
    assert len(matches) <= 1, f"{name}{labels} matches {len(matches)} samples"
    return matches[0] if matches else None


def promtool_check(text: str) -> str:
    """What `promtool check metrics` prints for `text` (empty when clean)."""
    binary = require_binary("promtool")
    proc = subprocess.run([binary, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    return (proc.stdout + proc.stderr).decode()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def errors() -> Errors:
    return Errors()


@pytest.fixture
def make_sampler(clock, errors):
    created: list[NvmlSampler] = []

    def make(fake, **config) -> NvmlSampler:
        config.setdefault("xid_wait_milliseconds", 50)
        sampler = NvmlSampler(fake, NvmlConfig(**config), errors, monotonic=clock, name_of_process=lambda pid: f"proc{pid}")
        created.append(sampler)
        return sampler

    yield make
    for sampler in created:
        sampler.shutdown()
