"""The simulator against a real inference server: traffic flows, the model's rankings earn more
clicks than random ones, the live summary and /metrics are right, and the control API is guarded."""
from __future__ import annotations

import asyncio
import random
import subprocess
import sys

import aiohttp
import pytest
from aiohttp import web

from loadgen.client import ServerClient
from loadgen.config import LoadgenConfig, RelevanceConfig, ScenarioConfig, TargetConfig
from loadgen.control import create_app
from loadgen.metrics import LoadgenMetrics
from loadgen.relevance import load_oracle
from loadgen.runner import Simulator, format_summary
from loadgen.shopper import simulate_session
from devstack.processes import REPO_ROOT, free_port, running
from devstack.components import start_inference_server
from tests.support.binaries import require_binary


ADMIN_TOKEN = "loadgen-test-admin-token"
FEEDBACK_TOKEN = "loadgen-test-feedback-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with running(start_inference_server(tmp_path_factory.mktemp("server"), timeout=300,
                                        env={"INFERENCE_ADMIN_TOKEN": ADMIN_TOKEN,
                                             "INFERENCE_FEEDBACK_TOKEN": FEEDBACK_TOKEN})) as srv:
        yield srv


@pytest.fixture(scope="module")
def oracle(server):
    return load_oracle(RelevanceConfig(server_config=str(server.extra["config_path"])))


def sim_config(server, **overrides) -> LoadgenConfig:
    cfg = LoadgenConfig(target=TargetConfig(url=server.url), duration_s=4.0, report_interval_s=1.0, seed=7)
    cfg.rate.requests_per_second = 15
    cfg.rate.daily_amplitude = 0.0
    cfg.relevance.server_config = str(server.extra["config_path"])
    for key, value in overrides.items():
        setattr(cfg, key, value)  # sections validate assignments
    return cfg


async def test_model_rankings_earn_more_clicks_than_random(server, oracle):
    cfg = sim_config(server)
    rng = random.Random(5)
    model_clicks = random_clicks = 0
    async with ServerClient(cfg.target, 8) as client:
        for intent in oracle.intents[:30]:
            reply = await client.call("POST", "/v1/search", {"query": intent.text, "k": 10})
            assert reply.ok, reply
            shown = [r["id"] for r in reply.body["results"]]
            shuffled = rng.sample(oracle.product_ids, 10)
            for _ in range(20):
                for ids, bucket in ((shown, "model"), (shuffled, "random")):
                    events = simulate_session(ids, lambda p: oracle.relevance(intent, p), oracle.price,
                                              cfg.shopper, rng)
                    n = sum(e.type == "click" for e in events)
                    if bucket == "model":
                        model_clicks += n
                    else:
                        random_clicks += n
    assert model_clicks > 2 * random_clicks, (model_clicks, random_clicks)


async def test_simulator_drives_traffic_and_reports(server, oracle):
    cfg = sim_config(server)
    lines: list[str] = []
    metrics = LoadgenMetrics()
    async with ServerClient(cfg.target, cfg.rate.max_concurrency, feedback_token=FEEDBACK_TOKEN) as client:
        sim = Simulator(cfg, oracle, client, metrics, emit=lines.append)
        summary = await sim.run()
    assert summary["requests"] >= 20
    assert summary["status"].get("200", 0) >= 0.9 * summary["requests"], summary["status"]
    assert summary["versions"]["1"]["impressions"] > 0 and summary["versions"]["1"]["clicks"] > 0
    assert summary["feedback"].get("accepted", 0) > 0, summary
    assert summary["feedback"].get("rejected", 0) == 0 and "failed" not in summary["feedback"], summary["feedback"]
    assert len(lines) >= 2 and all("CTR [v1=" in line for line in lines)
    assert "version 1:" in format_summary({**summary, "scenarios": []})
    served = {ep for (ep, status) in sim.stats.requests if status == "200"}
    assert {"search", "rank", "recommend"} <= served


