"""`python -m loadgen`: simulated shoppers (and fault drills) against the server."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Optional

from loadgen.config import ConfigError, LoadgenConfig, load_config, parse_scenario
from typed_config import parse_section

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO_ROOT / "config" / "loadgen.yaml"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m loadgen",
        description=(
            "Traffic simulator: shoppers search, re-rank and get recommendations at a rate that follows\n"
            "a daily pattern, then click / add to cart / buy following a cascade model driven by the true\n"
            "relevance of what they were shown (the catalog's judged queries), sending /v1/feedback.\n"
            "Optional fault drills through the server's admin API. Reference: docs/configuration.md."),
        epilog=(
            "scenarios (--scenario NAME[@START][+DURATION][,key=value...], seconds):\n"
            "  latency-spike    server-side added latency (latency_ms=800, version=...)\n"
            "  error-burst      server-side injected 5xx (error_rate=0.5, version=...)\n"
            "  degraded-canary  shift canary_weight=20% of traffic to canary_version=2 (a degraded model)\n"
            "  surge            multiply the arrival rate by surge_factor=10\n"
            "  query-drift      shoppers ask only the longest drift_share=0.25 of the queries (input drift)\n"
            "example: --duration 300 --scenario error-burst@60+90 --scenario degraded-canary@180+120"),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", type=Path, default=None,
                   help=f"YAML config (default: {DEFAULT_CONFIG.relative_to(REPO_ROOT)} when present)")
    p.add_argument("--url", help="inference server base URL (target.url)")
    p.add_argument("--rate", type=float, help="mean requests per second over a day (rate.requests_per_second)")
    p.add_argument("--day-length", type=float, metavar="SECONDS",
                   help="wall seconds per simulated day, e.g. 600 for a 10-minute day (rate.day_length_s)")
    p.add_argument("--start-hour", type=float, help="simulated hour at start (default: current UTC hour)")
    p.add_argument("--concurrency", type=int, help="max requests in flight (rate.max_concurrency)")
    p.add_argument("--users", type=int, help="size of the sticky user-id pool (shopper.users)")
    p.add_argument("--duration", type=float, metavar="SECONDS", help="stop after this long (default: until Ctrl-C)")
    p.add_argument("--catalog", choices=("synthetic", "homedepot", "csv"),
                   help="override the catalog source (must match what the server serves)")
    p.add_argument("--server-config", help="server YAML whose `catalog` section to load (relevance.server_config)")
    p.add_argument("--scenario", action="append", default=[], metavar="SPEC",
                   help="fault drill to run, repeatable; see below")
    p.add_argument("--admin-token-file", help="file with the server's admin bearer token (target.admin_token_file)")
    p.add_argument("--feedback-token-file",
                   help="file with the server's feedback (event-source) token (target.feedback_token_file)")
    p.add_argument("--listen", metavar="HOST:PORT", help="serve /metrics, /status and /v1/scenarios here")
    p.add_argument("--report-interval", type=float, metavar="SECONDS", help="live summary period (default 5)")
    p.add_argument("--seed", type=int, help="random seed for reproducible runs")
    p.add_argument("--summary-json", type=Path, help="write the final summary as JSON to this file")
    p.add_argument("--no-metrics", action="store_true", help="do not keep Prometheus metrics")
    p.add_argument("-q", "--quiet", action="store_true", help="no live summary lines, only the final report")
    return p


def apply_cli(cfg: LoadgenConfig, args: argparse.Namespace) -> LoadgenConfig:
    """`cfg` with the command-line flags applied, validated again as a whole (raises `ConfigError`)."""
    overrides = [
        ("url", "target", "url"), ("admin_token_file", "target", "admin_token_file"),
        ("feedback_token_file", "target", "feedback_token_file"),
        ("rate", "rate", "requests_per_second"), ("day_length", "rate", "day_length_s"),
        ("start_hour", "rate", "start_hour"), ("concurrency", "rate", "max_concurrency"),
        ("users", "shopper", "users"), ("server_config", "relevance", "server_config"),
        ("duration", None, "duration_s"), ("report_interval", None, "report_interval_s"),
        ("listen", None, "listen"), ("seed", None, "seed"),
    ]
    data = cfg.model_dump()
    for arg, section, key in overrides:
        value = getattr(args, arg)
        if value is not None:
            (data[section] if section else data)[key] = value
    data["scenarios"] += [parse_scenario(s).model_dump() for s in args.scenario]
    return parse_section(LoadgenConfig, data)


async def run(cfg: LoadgenConfig, args: argparse.Namespace) -> int:
    from aiohttp import web
    from prometheus_client import disable_created_metrics

    from loadgen.client import ServerClient, read_admin_token, read_feedback_token
    from loadgen.control import create_app
    from loadgen.metrics import LoadgenMetrics
    from loadgen.relevance import load_oracle
    from loadgen.runner import Simulator, format_summary

    overrides = {"source": args.catalog} if args.catalog else None
    oracle = await asyncio.to_thread(load_oracle, cfg.relevance, cfg.shopper.default_price, REPO_ROOT, overrides)
    print(f"loadgen: catalog {oracle.catalog_name!r}: {len(oracle.product_ids)} products, "
          f"{len(oracle.intents)} judged queries with relevant products; target {cfg.target.url}", flush=True)
    token = read_admin_token(cfg.target)
    disable_created_metrics()  # `_created` series double every counter for no use here (this process only)
    metrics = None if args.no_metrics else LoadgenMetrics()
    emit = (lambda line: None) if args.quiet else (lambda line: print(line, flush=True))
    async with ServerClient(cfg.target, cfg.rate.max_concurrency, token, read_feedback_token(cfg.target)) as client:
        sim = Simulator(cfg, oracle, client, metrics, emit=emit)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, sim.stop)
        runner: Optional[web.AppRunner] = None
        if cfg.listen:
            host, _, port = cfg.listen.rpartition(":")
            runner = web.AppRunner(create_app(sim, token), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, host, int(port)).start()
            print(f"loadgen: control and metrics on http://{cfg.listen}/ (/metrics, /status, /v1/scenarios)",
                  flush=True)
        progress = None
        if cfg.duration_s and sys.stderr.isatty() and not args.quiet:
            from tqdm import tqdm

            progress = tqdm(total=int(cfg.duration_s), unit="s", desc="loadgen", leave=False)
            sim.emit = lambda line: progress.write(line)

            async def tick() -> None:
                while True:
                    await asyncio.sleep(1)
                    progress.n = min(int(sim.elapsed()), int(cfg.duration_s))
                    progress.refresh()

            ticker = asyncio.create_task(tick())
        try:
            summary = await sim.run()
        finally:
            if progress is not None:
                ticker.cancel()
                progress.close()
            if runner is not None:
                await runner.cleanup()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
    print(format_summary(summary), flush=True)
    if args.summary_json:
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if any(s["outcome"] == "failed" for s in summary["scenarios"]) else 0


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config_path = args.config if args.config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None)
    try:
        cfg = apply_cli(load_config(config_path), args)
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(run(cfg, args))
        return 130
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
