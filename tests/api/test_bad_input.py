"""Bad input: every kind gets a 4xx JSON error naming the problem, counted by reason; never a 500."""
from __future__ import annotations

import pytest

from .conftest import sample_value

JSON = {"Content-Type": "application/json"}

# (case id, method, path, body bytes or JSON-able, headers, status, code, field)
CASES = [
    ("invalid_json", "POST", "/v1/search", b'{"query": "drill",', JSON, 400, "invalid_json", None),
    ("empty_body", "POST", "/v1/search", b"", JSON, 400, "invalid_json", None),
    ("nan_literal", "POST", "/v1/search", b'{"query": "a", "k": NaN}', JSON, 400, "invalid_json", None),
    ("deep_nesting", "POST", "/v1/search", b"[" * 100000 + b"]" * 100000, JSON, 400, "invalid_json", None),
    ("non_utf8", "POST", "/v1/search", b'{"query": "caf\xe9"}', JSON, 400, "invalid_encoding", None),
    ("not_object", "POST", "/v1/search", [1, 2], None, 400, "validation", None),
    ("missing_query", "POST", "/v1/search", {"k": 3}, None, 400, "validation", "query"),
    ("query_wrong_type", "POST", "/v1/search", {"query": 12}, None, 400, "validation", "query"),
    ("query_empty", "POST", "/v1/search", {"query": ""}, None, 400, "validation", "query"),
    ("query_whitespace", "POST", "/v1/search", {"query": " \t\n "}, None, 400, "validation", "query"),
    ("query_too_long", "POST", "/v1/search", {"query": "x" * 513}, None, 400, "validation", "query"),
    ("k_zero", "POST", "/v1/search", {"query": "a", "k": 0}, None, 400, "validation", "k"),
    ("k_too_big", "POST", "/v1/search", {"query": "a", "k": 101}, None, 400, "validation", "k"),
    ("k_string", "POST", "/v1/search", {"query": "a", "k": "5"}, None, 400, "validation", "k"),
    ("k_bool", "POST", "/v1/search", {"query": "a", "k": True}, None, 400, "validation", "k"),
    ("k_float", "POST", "/v1/search", {"query": "a", "k": 2.5}, None, 400, "validation", "k"),
    ("unknown_field", "POST", "/v1/search", {"query": "a", "kk": 1}, None, 400, "validation", "kk"),
    ("user_id_type", "POST", "/v1/search", {"query": "a", "user_id": 5}, None, 400, "validation", "user_id"),
    ("rank_missing_items", "POST", "/v1/rank", {"query": "a"}, None, 400, "validation", "items"),
    ("rank_items_empty", "POST", "/v1/rank", {"query": "a", "items": []}, None, 400, "validation", "items"),
    ("rank_too_many_items", "POST", "/v1/rank", {"query": "a", "items": [{"id": f"x{i}", "title": "t"} for i in range(201)]},
     None, 400, "validation", "items"),
    ("rank_item_not_object", "POST", "/v1/rank", {"query": "a", "items": ["SYN-000001"]}, None, 400, "validation", "items[0]"),
    ("rank_item_no_id", "POST", "/v1/rank", {"query": "a", "items": [{"title": "t"}]}, None, 400, "validation", "items[0].id"),
    ("rank_title_type", "POST", "/v1/rank", {"query": "a", "items": [{"id": "a", "title": 3}]}, None, 400, "validation",
     "items[0].title"),
    ("rank_duplicate_ids", "POST", "/v1/rank", {"query": "a", "items": [{"id": "a", "title": "t"}, {"id": "a", "title": "u"}]},
     None, 400, "validation", "items[1].id"),
    ("rank_unknown_product", "POST", "/v1/rank", {"query": "a", "items": [{"id": "a", "title": "t"}, {"id": "NOPE-1"}]},
     None, 422, "unknown_product", "items[1].id"),
    ("recommend_unknown_product", "POST", "/v1/recommend", {"history": ["NOPE-2"]}, None, 422, "unknown_product", "history[0]"),
    ("recommend_history_type", "POST", "/v1/recommend", {"history": "SYN-000001"}, None, 400, "validation", "history"),
    ("recommend_history_too_long", "POST", "/v1/recommend", {"history": [f"x{i}" for i in range(101)]}, None, 400,
     "validation", "history"),
    ("wrong_content_type", "POST", "/v1/search", b'{"query": "a"}', {"Content-Type": "text/plain"}, 415,
     "unsupported_media_type", None),
    ("wrong_charset", "POST", "/v1/search", b'{"query": "a"}', {"Content-Type": "application/json; charset=latin-1"}, 415,
     "unsupported_media_type", None),
    ("wrong_method", "GET", "/v1/search", None, None, 405, "method_not_allowed", None),
    ("wrong_method_put", "PUT", "/v1/models", None, None, 405, "method_not_allowed", None),
    ("unknown_path", "GET", "/v2/nothing", None, None, 404, "not_found", None),
    ("body_too_large", "POST", "/v1/search", b'{"query": "' + b"a" * 300_000 + b'"}', JSON, 413, "body_too_large", None),
]

ENDPOINT_OF = {"/v1/search": "search", "/v1/rank": "rank", "/v1/recommend": "recommend", "/v1/models": "models"}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
async def test_bad_input_gets_json_4xx_and_is_counted(make_client, case):
    name, method, path, body, headers, status, code, field = case
    client = await make_client()
    endpoint = ENDPOINT_OF.get(path, "other")
    before = sample_value(client.metrics.registry, "inference_rejected_requests_total",
                          {"endpoint": endpoint, "reason": code})
    kwargs = {}
    if isinstance(body, bytes):
        kwargs["data"] = body
    elif body is not None:
        kwargs["json"] = body
    resp = await client.request(method, path, headers=headers, **kwargs)
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    error = (await resp.json())["error"]
    assert error["code"] == code and error["message"]
    assert error.get("field") == field
    assert resp.headers["X-Request-ID"]
    if status == 405:
        assert resp.headers["Allow"]
    after = sample_value(client.metrics.registry, "inference_rejected_requests_total",
                         {"endpoint": endpoint, "reason": code})
    assert after == before + 1
    # The server keeps serving after every bad input.
    ok = await client.post("/v1/search", json={"query": "hammer", "k": 1})
    assert ok.status == 200


async def test_chunked_oversized_body_is_413_json(make_client):
    client = await make_client()

    async def chunks():
        for _ in range(40):
            yield b"x" * 10_000

    resp = await client.post("/v1/search", data=chunks(), headers=JSON)
    assert resp.status == 413
    assert (await resp.json())["error"]["code"] == "body_too_large"


async def test_no_bad_input_produces_a_500(make_client):
    client = await make_client()
    garbage = [b"null", b"0", b'"s"', b"true", b"{}", b'{"query": null}', b'{"query": ["a"]}',
               b'{"items": null, "query": "a"}', b'{"history": [null]}', b'{"history": [1, 2]}',
               b"\xff\xfe\x00", b'{"query": "\\ud800"}', b'{"query": "a", "k": 1e400}',
               b'{"query": "a", "k": -1}', b'{"query": "a", "k": 99999999999999999999999}']
    for path in ("/v1/search", "/v1/rank", "/v1/recommend"):
        for body in garbage:
            resp = await client.post(path, data=body, headers=JSON)
            assert 400 <= resp.status < 500, (path, body, resp.status, await resp.text())
            assert "error" in await resp.json()
    assert sample_value(client.metrics.registry, "inference_requests_total",
                        {"endpoint": "search", "model": "", "version": "", "status": "500"}) == 0
