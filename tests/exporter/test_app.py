"""The exporter app in-process: /metrics, /healthz, single-flight, timeouts, component hosting."""
from __future__ import annotations

import asyncio

import pytest
from prometheus_client.core import GaugeMetricFamily

from exporter.app import create_app
from exporter.config import ExporterConfig, parse_config
from tests.exporter.conftest import promtool_check, value
from devstack.fake_nvml import FakeNVML


def config(**nvml) -> ExporterConfig:
    nvml.setdefault("xid_wait_milliseconds", 50)
    return parse_config({"nvml": nvml})


async def scrape(client) -> str:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    return await resp.text()


async def test_metrics_serves_gpu_and_self_metrics_promtool_clean(aiohttp_client):
    fake = FakeNVML(2)
    client = await aiohttp_client(create_app(config(), nvml_module=fake))
    await scrape(client)
    text = await scrape(client)
    assert value(text, "nvidia_gpu_nvml_up") == 1
    assert value(text, "nvidia_gpu_up", gpu="1") == 1
    assert value(text, "exporter_build_info") == 1
    assert value(text, "exporter_scrape_duration_seconds_count", collector="nvml") == 1  # the first scrape
    # counted once per device, however many passes ran
    assert value(text, "exporter_collector_errors_total", collector="nvml", function="nvmlDeviceGetNumFans", error="not_supported") == 2
    assert promtool_check(text) == ""


async def test_openmetrics_is_served_when_asked(aiohttp_client):
    client = await aiohttp_client(create_app(config(), nvml_module=FakeNVML(1)))
    resp = await client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert (await resp.text()).endswith("# EOF\n")


async def test_concurrent_scrapes_share_one_nvml_pass(aiohttp_client):
    fake = FakeNVML(4)
    client = await aiohttp_client(create_app(config(max_age_seconds=0, xid_events=False), nvml_module=fake))
    assert fake.calls["nvmlDeviceGetCount"] == 1  # the start-up pass
    fake.hang()
    scrapes = [asyncio.create_task(scrape(client)) for _ in range(8)]
    while not fake.blocked.is_set():  # the first pass is inside NVML; the other scrapes pile up on it
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)
    fake.release()
    texts = await asyncio.gather(*scrapes)
    assert fake.calls["nvmlDeviceGetCount"] == 2  # eight scrapes, one pass
    assert all(value(t, "nvidia_gpu_devices") == 4 for t in texts)
    await scrape(client)  # max_age 0: a later scrape makes a new pass
    assert fake.calls["nvmlDeviceGetCount"] == 3


async def test_a_recent_pass_is_reused_within_max_age(aiohttp_client):
    fake = FakeNVML(1)
    client = await aiohttp_client(create_app(config(max_age_seconds=60, xid_events=False), nvml_module=fake))
    for _ in range(3):
        await scrape(client)
    assert fake.calls["nvmlDeviceGetCount"] == 1  # the start-up pass serves all three


async def test_a_hung_nvml_pass_serves_the_last_snapshot_marked_stale(aiohttp_client):
    fake = FakeNVML(2)
    client = await aiohttp_client(create_app(config(max_age_seconds=0, scrape_timeout_seconds=0.3, xid_events=False), nvml_module=fake))
    first = await scrape(client)
    assert value(first, "nvidia_gpu_snapshot_stale") == 0
    fake.gpus[0].temperature_gpu = 99
    fake.hang()
    stale = await scrape(client)  # returns after the timeout instead of hanging
    assert value(stale, "nvidia_gpu_snapshot_stale") == 1
    assert value(stale, "nvidia_gpu_temperature_celsius", gpu="0", sensor="gpu") == 55  # the last good pass
    assert value(stale, "nvidia_gpu_snapshot_timestamp_seconds") == value(first, "nvidia_gpu_snapshot_timestamp_seconds")
    again = await scrape(client)  # still hung: no further pass is started, the overrun is counted once
    assert fake.calls["nvmlDeviceGetCount"] == 3  # start-up, first scrape, the hung one
    assert value(again, "exporter_collector_errors_total", collector="nvml", function="pass", error="timeout") == 1
    assert promtool_check(stale) == ""
    fake.release()
    for _ in range(50):
        text = await scrape(client)
        if value(text, "nvidia_gpu_snapshot_stale") == 0 and value(text, "nvidia_gpu_temperature_celsius", gpu="0", sensor="gpu") == 99:
            break
        await asyncio.sleep(0.05)
    else:
        pytest.fail("the exporter did not recover after NVML answered again")


