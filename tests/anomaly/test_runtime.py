"""The anomaly runtime against a real Prometheus: reading, exporting, failure modes, caps, TTL."""
from __future__ import annotations

import asyncio
import subprocess
import time

import aiohttp
import numpy as np
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from exporter.anomaly.component import AnomalyComponent, build_component
from exporter.anomaly.config import JobConfig, parse_anomaly_config
from exporter.anomaly.job import JobState
from exporter.anomaly.reader import PrometheusReader, RangeSeries, SourceError
from exporter.config import ConfigError
from devstack.processes import free_port

from .conftest import POINTS, STEP
from tests.support.binaries import require_binary

JOB = {"name": "latency", "query": "demo_latency_seconds", "detector": "robust_zscore",
       "params": {"period": "auto", "window": 30}, "step": STEP, "fit_window": POINTS * STEP,
       "fit_every": 3600, "infer_every": 60}


def make_component(url: str, **overrides) -> AnomalyComponent:
    job = {**JOB, **overrides.pop("job", {})}
    section = {"prometheus_url": url, "timeout_seconds": 2.0, "retries": 1,
               "backoff_initial_seconds": 0.01, "backoff_max_seconds": 0.02,
               "jobs": [job], **overrides}
    return AnomalyComponent(parse_anomaly_config(section), autorun=False)


def samples(component: AnomalyComponent) -> dict[tuple[str, frozenset], float]:
    registry = CollectorRegistry()
    for collector in component.collectors():
        registry.register(collector)
    out = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(snapshot, name, **labels):
    for (n, ls), v in snapshot.items():
        if n == name and set(labels.items()) <= set(ls):
            return v
    return None


async def test_reader_reads_backfilled_series(backfilled_prometheus):
    end = backfilled_prometheus.extra["end"]
    async with aiohttp.ClientSession() as session:
        reader = PrometheusReader(session, backfilled_prometheus.url)
        series = await reader.query_range("demo_latency_seconds", end - 99 * STEP, end, STEP)
    assert sorted(s.labels["endpoint"] for s in series) == ["rank", "search"]
    for s in series:
        assert s.values.size == 100 and np.isfinite(s.values).all()
        assert s.timestamps[-1] == end
    search = next(s for s in series if s.labels["endpoint"] == "search")
    assert search.values[-1] > 0.6 > search.values[-4]


async def test_scores_exported_with_renamed_labels(backfilled_prometheus):
    comp = make_component(backfilled_prometheus.url)
    await comp.start()
    try:
        assert await comp.run_once(comp.jobs[0])
    finally:
        await comp.stop()
    snap = samples(comp)
    search = dict(anomaly_job="latency", endpoint="search", source_job="svc", source_instance="svc:1")
    rank = {**search, "endpoint": "rank"}
    assert value(snap, "anomaly_score", **search) > 1
    assert value(snap, "anomaly_score", **rank) < 1
    lower, upper = value(snap, "anomaly_lower", **rank), value(snap, "anomaly_upper", **rank)
    assert lower < value(snap, "anomaly_expected", **rank) < upper
    assert value(snap, "anomaly_source_up", anomaly_job="latency") == 1
    assert value(snap, "anomaly_series_tracked", anomaly_job="latency") == 2
    assert value(snap, "anomaly_last_success_timestamp_seconds", anomaly_job="latency") > 0
    assert value(snap, "anomaly_fit_duration_seconds_count", anomaly_job="latency") == 1
    assert not any(dict(ls).get("job") for (n, ls) in snap if n == "anomaly_score")


