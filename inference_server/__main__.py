"""Command line: ``python -m inference_server [--config FILE] [--host H] [--port P] [--check-config]``."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

import yaml


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m inference_server",
        description="Serve search, re-rank and recommendation over a product catalog with "
        "all-MiniLM-L6-v2 (dynamic batching, Prometheus metrics at /metrics).",
        epilog="Every config key can be overridden from the environment: "
        "INFERENCE_SERVER__SECTION__KEY=value (e.g. INFERENCE_SERVER__BATCHING__MAX_BATCH_SIZE=16). "
        "See docs/server.md.",
    )
    parser.add_argument("--config", metavar="FILE",
                        help="YAML config (default: config/inference_server.yaml when present, else built-in defaults)")
    parser.add_argument("--host", help="listen address (overrides server.host; default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="listen port (overrides server.port; default 8000)")
    parser.add_argument("--check-config", action="store_true",
                        help="validate the config, print it resolved (env overrides applied) and exit")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "INFO"),
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="log level (default INFO)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    from inference_server.config import ConfigError, ServerConfig, config_to_dict, load_config
    from typed_config import parse_section

    try:
        config = load_config(args.config)
        flags = {key: value for key, value in (("host", args.host), ("port", args.port)) if value is not None}
        if flags:
            config.server = parse_section(ServerConfig, {**config.server.model_dump(), **flags}, "server")
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.check_config:
        print(yaml.safe_dump(config_to_dict(config), sort_keys=False), end="")
        return 0

    from inference_server.api.app import serve

    try:
        serve(config)
    except ConfigError as exc:  # found while building the app: secrets, the request log path
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
