"""The click log: the request log's query and feedback lines, joined by request id (skip-above), over rotated
files, with malformed lines and a bounded join window; end to end from served requests and feedback over
HTTP to the training examples."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from inference_server import click_log
from inference_server.api.context import CONFIG
from inference_server.catalog import load_catalog
from inference_server.catalog.splits import query_split
from inference_server.click_log import ClickJoin, skip_above
from inference_server.training import TrainingConfig, _read_click_log, build_examples

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
IDS = ["p1", "p2", "p3", "p4", "p5"]


def at(seconds: float) -> str:
    return (T0 + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def served(rid: str, t: float, query: str | None = "drill", *, endpoint: str = "search", status: int = 200,
           ids: list[str] = IDS, version: str = "1") -> str:
    return json.dumps({"time": at(t), "record": "request", "request_id": rid, "endpoint": endpoint, "status": status,
                       "model": "minilm", "version": version, "result_ids": ids, "query": query})


def event(rid: str, t: float, product_id: str, position: int, kind: str = "click") -> str:
    return json.dumps({"time": at(t), "record": "feedback", "request_id": rid, "event_id": f"{rid}-{position}-{kind}",
                       "type": kind, "product_id": product_id, "position": position})


def run(tmp_path: Path, *args: str) -> tuple[int, list[dict]]:
    out = tmp_path / "out" / "clicks.jsonl"
    code = click_log.main([*args, "--out", str(out), "--no-progress", "--model-repository", str(tmp_path / "none")])
    return code, [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []


def test_skip_above_takes_only_products_shown_above_the_lowest_click():
    assert skip_above(IDS, {3}) == (["p3"], ["p1", "p2"])
    assert skip_above(IDS, {4, 2}) == (["p2", "p4"], ["p1", "p3"])
    assert skip_above(IDS, {1}) == (["p1"], [])          # nothing above the top: no negatives
    assert skip_above(IDS, set()) == ([], [])


def test_rotated_files_are_read_oldest_first_and_joined(tmp_path, capsys):
    log = tmp_path / "requests.jsonl"
    (tmp_path / "requests.jsonl.2").write_text(served("a", 0) + "\n" + served("b", 1, "hose") + "\n")
    (tmp_path / "requests.jsonl.1").write_text(event("a", 5, "p4", 4) + "\n" + served("c", 6, "paint") + "\n")
    log.write_text(event("a", 7, "p2", 2) + "\n" + event("c", 8, "p1", 1, "purchase") + "\n")
    code, records = run(tmp_path, "--request-log", str(log))
    assert code == 0
    assert [(r["request_id"], r["query"], r["clicked"], r["skipped"]) for r in records] == [
        ("a", "drill", ["p2", "p4"], ["p1", "p3"]),
        ("c", "paint", ["p1"], []),
    ]
    out = capsys.readouterr().out
    assert "requests read: 3" in out and "requests with clicks: 2" in out and "click-log lines written: 2" in out
    # naming only a rotated file finds the same group
    code, again = run(tmp_path, "--request-log", str(tmp_path / "requests.jsonl.1"))
    assert code == 0 and again == records


def test_malformed_lines_are_skipped_and_counted_by_reason(tmp_path, capsys):
    log = tmp_path / "requests.jsonl"
    lines = [
        "{not json",
        "[1, 2]",
        json.dumps({"record": "request", "request_id": "x"}),                       # no time
        json.dumps({"time": at(0), "record": "request"}),                           # no request id
        json.dumps({"time": at(0), "record": "request", "request_id": "y", "endpoint": "search", "status": 200,
                    "result_ids": "p1", "query": "q"}),                              # result_ids not a list
        served("a", 1),
        json.dumps({"time": at(2), "record": "feedback", "request_id": "a", "product_id": "p2"}),  # no position
        event("a", 3, "p5", 2),                                                      # p5 was not at position 2
        event("a", 4, "p3", 3),
        served("r", 5, None, endpoint="recommend"),
        served("e", 6, status=503, ids=None),
        served("n", 7, None),                                                        # logged without its query
        "",
    ]
    log.write_bytes(("\n".join(lines) + "\n").encode() + b"\xff\xfe bad bytes\n")
    code, records = run(tmp_path, "--request-log", str(log))
    assert code == 0
    assert records == [{"query": "drill", "clicked": ["p3"], "skipped": ["p1", "p2"], "request_id": "a",
                        "endpoint": "search", "model": "minilm", "version": "1"}]
    out = capsys.readouterr().out
    for expected in ("malformed lines skipped: 8", "1 not JSON", "1 not a JSON object", "1 no valid time",
                     "1 no request_id", "1 result_ids not a list of ids", "1 feedback without product_id and position",
                     "1 feedback position not matching the logged answer", "1 not UTF-8",
                     "not joinable: 1 recommend answers (no query)", "not joinable: 1 not answered 200",
                     "not joinable: 1 no query logged"):
        assert expected in out, (expected, out)


def test_join_window_bounds_memory_and_drops_late_events():
    join = ClickJoin(join_window_s=10.0)
    records = []
    for i in range(200):                  # a long stream of answers without feedback
        records += join.add(served(f"r{i}", i))
        assert len(join) <= 11
    records += join.add(event("r195", 204, "p2", 2))    # 9 s after its answer: inside the window
    records += join.add(event("r190", 204, "p2", 2))    # 14 s after: the answer already left
    records += join.finish()
    assert [r["request_id"] for r in records] == ["r195"]
    assert join.counts.events_joined == 1 and join.counts.events_unmatched == 1 and len(join) == 0

    capped = ClickJoin(join_window_s=3600.0, max_pending=5)
    for i in range(20):
        capped.add(served(f"r{i}", i))
        assert len(capped) <= 5
    assert capped.counts.closed_early == 15


def test_a_reused_request_id_joins_its_newest_answer():
    join = ClickJoin()
    records = join.add(served("same", 0, "first", ids=["a1", "a2"]))
    records += join.add(event("same", 1, "a2", 2))
    records += join.add(served("same", 2, "second", ids=["b1", "b2"]))
    records += join.add(event("same", 3, "b1", 1))
    records += join.finish()
    assert [(r["query"], r["clicked"], r["skipped"]) for r in records] == [("first", ["a2"], ["a1"]),
                                                                           ("second", ["b1"], [])]


def test_drill_versions_are_left_out(tmp_path):
    repo = tmp_path / "models" / "minilm"
    (repo / "1").mkdir(parents=True)
    (repo / "1" / "model.yaml").write_text("description: base\n")
    (repo / "2").mkdir()
    (repo / "2" / "model.yaml").write_text("degrade: {embedding_noise: 2.0, seed: 2}\ndescription: drill\n")
    log = tmp_path / "requests.jsonl"
    log.write_text("\n".join([served("a", 0), served("b", 1, version="2"), served("c", 2, version="9"),
                              event("a", 3, "p1", 1), event("b", 4, "p1", 1), event("c", 5, "p1", 1)]) + "\n")
    out = tmp_path / "clicks.jsonl"
    code = click_log.main(["--request-log", str(log), "--out", str(out), "--no-progress",
                           "--model-repository", str(tmp_path / "models")])
    assert code == 0
    # version 9 is not in the repository: nothing says it was a drill, so it is kept
    assert [json.loads(line)["request_id"] for line in out.read_text().splitlines()] == ["a", "c"]


def test_unreadable_input_exits_2_with_the_path(tmp_path, capsys):
    assert click_log.main(["--request-log", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "missing.jsonl" in capsys.readouterr().err
    assert click_log.main(["--request-log", str(tmp_path), "--out", str(tmp_path / "o.jsonl")]) == 2
    assert "cannot read request log" in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()
    with pytest.raises(SystemExit) as exc:
        click_log.main(["--help"])
    assert exc.value.code == 0 and "skip" in capsys.readouterr().out


def _train_queries(catalog_queries: set[str], n: int) -> list[str]:
    found = [q for q in (f"click log query {i}" for i in range(100))
             if query_split(q) == "train" and q not in catalog_queries]
    return found[:n]


async def test_served_requests_and_feedback_become_training_examples(lifecycle_client, tmp_path):
    client = await lifecycle_client()
    config = client.app[CONFIG]
    bundle = load_catalog(config.catalog)
    search_query, rank_query = _train_queries({q.text.strip() for q in bundle.queries}, 2)
    resp = await client.post("/v1/search", json={"query": search_query, "k": 6, "user_id": "carol@example.com"},
                             headers={"X-Request-ID": "cl-search"})
    shown = [r["id"] for r in (await resp.json())["results"]]
    resp = await client.post("/v1/rank", json={"query": rank_query, "items": [{"id": p} for p in shown[:4]]},
                             headers={"X-Request-ID": "cl-rank"})
    ranked = [r["id"] for r in (await resp.json())["results"]]
    resp = await client.post("/v1/recommend", json={"history": [shown[0]], "k": 3},
                             headers={"X-Request-ID": "cl-rec"})
    recommended = [r["id"] for r in (await resp.json())["results"]]
    not_shown = next(p.id for p in client.state.catalog.products if p.id not in shown)

    def ev(eid: str, rid: str, product_id: str, kind: str = "click") -> dict:
        return {"request_id": rid, "event_id": eid, "type": kind, "product_id": product_id}

    events = [ev("e1", "cl-search", shown[3]), ev("e2", "cl-search", shown[3], "add_to_cart"),
              ev("e3", "cl-search", shown[1]), ev("e4", "cl-search", shown[1]),      # repeat click: rejected
              ev("e5", "cl-search", not_shown), ev("e1", "cl-search", shown[3]),     # not shown; duplicate
              ev("e6", "cl-rank", ranked[2]), ev("e7", "cl-rec", recommended[0])]
    resp = await client.post("/v1/feedback", json={"events": events}, headers=client.feedback_auth)
    body = await resp.json()
    assert resp.status == 200 and (body["accepted"], body["duplicates"], len(body["rejected"])) == (5, 1, 2)
    metrics = await (await client.get("/metrics")).text()
    assert "business_clicks_total" in metrics and search_query not in metrics and rank_query not in metrics
    await client.app.shutdown()
    await client.app.cleanup()      # flushes the request log's writer thread

    log = tmp_path / "requests.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    requests = {r["request_id"]: r for r in lines if r["record"] == "request"}
    assert requests["cl-search"]["query"] == search_query and requests["cl-search"]["result_ids"] == shown
    assert requests["cl-rank"]["query"] == rank_query and requests["cl-rec"]["query"] is None
    feedback = [(f["request_id"], f["event_id"], f["type"], f["product_id"], f["position"])
                for f in lines if f["record"] == "feedback"]
    assert feedback == [("cl-search", "e1", "click", shown[3], 4), ("cl-search", "e2", "add_to_cart", shown[3], 4),
                        ("cl-search", "e3", "click", shown[1], 2), ("cl-rank", "e6", "click", ranked[2], 3),
                        ("cl-rec", "e7", "click", recommended[0], 1)]
    assert "carol" not in log.read_text()

    out = tmp_path / "clicks.jsonl"
    assert click_log.main(["--request-log", str(log), "--out", str(out), "--no-progress",
                           "--model-repository", config.model_repository.root]) == 0
    clicks = _read_click_log(out)
    assert clicks == [(search_query, [shown[1], shown[3]], [shown[0], shown[2]]),
                      (rank_query, [ranked[2]], [ranked[0], ranked[1]])]
    table = build_examples(bundle, TrainingConfig(), clicks=clicks)
    text = {p.id: p.text() for p in bundle.catalog.products}
    assert table[search_query] == ([text[shown[1]], text[shown[3]]], [text[shown[0]], text[shown[2]]])
    assert table[rank_query] == ([text[ranked[2]]], [text[ranked[0]], text[ranked[1]]])
