"""The cascade click model: how a simulated shopper reacts to a ranked list.

The shopper examines results top-down. An examined result is clicked with a probability that grows
exponentially with its graded relevance (the NDCG gain curve, 2^g - 1); after a click the shopper may
add the product to the cart and buy it (again more likely for relevant products), and stops when
satisfied; otherwise they move on to the next result with probability `patience`. Position
bias therefore comes from examination, relevance from attractiveness, exactly as in the cascade /
dynamic Bayesian network models fitted to real click logs.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

from loadgen.config import ShopperConfig

GAIN_LEVELS = 3  # gain curve 2^(3r) - 1 over r in [0, 1]: a 0..3 graded scale


def attractiveness(relevance: float, cfg: ShopperConfig) -> float:
    """Click probability of an examined result with normalised relevance in [0, 1]."""
    gain = (2 ** (GAIN_LEVELS * relevance) - 1) / (2**GAIN_LEVELS - 1)
    return cfg.noise_click_probability + (cfg.max_click_probability - cfg.noise_click_probability) * gain


@dataclass(frozen=True)
class Interaction:
    """One feedback event the shopper produces."""

    type: str  # click | add_to_cart | purchase
    product_id: str
    position: int  # 1-based
    price: Optional[float] = None


def simulate_session(
    results: Sequence[str],
    relevance_of: Callable[[str], float],
    price_of: Callable[[str], float],
    cfg: ShopperConfig,
    rng: random.Random,
) -> list[Interaction]:
    """Walk the ranked product ids top-down and return the shopper's events in order."""
    events: list[Interaction] = []
    for index, product_id in enumerate(results):
        position = index + 1
        rel = relevance_of(product_id)
        if rng.random() < attractiveness(rel, cfg):
            events.append(Interaction("click", product_id, position))
            if rng.random() < cfg.add_to_cart_probability * rel:
                price = price_of(product_id)
                events.append(Interaction("add_to_cart", product_id, position, price))
                if rng.random() < cfg.purchase_probability * (0.5 + 0.5 * rel):
                    events.append(Interaction("purchase", product_id, position, price))
            if rng.random() < cfg.satisfaction_probability * rel:
                break
        if rng.random() >= cfg.patience:
            break
    return events
