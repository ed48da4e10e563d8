"""Range checks of request bodies name the field and the bound that was broken, one-sided bounds included."""
import pytest

from inference_server.api.schemas import FaultRequest, FeedbackEvent, request_models, validate_body
from inference_server.config import LimitsConfig
from inference_server.errors import ApiError

SEARCH = request_models(LimitsConfig()).search


@pytest.mark.parametrize(
    "model, body, field, fragment",
    [
        (SEARCH, {"query": "a", "k": 0}, "k", "greater than or equal to 1, got 0"),
        (SEARCH, {"query": "a", "k": 101}, "k", "less than or equal to 100, got 101"),
        (FaultRequest, {"duration_s": 1, "error_rate": 1.5}, "error_rate", "less than or equal to 1, got 1.5"),
        (FaultRequest, {"duration_s": 0}, "duration_s", "greater than or equal to 0.001, got 0"),
        (FeedbackEvent, {"request_id": "r", "event_id": "e", "type": "click", "product_id": "p", "position": 0},
         "position", "greater than or equal to 1, got 0"),
    ],
)
def test_out_of_range_values_are_rejected_with_the_bound(model, body, field, fragment):
    with pytest.raises(ApiError) as info:
        validate_body(model, body)
    assert info.value.status == 400 and info.value.field == field
    assert str(info.value) == f"{field}: Input should be {fragment}"


def test_values_inside_the_bounds_pass_and_the_bounds_reach_the_schema():
    assert validate_body(SEARCH, {"query": " a ", "k": 1}) == {"query": "a", "k": 1}
    assert validate_body(FaultRequest, {"duration_s": 1, "error_rate": 1})["error_rate"] == 1.0
    k = SEARCH.model_json_schema()["properties"]["k"]
    assert (k["minimum"], k["maximum"]) == (1, 100)
    assert request_models(LimitsConfig(max_k=5)).search.model_json_schema()["properties"]["k"]["maximum"] == 5


def test_null_for_an_optional_field_means_absent():
    assert validate_body(SEARCH, {"query": "a", "k": None, "user_id": None}) == {"query": "a", "k": 10}
    with pytest.raises(ApiError) as info:
        validate_body(SEARCH, {"query": None})
    assert info.value.field == "query"
