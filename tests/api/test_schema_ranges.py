"""Range checks of request schemas name the bound that was broken, one-sided bounds included."""
import pytest

from inference_server.errors import ApiError
from inference_server.api.schema import Integer, Number


@pytest.mark.parametrize(
    "schema, value, message",
    [
        (Integer(minimum=1, maximum=100), 0, "k must be between 1 and 100, got 0"),
        (Integer(minimum=1), 0, "k must be >= 1, got 0"),
        (Number(maximum=10.0), 10.5, "k must be <= 10.0, got 10.5"),
    ],
)
def test_out_of_range_values_are_rejected_with_the_bound(schema, value, message):
    with pytest.raises(ApiError) as info:
        schema.validate(value, "k")
    assert str(info.value) == message
    assert info.value.status == 400


def test_values_inside_the_bounds_pass_and_the_bounds_reach_openapi():
    assert Integer(minimum=1).validate(1, "k") == 1
    assert Number(minimum=0.0, maximum=1.0).validate(1, "p") == 1.0
    assert Integer(maximum=5).openapi()["maximum"] == 5 and "minimum" not in Integer(maximum=5).openapi()
