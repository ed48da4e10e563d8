"""Response JSON (msgspec, json_codec.py): the same JSON `json.dumps` would give for what the handlers
return, numpy values included; never an encoder error, whatever the text."""
from __future__ import annotations

import json

import numpy as np
import pytest

from inference_server.api.responses import json_response
from inference_server.json_codec import encode_json


def test_numpy_values_are_written_as_the_numbers_they_hold():
    body = {"score": np.float32(0.5), "rank": np.int64(3), "rows": np.arange(3), "plain": [1.25, "a", None, True]}
    assert json.loads(encode_json(body)) == {"score": 0.5, "rank": 3, "rows": [0, 1, 2], "plain": [1.25, "a", None, True]}


def test_non_ascii_is_utf8_and_non_finite_floats_are_null():
    assert encode_json({"q": "café", "x": float("nan"), "y": float("inf")}) == '{"q":"café","x":null,"y":null}'.encode()


def test_a_lone_surrogate_is_escaped_instead_of_failing():
    # json.loads accepts "\ud800" escapes; echoing such a string back must not raise.
    text = json.loads('"drill \\ud800"')
    assert json.loads(encode_json({"query": text})) == {"query": text}


def test_types_json_has_no_form_for_are_refused():
    with pytest.raises(TypeError):
        encode_json({"x": object()})


def test_json_response_keeps_status_headers_and_content_type():
    response = json_response({"error": {"code": "queue_full"}}, status=429, headers={"Retry-After": "1"})
    assert response.status == 429 and response.headers["Retry-After"] == "1"
    assert response.headers["Content-Type"] == "application/json; charset=utf-8"
    assert json.loads(response.body) == {"error": {"code": "queue_full"}}
