"""Loader for the Home Depot product-search relevance data (Kaggle 2016): real titles, brands and
human relevance labels (mean of raters' 1-3 scores) for 74,067 (query, product) pairs.

Files, read in place from the data directory (never copied):
  train.csv             latin-1; id, product_uid, product_title, search_term, relevance
  brand_by_product.csv  product_uid, brand (covers most products; "Unbranded"-style values dropped)

Products are the distinct `product_uid`s in order of first appearance (the first title seen wins
for the few products listed with two titles); each distinct `search_term` becomes one
`JudgedQuery` whose judgments are its labelled products.
"""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Optional

import pandas as pd

from inference_server.catalog.types import Catalog, CatalogBundle, CatalogError, JudgedQuery, Product

__all__ = ["DEFAULT_DIR_ENV", "default_homedepot_dir", "load_homedepot"]

DEFAULT_DIR_ENV = "HOMEDEPOT_DIR"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_PAIRS_FILE = "train.csv"
_BRANDS_FILE = "brand_by_product.csv"
_PAIR_COLUMNS = ("product_uid", "product_title", "search_term", "relevance")
# Placeholder values of the "MFG Brand Name" attribute that name no brand.
_NO_BRAND = frozenset({"unbranded", "generic unbranded", "generic", "none", "other", "others", "n/a", "na"})


def _clean(text: str) -> str:
    """Titles and brands carry HTML entities from the site ("Briggs &amp; Stratton")."""
    return html.unescape(text).strip() if "&" in text else text.strip()


def default_homedepot_dir() -> Path:
    """$HOMEDEPOT_DIR if set, else <repo>/../shared/data/homedepot."""
    configured = os.environ.get(DEFAULT_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return _REPO_ROOT.parent / "shared" / "data" / "homedepot"


def _read_brands(path: Path) -> dict[str, str]:
    if not path.is_file():
        return {}
    for encoding in ("utf-8", "latin-1"):
        try:
            frame = pd.read_csv(path, encoding=encoding, dtype=str, keep_default_na=False)
            break
        except UnicodeDecodeError:
            continue
    missing = {"product_uid", "brand"} - set(frame.columns)
    if missing:
        raise CatalogError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    brands = {}
    for uid, brand in zip(frame["product_uid"], frame["brand"]):
        brand = _clean(brand)
        uid = uid.strip()
        if brand and brand.lower() not in _NO_BRAND and uid not in brands:
            brands[uid] = brand
    return brands


def load_homedepot(path: Optional[str | Path] = None, max_queries: Optional[int] = None,
                   name: str = "homedepot") -> CatalogBundle:
    """Load the catalog and judged queries; `max_queries` keeps the first N queries and only their products."""
    data_dir = Path(path).expanduser() if path else default_homedepot_dir()
    pairs_path = data_dir / _PAIRS_FILE
    if not pairs_path.is_file():
        raise CatalogError(
            f"Home Depot data not found: {pairs_path} does not exist. Point catalog.path (or "
            f"${DEFAULT_DIR_ENV}) at the directory holding train.csv and brand_by_product.csv "
            "from the Kaggle 'Home Depot Product Search Relevance' competition."
        )
    if max_queries is not None and max_queries < 1:
        raise CatalogError(f"max_queries must be >= 1, got {max_queries}")
    try:
        frame = pd.read_csv(pairs_path, encoding="latin-1", dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, ValueError) as exc:
        raise CatalogError(f"{pairs_path}: cannot parse CSV: {exc}") from exc
    missing = [c for c in _PAIR_COLUMNS if c not in frame.columns]
    if missing:
        raise CatalogError(f"{pairs_path}: missing column(s) {', '.join(missing)}")
    relevance = pd.to_numeric(frame["relevance"], errors="coerce")
    bad = relevance.isna() | (relevance < 0)
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise CatalogError(
            f"{pairs_path}: row {row + 2}, column relevance: expected a number >= 0, got {frame['relevance'].iloc[row]!r}"
        )

    uids = frame["product_uid"].str.strip().tolist()
    titles = frame["product_title"].tolist()
    terms = frame["search_term"].tolist()
    labels = relevance.tolist()

    judgments: dict[str, dict[str, float]] = {}  # search term -> {product uid: label}
    for uid, term, label in zip(uids, terms, labels):
        if term not in judgments:
            if max_queries is not None and len(judgments) >= max_queries:
                continue
            judgments[term] = {}
        judgments[term][uid] = float(label)

    wanted = None
    if max_queries is not None:
        wanted = {uid for judged in judgments.values() for uid in judged}
    brands = _read_brands(data_dir / _BRANDS_FILE)
    products: dict[str, Product] = {}
    for uid, title in zip(uids, titles):
        if uid in products or (wanted is not None and uid not in wanted):
            continue
        products[uid] = Product(id=uid, title=_clean(title), brand=brands.get(uid))

    queries = [
        JudgedQuery(query_id=f"hd-q{i + 1:05d}", text=term, judgments=judged)
        for i, (term, judged) in enumerate(judgments.items())
    ]
    return CatalogBundle(catalog=Catalog(name, list(products.values())), queries=queries)
