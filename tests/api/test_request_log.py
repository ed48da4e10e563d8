"""Request log: one JSON line per request with the latency split, hashed user ids and the (bounded) query;
feedback lines; rotation."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

from inference_server.config import RequestLogConfig
from inference_server.serving.request_log import RequestLog


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_one_json_line_per_request(make_client, tmp_path):
    client = await make_client()
    log_path = tmp_path / "requests.jsonl"
    resp = await client.post("/v1/search", json={"query": "garden hose", "k": 4, "user_id": "alice@example.com"},
                             headers={"X-Request-ID": "log-test-1"})
    body = await resp.json()
    await client.post("/v1/search", json={"query": ""}, headers={"X-Request-ID": "log-test-2"})
    await client.get("/metrics")  # ops endpoints are not logged when they succeed
    await client.app.shutdown()
    await client.app.cleanup()  # flushes the log writer thread
    records = _lines(log_path)
    by_id = {r["request_id"]: r for r in records}
    assert set(by_id) == {"log-test-1", "log-test-2"}
    ok = by_id["log-test-1"]
    assert ok["endpoint"] == "search" and ok["status"] == 200 and ok["path"] == "/v1/search"
    assert ok["model"] == "minilm" and ok["version"] == "1"
    assert ok["result_ids"] == [r["id"] for r in body["results"]]
    assert ok["queue_ms"] >= 0 and ok["compute_ms"] > 0 and ok["total_ms"] >= ok["compute_ms"]
    assert ok["time"].endswith("Z") and "T" in ok["time"]
    expected_hash = hashlib.sha256(b"test-salt\x00alice@example.com").hexdigest()
    assert ok["user_id_hash"] == expected_hash
    assert "alice" not in log_path.read_text()
    assert ok["record"] == "request" and ok["query"] == "garden hose"
    bad = by_id["log-test-2"]
    assert bad["status"] == 400 and bad["error"] == "validation" and bad["model"] == ""


def test_queries_are_bounded_or_left_out_and_feedback_lines_carry_no_user(tmp_path):
    def run(name: str, **config) -> list[dict]:
        path = tmp_path / name
        request_log = RequestLog(RequestLogConfig(path=str(path), **config), salt=b"s")
        request_log.write(request_id="r1", method="POST", path="/v1/search", endpoint="search", status=200,
                          total_seconds=0.01, result_ids=["p1", "p2"], user_id="bob", query="x" * 300)
        request_log.write(request_id="r2", method="POST", path="/v1/recommend", endpoint="recommend", status=200,
                          total_seconds=0.01, result_ids=["p3"], user_id="bob")
        request_log.write_feedback(request_id="r1", event_id="e1", event_type="click", product_id="p2", position=2,
                                   endpoint="search", model="minilm", version="1")
        request_log.close()
        return _lines(path)

    searched, recommended, feedback = run("short.jsonl", max_query_chars=10)
    assert searched["query"] == "x" * 10 and recommended["query"] is None
    assert feedback == {"time": feedback["time"], "record": "feedback", "request_id": "r1", "event_id": "e1",
                        "type": "click", "product_id": "p2", "position": 2, "endpoint": "search",
                        "model": "minilm", "version": "1"}
    assert feedback["time"].endswith("Z")
    searched, _, feedback = run("off.jsonl", log_queries=False)
    assert searched["query"] is None and searched["result_ids"] == ["p1", "p2"] and feedback["position"] == 2


def test_rotation_by_size(tmp_path):
    config = RequestLogConfig(path=str(tmp_path / "r.jsonl"), max_bytes=2000, backups=2)
    request_log = RequestLog(config, salt=b"s")
    for i in range(60):
        request_log.write(request_id=f"id-{i}", method="POST", path="/v1/search", endpoint="search",
                          status=200, total_seconds=0.01, result_ids=["a", "b"])
    request_log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.jsonl", "r.jsonl.1", "r.jsonl.2"]
    for name in files:
        assert (tmp_path / name).stat().st_size <= 2000
        assert all(r["endpoint"] == "search" for r in _lines(tmp_path / name))
    # The newest record is in the live file.
    assert _lines(tmp_path / "r.jsonl")[-1]["request_id"] == "id-59"


def test_disabled_log_writes_nothing(tmp_path):
    request_log = RequestLog(RequestLogConfig(enabled=False, path=str(tmp_path / "x.jsonl")), salt=b"s")
    request_log.write(request_id="a", method="GET", path="/", endpoint="other", status=200, total_seconds=0.0)
    request_log.close()
    assert not (tmp_path / "x.jsonl").exists()


def test_salt_from_file_wins_over_env(tmp_path, monkeypatch):
    salt_file = tmp_path / "salt"
    salt_file.write_text("file-salt\n")
    monkeypatch.setenv("MY_SALT", "env-salt")
    request_log = RequestLog(RequestLogConfig(enabled=False, user_id_salt_env="MY_SALT",
                                              user_id_salt_file=str(salt_file)))
    assert request_log.hash_user("u") == hashlib.sha256(b"file-salt\x00u").hexdigest()
    env_only = RequestLog(RequestLogConfig(enabled=False, user_id_salt_env="MY_SALT"))
    assert env_only.hash_user("u") == hashlib.sha256(b"env-salt\x00u").hexdigest()


def test_lines_reach_the_file_while_the_server_runs_and_odd_text_is_kept(tmp_path):
    # The writer lingers between batches (fewer wake-ups under load); lines must still arrive without a
    # close. Text with a lone surrogate (a valid JSON escape, not UTF-8; the API refuses it in bodies)
    # is written escaped: it once killed the writer thread, losing every later line.
    import time

    path = tmp_path / "live.jsonl"
    request_log = RequestLog(RequestLogConfig(path=str(path)), salt=b"s")
    try:
        for i in range(3):
            request_log.write(request_id=f"r{i}", method="POST", path="/v1/search", endpoint="search", status=200,
                              total_seconds=0.01, query="caf\u00e9 \ud800" if i == 2 else "drill")
            time.sleep(0.02)
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline and (not path.exists() or len(path.read_text().splitlines()) < 3):
            time.sleep(0.02)
        records = _lines(path)
    finally:
        request_log.close()
    assert [r["request_id"] for r in records] == ["r0", "r1", "r2"]
    assert records[2]["query"] == "caf\u00e9 \ud800"


def test_a_record_that_cannot_be_formatted_is_counted_and_the_writer_goes_on(tmp_path):
    lost = []
    path = tmp_path / "r.jsonl"
    request_log = RequestLog(RequestLogConfig(path=str(path)), salt=b"s", on_error=lambda: lost.append(1))
    request_log.write(request_id="bad", method="POST", path="/v1/search", endpoint="search", status=200,
                      total_seconds=0.01, result_ids=[object()])   # no JSON form
    request_log.write(request_id="good", method="POST", path="/v1/search", endpoint="search", status=200,
                      total_seconds=0.01)
    request_log.close()
    assert [r["request_id"] for r in _lines(path)] == ["good"] and lost == [1]
