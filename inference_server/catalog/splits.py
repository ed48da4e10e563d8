"""The fixed query split of judged data: TRAIN for fine-tuning, DEV for choosing settings, TEST for reporting.

key = query.strip().lower(); bucket = int(md5(key), 16) % 10: 0 -> test, 1 -> dev, else train. The split
depends on the query text alone, so every tool (training, fusion-weight search, evaluation) agrees on it
and no TEST or DEV query is ever trained on.
"""
from __future__ import annotations

import hashlib
from typing import Iterable, Literal, TypeVar

__all__ = ["SPLITS", "Split", "query_split", "select_split"]

Split = Literal["train", "dev", "test"]
SPLITS: tuple[Split, ...] = ("train", "dev", "test")
T = TypeVar("T")


def query_split(query: str) -> Split:
    """Which split a query belongs to (see the module docstring)."""
    bucket = int(hashlib.md5(query.strip().lower().encode("utf-8")).hexdigest(), 16) % 10
    if bucket == 0:
        return "test"
    if bucket == 1:
        return "dev"
    return "train"


def select_split(queries: Iterable[T], split: Split) -> list[T]:
    """The judged queries (objects with a `.text`) that belong to `split`, in their order."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return [q for q in queries if query_split(q.text) == split]