class FaultProxy:
    """Forwards query_range to the real Prometheus, or fails the way a sick one does."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.mode = "ok"

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "error":
            return web.json_response({"status": "error", "error": "boom"}, status=500)
        if self.mode == "garbage":
            return web.Response(text="<html>not json</html>", status=200)
        if self.mode == "slow":
            await asyncio.sleep(3)
        data = await request.post()
        async with aiohttp.ClientSession() as session:
            async with session.post(self.upstream + "/api/v1/query_range", data=dict(data)) as resp:
                return web.Response(body=await resp.read(), status=resp.status,
                                    content_type="application/json")


@pytest.fixture
async def fault_proxy(backfilled_prometheus):
    proxy = FaultProxy(backfilled_prometheus.url)
    app = web.Application()
    app.router.add_post("/api/v1/query_range", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    proxy.url = f"http://127.0.0.1:{port}"
    yield proxy
    await runner.cleanup()


async def test_source_failures_withdraw_scores_and_recover(fault_proxy):
    comp = make_component(fault_proxy.url, timeout_seconds=0.5)
    job = comp.jobs[0]
    await comp.start()
    try:
        assert await comp.run_once(job)
        assert value(samples(comp), "anomaly_score", endpoint="search") > 1
        for mode, reason in (("error", "source_error"), ("garbage", "bad_response"),
                             ("slow", "source_timeout")):
            fault_proxy.mode = mode
            assert not await comp.run_once(job)
            snap = samples(comp)
            assert value(snap, "anomaly_score") is None, mode  # withdrawn, not stale
            assert value(snap, "anomaly_source_up", anomaly_job="latency") == 0
            assert value(snap, "anomaly_failures_total", anomaly_job="latency", reason=reason) >= 1
            fault_proxy.mode = "ok"
            assert await comp.run_once(job)  # recovers on the next pass
            snap = samples(comp)
            assert value(snap, "anomaly_source_up", anomaly_job="latency") == 1
            assert value(snap, "anomaly_score", endpoint="search") > 1
    finally:
        await comp.stop()


async def test_prometheus_down_counts_unreachable():
    comp = make_component(f"http://127.0.0.1:{free_port()}")
    await comp.start()
    try:
        assert not await comp.run_once(comp.jobs[0])
    finally:
        await comp.stop()
    snap = samples(comp)
    assert value(snap, "anomaly_failures_total", anomaly_job="latency",
                 reason="source_unreachable") == 1
    assert value(snap, "anomaly_source_up", anomaly_job="latency") == 0


async def test_series_cap(backfilled_prometheus):
    comp = make_component(backfilled_prometheus.url, job={"max_series": 1})
    await comp.start()
    try:
        assert await comp.run_once(comp.jobs[0])
    finally:
        await comp.stop()
    snap = samples(comp)
    assert value(snap, "anomaly_series_tracked", anomaly_job="latency") == 1
    assert value(snap, "anomaly_failures_total", anomaly_job="latency", reason="series_cap") == 1
    assert len([k for k in snap if k[0] == "anomaly_score"]) == 1


def test_vanished_series_are_dropped_after_ttl():
    cfg = JobConfig(**{**JOB, "fit_window": 200 * STEP})
    state = JobState(cfg)
    ts = np.arange(200.0) * STEP
    rng = np.random.default_rng(0)

    def series(name):
        return RangeSeries({"endpoint": name}, ts, 1 + rng.normal(0, 0.1, 200))

    state.run_pass([series("a"), series("b")], now=1000.0)
    assert len(state.series) == 2 and len(state.current_results()) == 2
    state.run_pass([series("a")], now=1060.0)
    assert len(state.current_results()) == 1  # b is no longer exported...
    assert state.drop_vanished(1060.0, ttl=600) == 0  # ...but keeps its state within the TTL
    state.run_pass([series("a")], now=1700.0)
    assert state.drop_vanished(1700.0, ttl=600) == 1
    assert [dict(k)["endpoint"] for k in state.series] == ["a"]


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError) as err:
        parse_anomaly_config({"jobs": [{**JOB, "stepp": 5}]})
    assert err.value.key == "anomaly.jobs[0].stepp"
    with pytest.raises(ConfigError) as err:
        parse_anomaly_config({"jobs": [{**JOB, "params": {"window": 1}}]})
    assert err.value.key == "anomaly.jobs[0].params"
    with pytest.raises(ConfigError) as err:
        parse_anomaly_config({"jobs": [{**JOB, "step": "1m"}]})
    assert err.value.key == "anomaly.jobs[0].step"
    with pytest.raises(ConfigError) as err:
        parse_anomaly_config({"jobs": [JOB, JOB]})
    assert err.value.key == "anomaly.jobs[1].name"
    with pytest.raises(ConfigError) as err:
        parse_anomaly_config({"jobs": [{**JOB, "fit_window": 20000 * STEP}]})
    assert err.value.key == "anomaly.jobs[0].fit_window"


async def test_exporter_metrics_pass_promtool_with_anomaly_jobs(backfilled_prometheus, aiohttp_client):
    promtool = require_binary("promtool")
    from exporter.app import create_app
    from exporter.config import parse_config

    config = parse_config({
        "nvml": {"enabled": False},
        "anomaly": {"prometheus_url": backfilled_prometheus.url, "jobs": [JOB]},
    })
    client = await aiohttp_client(create_app(config))
    deadline = time.monotonic() + 30
    body = ""
    while time.monotonic() < deadline:
        body = await (await client.get("/metrics")).text()
        if "anomaly_score{" in body:
            break
        await asyncio.sleep(0.2)
    assert "anomaly_score{" in body and "anomaly_source_up" in body
    check = subprocess.run([promtool, "check", "metrics"], input=body.encode(), capture_output=True)
    assert check.returncode == 0 and check.stdout == b"" and check.stderr == b"", check
