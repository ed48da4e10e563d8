#!/usr/bin/env python3
"""Generate the bundle's Grafana dashboards (grafana/dashboards/*.json) from grafana/dashgen.

The JSON files are committed so Grafana can provision them; they must equal this generator's output.
  python grafana/build.py          write the dashboards
  python grafana/build.py --check  exit 1 (and name the files) if a committed dashboard is stale
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from dashgen.dashboards import all_dashboards  # noqa: E402

OUTPUT_DIR = HERE / "dashboards"


def render() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{d.uid}.json": json.dumps(d.to_json(), indent=2, ensure_ascii=False) + "\n" for d in all_dashboards()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing; exit 1 when stale")
    parser.add_argument("--output-dir", type=Path, default=OUTPUT_DIR, help=f"default: {OUTPUT_DIR}")
    args = parser.parse_args(argv)
    files = render()
    existing = {p.name for p in args.output_dir.glob("*.json")} if args.output_dir.exists() else set()
    if args.check:
        stale = sorted(name for name, text in files.items()
                       if not (args.output_dir / name).exists() or (args.output_dir / name).read_text() != text)
        extra = sorted(existing - set(files))
        for name in stale:
            print(f"stale: {args.output_dir / name}", file=sys.stderr)
        for name in extra:
            print(f"not generated: {args.output_dir / name}", file=sys.stderr)
        if stale or extra:
            print("run: python grafana/build.py", file=sys.stderr)
            return 1
        print(f"{len(files)} dashboards up to date")
        return 0
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name in existing - set(files):
        (args.output_dir / name).unlink()
    for name, text in files.items():
        (args.output_dir / name).write_text(text)
    print(f"wrote {len(files)} dashboards to {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
