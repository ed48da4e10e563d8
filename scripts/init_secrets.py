#!/usr/bin/env python3
"""Create the secret files docker-compose mounts (secrets/README.md), keeping any that exist.

- admin_token: a random bearer token for the inference server's admin API.
- alerts_token: a random bearer token Alertmanager presents to the rollback webhook (POST /v1/alerts).
- feedback_token: a random bearer token of the event source (the simulator) for POST /v1/feedback.
- slack_webhook_url: the compose stack's local Slack-compatible sink (replace with a real Slack
  incoming-webhook URL to notify Slack; docs/alert-delivery.md).
- smtp_password: a placeholder (mailpit needs none; put the real SMTP password here for a real server).

Files are written 0644 because compose bind-mounts them as-is and the Prometheus-project images run as
`nobody`; keep the repository on a machine you control, or use your orchestrator's secret store.
"""
from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = {
    "admin_token": lambda: secrets.token_urlsafe(32),
    "alerts_token": lambda: secrets.token_urlsafe(32),
    "feedback_token": lambda: secrets.token_urlsafe(32),
    "slack_webhook_url": lambda: "http://alert-sinks:8025/slack/alerts",
    "smtp_password": lambda: "mailpit-needs-no-password",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/init_secrets.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--dir", type=Path, default=REPO_ROOT / "secrets", help="where to write (default: secrets/)")
    p.add_argument("--force", action="store_true", help="overwrite existing files")
    args = p.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    for name, make in DEFAULTS.items():
        path = args.dir / name
        if path.exists() and not args.force:
            print(f"kept    {path}")
            continue
        path.write_text(make() + "\n")
        os.chmod(path, 0o644)
        print(f"created {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