async def test_control_api_metrics_and_auth(server, oracle, tmp_path):
    cfg = sim_config(server, duration_s=None)
    metrics = LoadgenMetrics()
    token = "s3cret-token"
    async with ServerClient(cfg.target, cfg.rate.max_concurrency, admin_token=token) as client:
        sim = Simulator(cfg, oracle, client, metrics, emit=lambda line: None)
        runner = web.AppRunner(create_app(sim, token))
        await runner.setup()
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        task = asyncio.create_task(sim.run())
        base = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as http:
                await asyncio.sleep(2.0)
                async with http.post(f"{base}/v1/scenarios", json={"name": "surge"}) as resp:
                    assert resp.status == 401
                async with http.post(f"{base}/v1/scenarios", json={"name": "surge"},
                                     headers={"Authorization": "Bearer wrong"}) as resp:
                    assert resp.status == 403
                auth = {"Authorization": f"Bearer {token}"}
                for bad in ({"name": "meltdown"}, {"name": "surge", "surge_factor": 0.5}, ["surge"]):
                    async with http.post(f"{base}/v1/scenarios", json=bad, headers=auth) as resp:
                        assert resp.status == 400 and "error" in await resp.json()
                async with http.post(f"{base}/v1/scenarios", data=b"{", headers=auth) as resp:
                    assert resp.status == 400
                async with http.post(f"{base}/v1/scenarios", json={"name": "surge", "duration_s": 2, "surge_factor": 3},
                                     headers=auth) as resp:
                    assert resp.status == 202
                await asyncio.sleep(0.5)
                async with http.get(f"{base}/status") as resp:
                    status = await resp.json()
                assert status["active_scenarios"] == ["surge"] and status["requests"] > 0
                assert sim.control.rate_multiplier == 3
                await asyncio.sleep(2.5)
                assert sim.control.rate_multiplier == 1
                async with http.get(f"{base}/metrics") as resp:
                    text = await resp.text()
        finally:
            sim.stop()
            summary = await task
            await runner.cleanup()
    assert [s["outcome"] for s in summary["scenarios"]] == ["done"]
    assert 'loadgen_requests_total{endpoint="search",status="200"}' in text
    assert 'loadgen_scenario_runs_total{outcome="done",scenario="surge"} 1.0' in text
    promtool = require_binary("promtool")
    check = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout == "" and check.stderr == "", check.stdout + check.stderr


async def test_admin_scenario_without_token_fails_cleanly(server, oracle):
    cfg = sim_config(server, duration_s=2.0)
    cfg.scenarios = [ScenarioConfig(name="error-burst", duration_s=1.0)]
    async with ServerClient(cfg.target, cfg.rate.max_concurrency, admin_token=None) as client:
        summary = await Simulator(cfg, oracle, client, None, emit=lambda line: None).run()
    assert summary["scenarios"][0]["outcome"] == "failed"
    assert "admin token" in summary["scenarios"][0]["error"]
    assert summary["requests"] > 0  # traffic kept flowing


async def test_server_side_drills_inject_and_clear_faults(server, oracle):
    cfg = sim_config(server, duration_s=7.0)
    cfg.scenarios = [ScenarioConfig(name="latency-spike", start_s=0.5, duration_s=2.0, latency_ms=200),
                     ScenarioConfig(name="error-burst", start_s=3.5, duration_s=2.5, error_rate=1.0)]
    lines: list[str] = []
    async with ServerClient(cfg.target, cfg.rate.max_concurrency, admin_token=ADMIN_TOKEN) as client:
        summary = await Simulator(cfg, oracle, client, None, emit=lines.append).run()
        faults = await client.admin("GET", "/v1/admin/faults")
    assert [s["outcome"] for s in summary["scenarios"]] == ["done", "done"], summary["scenarios"]
    assert summary["status"].get("503", 0) > 0, summary["status"]  # the burst failed every request it saw
    assert faults["fault"] in (None, {}, []), faults  # the drill cleared its fault at the end
    assert any("scenario error-burst started" in line for line in lines)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/metrics") as resp:
            text = await resp.text()
    injected = {line.split("{")[1].split("}")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                if line.startswith("inference_injected_faults_total{")}
    assert any('kind="latency"' in k and v > 0 for k, v in injected.items()), injected
    assert any('kind="error"' in k and v > 0 for k, v in injected.items()), injected


def test_cli_help_and_config_errors(tmp_path):
    out = subprocess.run([sys.executable, "-m", "loadgen", "--help"], capture_output=True,
                         text=True, cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 0 and "--scenario" in out.stdout and "degraded-canary" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("rate: {requests_per_secnd: 3}\n")
    out = subprocess.run([sys.executable, "-m", "loadgen", "--config", str(bad)],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 2 and "rate.requests_per_secnd" in out.stderr
    out = subprocess.run([sys.executable, "-m", "loadgen", "--scenario", "meltdown"],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 2 and "scenario.name" in out.stderr
