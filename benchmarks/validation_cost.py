"""Validation cost per request body: pydantic v2 (what the server uses), msgspec, and the old hand-written validator.

Times validating already-decoded JSON (the server parses the body with `json.loads` first, the same
for every validator) for typical bodies: search, rank with 50 items, recommend, one feedback event.
Prints microseconds per body (best of several timing runs: the least disturbed by other load). Not a test.

Run on the current tree (pydantic + msgspec):

    PYTHONPATH=$PWD python benchmarks/validation_cost.py

The hand-written validator of commit bbe159e (`api/schema.py` + `api/validation.py`, the feedback
store's own checks) is measured when that code is importable, e.g. from a temporary worktree:

    git worktree add /tmp/wt-before bbe159e
    PYTHONPATH=/tmp/wt-before python benchmarks/validation_cost.py
    git worktree remove /tmp/wt-before
"""

import argparse
import json
import timeit
from typing import Annotated, Any, Callable, Literal, Optional

BODIES: dict[str, Any] = {
    "search": {"query": "cordless drill 18v", "k": 10, "user_id": "shopper-42"},
    "rank (50 items)": {
        "query": "stainless steel kitchen sink",
        "items": [{"id": f"SYN-{i:06d}", "title": f"Stainless steel sink model {i}, 33 in. double bowl"}
                  for i in range(50)],
        "k": 10,
        "user_id": "shopper-42",
    },
    "recommend": {"history": ["SYN-000001", "SYN-000017", "SYN-000233"], "k": 10, "user_id": "shopper-42"},
    "feedback event": {"request_id": "9f1c2a7b4d3e4f5a8b6c7d8e9f0a1b2c", "event_id": "ev-0001", "type": "click",
                       "product_id": "SYN-000017", "position": 3},
}


def hand_written() -> Optional[dict[str, Callable[[Any], Any]]]:
    """The validators of commit bbe159e, or None when this tree no longer has them."""
    try:
        from inference_server.api.validation import request_schemas
        from inference_server.config import LimitsConfig
        from inference_server.lifecycle.feedback import FeedbackStore
    except ImportError:
        return None
    schemas = request_schemas(LimitsConfig())
    return {"search": schemas.search.validate, "rank (50 items)": schemas.rank.validate,
            "recommend": schemas.recommend.validate, "feedback event": FeedbackStore._validate}


def pydantic_v2() -> Optional[dict[str, Callable[[Any], Any]]]:
    """The server's pydantic models, validated and dumped to the dict the handlers read (as `validate_body`)."""
    try:
        from inference_server.api.schemas import FeedbackEvent, request_models, validate_body
        from inference_server.config import LimitsConfig
    except ImportError:
        return None
    models = request_models(LimitsConfig())
    return {"search": lambda d: validate_body(models.search, d),
            "rank (50 items)": lambda d: validate_body(models.rank, d),
            "recommend": lambda d: validate_body(models.recommend, d),
            "feedback event": lambda d: validate_body(FeedbackEvent, d)}


def msgspec_structs() -> Optional[dict[str, Callable[[Any], Any]]]:
    """The same bodies and constraints as msgspec Structs (strict conversion from the decoded dict)."""
    try:
        import msgspec
    except ImportError:
        return None
    Meta = msgspec.Meta
    Query = Annotated[str, Meta(min_length=1, max_length=512, pattern=r"\S")]
    ProductId = Annotated[str, Meta(min_length=1, max_length=128)]
    UserId = Annotated[str, Meta(min_length=1, max_length=256)]
    K = Annotated[int, Meta(ge=1, le=100)]
    FeedbackId = Annotated[str, Meta(pattern=r"^[A-Za-z0-9._:-]{1,128}$")]

    def unique(values: list, key: Optional[str] = None) -> None:
        seen: set = set()
        for value in values:
            item = getattr(value, key) if key else value
            if item in seen:
                raise ValueError(f"duplicate value {item!r}")
            seen.add(item)

    class RankItem(msgspec.Struct, forbid_unknown_fields=True):
        id: ProductId
        title: Optional[Annotated[str, Meta(min_length=1, max_length=1000, pattern=r"\S")]] = None

    class SearchRequest(msgspec.Struct, forbid_unknown_fields=True):
        query: Query
        k: K = 10
        user_id: Optional[UserId] = None

        def __post_init__(self) -> None:
            self.query = self.query.strip()

    class RankRequest(msgspec.Struct, forbid_unknown_fields=True):
        query: Query
        items: Annotated[list[RankItem], Meta(min_length=1, max_length=200)]
        k: Optional[Annotated[int, Meta(ge=1, le=200)]] = None
        user_id: Optional[UserId] = None

        def __post_init__(self) -> None:
            self.query = self.query.strip()
            unique(self.items, "id")

    class RecommendRequest(msgspec.Struct, forbid_unknown_fields=True):
        history: Annotated[list[ProductId], Meta(min_length=1, max_length=100)]
        k: K = 10
        user_id: Optional[UserId] = None

        def __post_init__(self) -> None:
            unique(self.history)

    class FeedbackEvent(msgspec.Struct, forbid_unknown_fields=True):
        request_id: FeedbackId
        event_id: FeedbackId
        type: Literal["click", "add_to_cart", "purchase"]
        product_id: Annotated[str, Meta(min_length=1, max_length=256)]
        position: Optional[Annotated[int, Meta(ge=1)]] = None
        price: Optional[Annotated[float, Meta(ge=0)]] = None
        currency: Optional[Annotated[str, Meta(pattern=r"^[A-Z]{3}$")]] = None

    def convert(struct: type) -> Callable[[Any], Any]:
        return lambda d: msgspec.convert(d, type=struct, strict=True)

    return {"search": convert(SearchRequest), "rank (50 items)": convert(RankRequest),
            "recommend": convert(RecommendRequest), "feedback event": convert(FeedbackEvent)}


def per_call_us(fn: Callable[[Any], Any], body: Any, number: int, repeat: int) -> float:
    """The fastest of `repeat` runs, as the mean time of one call in microseconds."""
    fn(body)  # fail fast on a body the validator refuses; also warms caches
    runs = timeit.repeat(lambda: fn(body), number=number, repeat=repeat)
    return min(runs) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--number", type=int, default=2000, help="calls per timing run")
    parser.add_argument("--repeat", type=int, default=7, help="timing runs (the fastest is reported)")
    args = parser.parse_args()
    validators = {"hand-written (bbe159e)": hand_written(), "pydantic v2": pydantic_v2(), "msgspec": msgspec_structs()}
    available = {name: v for name, v in validators.items() if v is not None}
    print("validation cost per request body, microseconds (best of "
          f"{args.repeat} runs x {args.number} calls; body already decoded)")
    print(f"{'body':<18}" + "".join(f"{name:>24}" for name in available) + f"{'json.loads (context)':>24}")
    for body_name, body in BODIES.items():
        raw = json.dumps(body)
        cells = [per_call_us(v[body_name], body, args.number, args.repeat) for v in available.values()]
        decode = per_call_us(json.loads, raw, args.number, args.repeat)
        print(f"{body_name:<18}" + "".join(f"{c:>24.1f}" for c in cells) + f"{decode:>24.1f}")
    missing = [name for name, v in validators.items() if v is None]
    if missing:
        print(f"not importable here: {', '.join(missing)}")


if __name__ == "__main__":
    main()
