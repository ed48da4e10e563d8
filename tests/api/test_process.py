"""The real process: `python -m inference_server` via devstack.components, as other suites use it."""
from __future__ import annotations

import json
import urllib.request

from devstack.processes import http_json, running
from devstack.components import start_inference_server


def test_server_process_serves_and_stops_cleanly(tmp_path, embedding_cache):
    server = start_inference_server(tmp_path, overrides={"catalog": {"cache_dir": str(embedding_cache)}})
    with running(server):
        body = http_json(f"{server.url}/v1/search", {"query": "walnut bookshelf", "k": 3, "user_id": "u-1"})
        assert body["version"] == "1" and len(body["results"]) == 3
        with urllib.request.urlopen(f"{server.url}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        assert 'inference_requests_total{endpoint="search",model="minilm",status="200",version="1"} 1.0' in text
        assert server.url.startswith("http://127.0.0.1:")
    assert server.proc.returncode == 0, server.log()[-2000:]
    lines = [json.loads(line) for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert [r["request_id"] for r in lines] == [body["request_id"]]