async def test_background_mode_polls_without_scrapes(aiohttp_client):
    fake = FakeNVML(1)
    client = await aiohttp_client(create_app(config(mode="background", poll_interval_seconds=0.05, xid_events=False), nvml_module=fake))
    for _ in range(100):
        if fake.calls["nvmlDeviceGetCount"] >= 3:
            break
        await asyncio.sleep(0.02)
    assert fake.calls["nvmlDeviceGetCount"] >= 3
    passes = fake.calls["nvmlDeviceGetCount"]
    text = await scrape(client)
    assert value(text, "nvidia_gpu_up", gpu="0") == 1
    assert fake.calls["nvmlDeviceGetCount"] - passes <= 1  # the scrape itself made no pass (at most a poll)


async def test_nvml_missing_keeps_serving_and_healthz_ok(aiohttp_client):
    client = await aiohttp_client(create_app(config(), nvml_module=FakeNVML(1, library_present=False)))
    text = await scrape(client)
    assert value(text, "nvidia_gpu_nvml_up") == 0
    assert value(text, "nvidia_gpu_nvml_status", reason="library_not_found") == 1
    assert promtool_check(text) == ""
    resp = await client.get("/healthz")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok"
    assert body["components"]["nvml"] == {"nvml_up": False, "reason": "library_not_found", "stale": False, "mode": "on_scrape"}


async def test_unknown_paths_and_methods_answer_json_errors(aiohttp_client):
    client = await aiohttp_client(create_app(config(), nvml_module=FakeNVML(1)))
    resp = await client.get("/nope")
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"
    resp = await client.post("/metrics", data=b"x")
    assert resp.status == 405
    assert (await resp.json())["error"]["code"] == "method_not_allowed"


async def test_nvml_is_shut_down_when_the_app_stops(aiohttp_client):
    fake = FakeNVML(1)
    client = await aiohttp_client(create_app(config(), nvml_module=fake))
    await scrape(client)
    assert fake.initialised
    await client.close()
    assert not fake.initialised
    assert fake.calls["nvmlEventSetFree"] == 1


class _StaticComponent:
    """A minimal plug-in: one gauge, records its lifecycle."""

    def __init__(self, name: str, fail_refresh: bool = False) -> None:
        self.name = name
        self.events: list[str] = []
        self.fail_refresh = fail_refresh

    def collectors(self):
        component = self

        class _Collector:
            def collect(self):
                g = GaugeMetricFamily(f"{component.name}_value", "A test value.")
                g.add_metric([], 7)
                yield g

        return [_Collector()]

    async def start(self) -> None:
        self.events.append("start")

    async def stop(self) -> None:
        self.events.append("stop")

    async def refresh(self) -> None:
        self.events.append("refresh")
        if self.fail_refresh:
            raise RuntimeError("boom")


async def test_the_app_hosts_several_components(aiohttp_client):
    from exporter.component import ExporterComponent
    from exporter.nvml.component import NvmlComponent
    from exporter.selfmetrics import SelfMetrics
    from prometheus_client import CollectorRegistry

    good, bad = _StaticComponent("alpha"), _StaticComponent("beta", fail_refresh=True)
    assert isinstance(good, ExporterComponent)
    assert isinstance(NvmlComponent(config().nvml, SelfMetrics(CollectorRegistry(), "t"), nvml=FakeNVML(1)), ExporterComponent)
    client = await aiohttp_client(create_app(config(), components=[good, bad]))
    assert good.events == ["start"]
    text = await scrape(client)
    assert value(text, "alpha_value") == 7
    assert value(text, "beta_value") == 7  # a failing refresh does not take the output down
    text = await scrape(client)
    assert value(text, "exporter_collector_errors_total", collector="beta", function="refresh", error="runtimeerror") == 2  # counted in each refresh, before the render
    assert value(text, "exporter_scrape_duration_seconds_count", collector="alpha") == 1
    assert promtool_check(text) == ""
    await client.close()
    assert good.events[-1] == "stop"
