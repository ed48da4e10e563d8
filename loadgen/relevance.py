"""True relevance for simulated shoppers, from the same catalog (and judged queries) the server loads.

The server never sees these judgments at serving time; the simulator uses them to decide what a
shopper clicks, so a model that ranks relevant products higher earns a higher CTR for real.
"""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

from typed_config import load_yaml_mapping, parse_section

from loadgen.config import ConfigError, RelevanceConfig


@dataclass(frozen=True)
class Intent:
    """What a shopper is looking for: a judged query and its graded relevance per product."""

    query_id: str
    text: str
    judgments: Mapping[str, float]
    relevant: tuple[str, ...]  # product ids above the "not relevant" grade, most relevant first


class RelevanceOracle:
    """Maps (intent, product id) to a relevance in [0, 1] and picks intents for shoppers."""

    def __init__(self, catalog: Any, queries: Sequence[Any], min_grade: float, max_grade: float,
                 default_price: float = 25.0) -> None:
        if max_grade <= min_grade:
            raise ConfigError("relevance", f"max_grade ({max_grade}) must exceed min_grade ({min_grade})")
        self.catalog = catalog
        self.catalog_name: str = getattr(catalog, "name", "catalog")
        self.min_grade = float(min_grade)
        self.max_grade = float(max_grade)
        self.default_price = default_price
        self.product_ids: list[str] = [p.id for p in catalog.products]
        intents = []
        for q in queries:
            judged = {str(pid): float(g) for pid, g in q.judgments.items() if catalog.get(str(pid)) is not None}
            relevant = tuple(sorted((pid for pid, g in judged.items() if g > self.min_grade),
                                    key=lambda pid: (-judged[pid], pid)))
            if relevant:
                intents.append(Intent(str(q.query_id), str(q.text), judged, relevant))
        if not intents:
            raise ConfigError("relevance", f"catalog {self.catalog_name!r} has no judged query with a relevant product")
        self.intents = intents
        self.intents_by_length = sorted(intents, key=lambda i: (-len(i.text.split()), i.query_id))

    def relevance(self, intent: Intent, product_id: str) -> float:
        """Normalised relevance in [0, 1]; unjudged products count as not relevant (IR convention)."""
        grade = intent.judgments.get(product_id)
        if grade is None:
            return 0.0
        return min(1.0, max(0.0, (grade - self.min_grade) / (self.max_grade - self.min_grade)))

    def pick_intent(self, rng: random.Random, longest_share: Optional[float] = None) -> Intent:
        """A uniformly drawn intent; with `longest_share`, one of that share of the longest queries (by words)."""
        if longest_share is None:
            return rng.choice(self.intents)
        return rng.choice(self.intents_by_length[:max(1, round(longest_share * len(self.intents_by_length)))])

    def price(self, product_id: str) -> float:
        """The product's catalog price, else a stable pseudo-price so revenue stays deterministic."""
        product = self.catalog.get(product_id)
        price = getattr(product, "price", None) if product is not None else None
        if price is not None and price > 0:
            return float(price)
        h = int.from_bytes(hashlib.sha256(product_id.encode()).digest()[:4], "big") / 2**32
        return round(self.default_price * (0.2 + 1.8 * h), 2)

    def random_products(self, rng: random.Random, n: int, exclude: set[str]) -> list[str]:
        out: list[str] = []
        tries = 0
        while len(out) < n and tries < n * 20:
            pid = rng.choice(self.product_ids)
            tries += 1
            if pid not in exclude and pid not in out:
                out.append(pid)
        return out


def catalog_settings(cfg: RelevanceConfig, repo_root: Path,
                     environ: Optional[Mapping[str, str]] = None) -> dict[str, Any]:
    """The catalog section to load: inline in the loadgen config, else the server config's `catalog`
    with the server's env overrides (`INFERENCE_SERVER__CATALOG__...`) applied, as the server would."""
    if cfg.catalog is not None:
        return dict(cfg.catalog)
    raw: dict[str, Any] = {}
    if cfg.server_config is not None:
        path = Path(cfg.server_config)
        if not path.is_absolute() and not path.exists():
            path = repo_root / path
        try:
            raw = load_yaml_mapping(path)
        except ConfigError as exc:
            raise ConfigError("relevance.server_config", exc.message) from exc
    from inference_server.config import apply_env_overrides

    try:
        apply_env_overrides(raw, environ)
    except ConfigError as exc:
        raise ConfigError(exc.key, f"server env override: {exc.message}") from exc
    section = raw.get("catalog")
    if section is not None and not isinstance(section, dict):
        raise ConfigError("relevance.server_config", f"{cfg.server_config}: `catalog` must be a mapping")
    return dict(section or {})


def load_oracle(cfg: RelevanceConfig, default_price: float = 25.0, repo_root: Optional[Path] = None,
                overrides: Optional[Mapping[str, Any]] = None) -> RelevanceOracle:
    """Load the catalog and its judged queries exactly as the server would, and wrap them."""
    from inference_server.catalog import CatalogConfig, CatalogError, load_catalog

    repo_root = repo_root or Path.cwd()
    settings = catalog_settings(cfg, repo_root)
    settings.update(overrides or {})
    catalog_cfg = parse_section(CatalogConfig, settings, "catalog")
    try:
        bundle = load_catalog(catalog_cfg)
    except CatalogError as exc:
        raise ConfigError("relevance", f"cannot load catalog {catalog_cfg.source!r}: {exc}") from exc
    grades = [g for q in bundle.queries for g in q.judgments.values()]
    if not grades:
        raise ConfigError("relevance", f"catalog {catalog_cfg.source!r} comes without judged queries")
    min_grade = cfg.min_grade
    if min_grade is None:
        # Home Depot's raters use 1 = irrelevant, 3 = perfect; synthetic grades start at 0.
        min_grade = 1.0 if catalog_cfg.source == "homedepot" else min(0.0, min(grades))
    max_grade = cfg.max_grade if cfg.max_grade is not None else max(grades)
    return RelevanceOracle(bundle.catalog, bundle.queries, min_grade, max_grade, default_price)
