"""`python -m exporter` / `model-exporter`: serve GPU metrics and anomaly scores on /metrics."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from aiohttp import web
from prometheus_client import disable_created_metrics

from exporter import __version__
from exporter.config import ConfigError, ServerConfig, load_config
from typed_config import parse_section


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="model-exporter",
        description=(
            "Prometheus exporter for NVIDIA GPUs (NVML) and anomaly scores over Prometheus series. "
            "Serves /metrics and /healthz. Config keys can be overridden with EXPORTER__SECTION__KEY=value."
        ),
    )
    parser.add_argument("--config", type=Path, help="YAML config file (default: built-in defaults)")
    parser.add_argument("--host", help="bind address (overrides server.host; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="TCP port (overrides server.port; default 9400)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # `_created` series double every counter/histogram for no benefit to Prometheus; this process only.
    disable_created_metrics()
    try:
        config = load_config(args.config)
        flags = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
        if flags:
            config.server = parse_section(ServerConfig, {**config.server.model_dump(), **flags}, "server")
        from exporter.app import create_app

        config_dir = args.config.resolve().parent if args.config else Path.cwd()
        app = create_app(config, config_dir=config_dir)
    except ConfigError as exc:
        print(f"model-exporter: config error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("exporter").info("listening on http://%s:%d", config.server.host, config.server.port)
    web.run_app(app, host=config.server.host, port=config.server.port, print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
