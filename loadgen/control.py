"""The simulator's HTTP side (`--listen`): /metrics, /status, and on-demand fault drills.

`POST /v1/scenarios {"name": "error-burst", "duration_s": 60, ...}` starts a drill now;
`GET /v1/scenarios` lists them. Starting drills needs the server's admin bearer token.
"""
from __future__ import annotations

import json
from typing import Optional

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from inference_server.api.auth import BearerAuth
from inference_server.errors import ApiError
from loadgen.config import ConfigError, ScenarioConfig
from typed_config import parse_section
from loadgen.runner import Simulator

SIMULATOR = web.AppKey("simulator", Simulator)
AUTH = web.AppKey("auth", BearerAuth)


def error(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status)


async def metrics(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    if sim.metrics is None:
        return error(404, "not_found", "metrics are disabled")
    return web.Response(body=generate_latest(sim.metrics.registry),
                        headers={"Content-Type": CONTENT_TYPE_LATEST})


async def status(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    snap = sim.stats.snapshot()
    snap["target_rate_per_s"] = round(sim.pattern.rate(sim.elapsed(), sim.control.rate_multiplier), 2)
    snap["active_scenarios"] = sim.active_scenarios()
    return web.json_response(snap)


async def list_scenarios(request: web.Request) -> web.Response:
    sim = request.app[SIMULATOR]
    return web.json_response({"scenarios": [
        {"name": r.cfg.name, "outcome": r.outcome, "duration_s": r.cfg.duration_s, "error": r.error}
        for r in sim.runs]})


async def start_scenario(request: web.Request) -> web.Response:
    try:
        request.app[AUTH].check(request)
    except ApiError as exc:
        return web.json_response({"error": {"code": exc.code, "message": exc.message}}, status=exc.status,
                                 headers=exc.headers)
    try:
        data = json.loads(await request.read())
    except (ValueError, UnicodeDecodeError):
        return error(400, "invalid_json", "body must be a JSON object")
    if not isinstance(data, dict):
        return error(400, "validation", "body must be a JSON object")
    data.pop("start_s", None)
    try:
        sc = parse_section(ScenarioConfig, data, "scenario")
        sim = request.app[SIMULATOR]
    except ConfigError as exc:
        return error(400, "validation", str(exc))
    if sim.stopping:
        return error(503, "not_ready", "the simulator is stopping")
    sim.schedule(sc, start_now=True)
    return web.json_response({"started": sc.name, "duration_s": sc.duration_s}, status=202)


def create_app(sim: Simulator, admin_token: Optional[str]) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[SIMULATOR] = sim
    app[AUTH] = BearerAuth(admin_token.encode() if admin_token else None, "loadgen-drills")
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    app.router.add_get("/v1/scenarios", list_scenarios)
    app.router.add_post("/v1/scenarios", start_scenario)
    return app
