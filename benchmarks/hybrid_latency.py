#!/usr/bin/env python3
"""What hybrid retrieval adds to /v1/search latency over dense-only, on the Home Depot catalog (54,667 products).

One server subprocess serves two versions with the same weights (the bundled MiniLM): `1` dense and `2`
hybrid (BM25 over normalised text fused with the cosine, weight chosen on DEV at registration). The
benchmark alternates the live split between them in rounds and sends sequential /v1/search requests
(one in flight: latency, not throughput), then prints the p50/p95 of each mode and the p50 difference
(target: hybrid adds <= 3 ms at p50). Queries are the DEV-split Home Depot queries.

    python benchmarks/hybrid_latency.py --rounds 6 --requests 100
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

TARGET_ADDED_P50_MS = 3.0


def _request(url: str, body=None, method: str = "POST", token: str | None = None) -> dict:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None, method=method,
                                 headers=headers)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return json.loads(resp.read())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6, help="alternations dense/hybrid")
    parser.add_argument("--requests", type=int, default=100, help="sequential searches per mode and round")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--cache-dir", default=str(REPO_ROOT / "var" / "cache" / "embeddings"),
                        help="embedding/lexical cache (reused: the catalog is embedded once)")
    parser.add_argument("--num-threads", type=int, default=1, help="torch threads of the server")
    parser.add_argument("--work-dir", default=str(REPO_ROOT / "var" / "bench" / "hybrid-latency"),
                        help="repository, registration state and logs (kept: a re-run skips registration)")
    args = parser.parse_args(argv)

    from devstack.components import register_versions
    from devstack.processes import free_port, launch
    from inference_server.catalog import load_homedepot
    from inference_server.catalog.splits import select_split

    work = Path(args.work_dir)
    server = None
    try:
        root = work / "models" / "minilm"
        shutil.rmtree(work / "models", ignore_errors=True)
        shutil.copytree(REPO_ROOT / "models" / "minilm" / "1", root / "1")
        (root / "2").mkdir(parents=True)
        (root / "2" / "model.yaml").write_text("retrieval: {mode: hybrid}\nparent: '1'\n"
                                               "description: bundled MiniLM, hybrid retrieval\n")
        token = "bench-token-0123456789abcdef"
        (work / "token").write_text(token)
        port = free_port()
        config = {
            "server": {"host": "127.0.0.1", "port": port, "request_timeout_ms": 60000},
            "model": {"num_threads": args.num_threads},
            "catalog": {"source": "homedepot", "cache_dir": args.cache_dir},
            "batching": {"instances": 1},
            "request_log": {"enabled": False},
            "model_repository": {"root": str(work / "models"), "state_dir": str(work / "state"),
                                 "version_policy": {"kind": "specific", "versions": ["1", "2"]}},
            "traffic": {"weights": {"1": 100}},
            "health": {"interval_s": 0},
            "admin": {"token_file": str(work / "token")},
        }
        config_path = work / "server.yaml"
        import yaml

        config_path.write_text(yaml.safe_dump(config))
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "INFERENCE_SERVER_USER_ID_SALT": "bench"}
        started = time.perf_counter()
        print("registering versions 1 (dense) and 2 (hybrid) on the Home Depot catalog ...", flush=True)
        register_versions(config_path, env=env, timeout=3600)
        print(f"registered in {time.perf_counter() - started:.0f} s", flush=True)
        server = launch("inference_server", [sys.executable, "-m", "inference_server", "--config", str(config_path)],
                        workdir=work, url=f"http://127.0.0.1:{port}", ready_path="/readyz", timeout=1800, env=env,
                        cwd=REPO_ROOT)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 600
        while True:                              # /readyz is ready with one version; wait for both
            models = {m["version"]: m for m in _request(f"{url}/v1/models", method="GET")["models"]}
            if all(models.get(v, {}).get("state") == "ready" for v in ("1", "2")) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert models["2"]["retrieval"]["mode"] == "hybrid", models["2"]
        print("versions:", {v: m["retrieval"] for v, m in models.items()}, flush=True)
        queries = [q.text for q in select_split(load_homedepot().queries, "dev")]
        latencies: dict[str, list[float]] = {"1": [], "2": []}
        for version in ("1", "2"):             # warm both paths
            _request(f"{url}/v1/admin/models/minilm/traffic", {"weights": {version: 100}}, "PUT", token)
            for q in queries[:20]:
                _request(f"{url}/v1/search", {"query": q, "k": args.k})
        i = 0
        for round_no in range(args.rounds):
            for version in (("1", "2") if round_no % 2 == 0 else ("2", "1")):
                _request(f"{url}/v1/admin/models/minilm/traffic", {"weights": {version: 100}}, "PUT", token)
                for _ in range(args.requests):
                    query = queries[i % len(queries)]
                    i += 1
                    t = time.perf_counter()
                    answer = _request(f"{url}/v1/search", {"query": query, "k": args.k})
                    latencies[version].append((time.perf_counter() - t) * 1000)
                    assert answer["version"] == version
        p = {v: (statistics.median(x), statistics.quantiles(x, n=20)[18]) for v, x in latencies.items()}
        print(f"\n/v1/search, k={args.k}, {args.rounds} rounds x {args.requests} sequential requests per mode "
              f"(server torch threads {args.num_threads}; machine shared with other work)")
        print(f"  dense  (v1): p50 {p['1'][0]:.2f} ms  p95 {p['1'][1]:.2f} ms  n={len(latencies['1'])}")
        print(f"  hybrid (v2): p50 {p['2'][0]:.2f} ms  p95 {p['2'][1]:.2f} ms  n={len(latencies['2'])}")
        added = p["2"][0] - p["1"][0]
        print(f"  hybrid adds {added:+.2f} ms at p50 (target <= {TARGET_ADDED_P50_MS} ms): "
              f"{'met' if added <= TARGET_ADDED_P50_MS else 'NOT met'}")
        return 0
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())
