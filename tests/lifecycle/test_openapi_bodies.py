"""/openapi.json documents every request body with the very pydantic model its handler validates with."""
from __future__ import annotations

import json

from inference_server.api.context import ROUTE_SPECS
from inference_server.api.openapi import body_schema
from inference_server.api.schemas import FEEDBACK_ID_PATTERN, FEEDBACK_PRODUCT_ID_MAX_CHARS

BODY_ROUTES = {
    ("POST", "/v1/search"), ("POST", "/v1/rank"), ("POST", "/v1/recommend"), ("POST", "/v1/feedback"),
    ("PUT", "/v1/admin/models/{name}/traffic"), ("POST", "/v1/admin/models/{name}/promote"),
    ("POST", "/v1/admin/faults"), ("POST", "/v1/alerts"), ("POST", "/v1/admin/catalog/changes"),
}


def _json(value):
    return json.loads(json.dumps(value))


async def test_every_request_body_is_documented_by_its_validating_model(lifecycle_client):
    client = await lifecycle_client()
    doc = await (await client.get("/openapi.json")).json()
    components = doc["components"]["schemas"]
    specs = [spec for spec in client.app[ROUTE_SPECS] if spec.request_schema is not None]
    assert {(spec.method, spec.path) for spec in specs} == BODY_ROUTES
    for spec in specs:
        schema = body_schema(spec.request_schema)
        nested = schema.pop("$defs", {})
        ref = doc["paths"][spec.path][spec.method.lower()]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert components[ref.rsplit("/", 1)[1]] == _json(schema), spec.path
        for name, nested_schema in nested.items():
            assert components[name] == _json(nested_schema), (spec.path, name)
    event = components["FeedbackEvent"]["properties"]
    assert event["request_id"]["pattern"] == event["event_id"]["pattern"] == FEEDBACK_ID_PATTERN
    assert event["product_id"]["maxLength"] == FEEDBACK_PRODUCT_ID_MAX_CHARS
    assert components["FeedbackEvent"]["additionalProperties"] is False


async def test_bodies_violating_documented_constraints_are_refused(lifecycle_client):
    client = await lifecycle_client()
    doc = await (await client.get("/openapi.json")).json()
    event = doc["components"]["schemas"]["FeedbackEvent"]["properties"]
    served = await client.post("/v1/search", json={"query": "drill", "k": 3}, headers={"X-Request-ID": "req-doc"})
    product = (await served.json())["results"][0]["id"]
    good = {"request_id": "req-doc", "event_id": "ev-doc-1", "type": "click", "product_id": product}
    assert (await client.post("/v1/feedback", json=good, headers=client.feedback_auth)).status == 200
    too_long = "p" * (event["product_id"]["maxLength"] + 1)
    for bad, field in [({"request_id": "req doc"}, "request_id"),     # outside the documented pattern
                       ({"event_id": "ev/2"}, "event_id"),
                       ({"product_id": too_long}, "product_id"),       # over the documented maxLength
                       ({"type": "view"}, "type"),
                       ({"position": 0}, "position"),
                       ({"price": 3.5}, "price")]:                     # price only on purchase events
        resp = await client.post("/v1/feedback", json={**good, "event_id": "ev-doc-x", **bad}, headers=client.feedback_auth)
        assert resp.status == 400, (bad, await resp.text())
        error = (await resp.json())["error"]
        assert (error["code"], error["field"]) == ("validation", field), bad
    batch = await client.post("/v1/feedback", json={"events": [good, {**good, "event_id": "ev-doc-3",
                                                                         "product_id": too_long}]},
                              headers=client.feedback_auth)
    assert batch.status == 200
    answer = await batch.json()
    assert answer["duplicates"] == 1 and [r["field"] for r in answer["rejected"]] == ["product_id"]
    traffic = doc["components"]["schemas"]["TrafficRequest"]
    assert list(traffic["properties"]["weights"]["patternProperties"]) == ["^[1-9][0-9]*$"]
    resp = await client.put("/v1/admin/models/minilm/traffic", json={"weights": {"v1": 1}}, headers=client.auth)
    assert resp.status == 400 and (await resp.json())["error"]["field"] == "weights.v1"
