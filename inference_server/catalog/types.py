"""Catalog data types: products, the catalog, judged queries, and the catalog configuration."""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from typing import Iterator, Literal, Mapping, Optional, Sequence

from pydantic import Field, model_validator

from typed_config import Section, invalid

__all__ = ["Catalog", "CatalogBundle", "CatalogConfig", "CatalogError", "IndexConfig", "JudgedQuery", "Product"]

# Attributes that are free text, not short facets: kept on the product, never embedded.
_NOT_EMBEDDED = frozenset({"description"})


class CatalogError(ValueError):
    """A catalog source is missing or malformed; the message names the file, row and column."""


@dataclass(frozen=True)
class Product:
    """One sellable item. `attributes` holds short facets (colour, material, size, ...)."""

    id: str
    title: str
    brand: Optional[str] = None
    category: Optional[str] = None
    price: Optional[float] = None
    attributes: Mapping[str, str] = field(default_factory=dict)

    def text(self) -> str:
        """The text that gets embedded: the title, the brand when the title omits it, then the
        facet values the title does not already mention (so nothing is said twice)."""
        text = self.title.strip()
        lowered = text.lower()
        if self.brand and self.brand.strip() and self.brand.strip().lower() not in lowered:
            text = f"{self.brand.strip()} {text}"
            lowered = text.lower()
        extras: list[str] = []
        for key, value in self.attributes.items():
            value = str(value).strip()
            if key in _NOT_EMBEDDED or not value or value.lower() in lowered:
                continue
            extras.append(value)
            lowered += " " + value.lower()
        return f"{text}, {', '.join(extras)}" if extras else text


class Catalog:
    """An ordered, id-addressable list of products with a content fingerprint."""

    def __init__(self, name: str, products: Sequence[Product]) -> None:
        self.name = name
        self.products: list[Product] = list(products)
        self._by_id: dict[str, Product] = {}
        for product in self.products:
            if product.id in self._by_id:
                raise CatalogError(f"catalog {name!r}: duplicate product id {product.id!r}")
            self._by_id[product.id] = product
        self._fingerprint: Optional[str] = None

    def get(self, product_id: str) -> Optional[Product]:
        return self._by_id.get(product_id)

    def __contains__(self, product_id: object) -> bool:
        return product_id in self._by_id

    def __len__(self) -> int:
        return len(self.products)

    def __iter__(self) -> Iterator[Product]:
        return iter(self.products)

    def ids(self) -> list[str]:
        return [p.id for p in self.products]

    def fingerprint(self) -> str:
        """sha256 over (id, embedded text) of every product in order: what the embeddings depend on."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for product in self.products:
                for part in (product.id, product.text()):
                    encoded = part.encode("utf-8")
                    digest.update(len(encoded).to_bytes(8, "little"))
                    digest.update(encoded)
            self._fingerprint = digest.hexdigest()
        return self._fingerprint

    def __repr__(self) -> str:
        return f"Catalog(name={self.name!r}, products={len(self.products)})"


@dataclass(frozen=True)
class JudgedQuery:
    """A query with graded relevance for some products (unjudged products count as 0)."""

    query_id: str
    text: str
    judgments: Mapping[str, float]

    def __post_init__(self) -> None:
        for product_id, grade in self.judgments.items():
            if not isinstance(grade, (int, float)) or not math.isfinite(grade) or grade < 0:
                raise CatalogError(f"query {self.query_id!r}: relevance of {product_id!r} must be a finite number >= 0, got {grade!r}")


@dataclass
class CatalogBundle:
    """A catalog plus its judged queries (synthetic: relevance by construction; Home Depot: human labels)."""

    catalog: Catalog
    queries: list[JudgedQuery]


class CatalogConfig(Section):
    """Where the catalog comes from (the `catalog:` section of the server config)."""

    source: Literal["synthetic", "homedepot", "csv"] = "synthetic"
    name: Optional[str] = None
    seed: int = 7  # synthetic
    num_products: int = 5000  # synthetic
    num_queries: int = 500  # synthetic
    # homedepot: data dir (default $HOMEDEPOT_DIR or <repo>/../shared/data/homedepot); csv: products file
    path: Optional[str] = None
    judgments_path: Optional[str] = None  # csv: optional judgments file
    max_queries: Optional[int] = None  # homedepot: keep the first N queries and only their products
    cache_dir: str = "var/cache/embeddings"
    watch: bool = False  # csv: re-read the products file when it changes and apply the difference
    watch_interval_s: float = Field(2.0, gt=0, le=3600)  # csv: how often the file is checked


class IndexConfig(Section):
    """`index:` section: how catalog searches run. `exact` scans every vector (the reference);
    `ivf` and `hnsw` search a faiss index over quantised copies and re-score its candidates exactly."""

    kind: Literal["exact", "ivf", "hnsw"] = "exact"
    # ivf/hnsw stored codes: sq8 int8, pq (pq_m bytes), pq4fs (pq_m 4-bit codes, SIMD fast scan), fp16, flat
    quantization: Literal["sq8", "pq", "pq4fs", "fp16", "flat"] = "sq8"
    nlist: Optional[int] = Field(None, ge=1, le=1 << 20)  # ivf: inverted lists; null = 4*sqrt(products)
    nprobe: int = Field(32, ge=1, le=1 << 16)             # ivf: lists searched per query
    pq_m: int = Field(48, ge=1, le=384)                   # ivf+pq: sub-quantisers (bytes per product); divides dim
    hnsw_m: int = Field(16, ge=4, le=64)                  # hnsw: graph degree; memory ~ 8*M bytes/product
    ef_construction: int = Field(128, ge=8, le=1024)      # hnsw: candidate list while building
    ef_search: int = Field(64, ge=8, le=1024)             # hnsw: candidate list while searching
    candidates: int = Field(40, ge=1, le=1000)            # ivf/hnsw: rows fetched per query, re-scored exactly
    threads: int = Field(0, ge=0, le=64)                  # ivf/hnsw: OpenMP threads, 0 = faiss's default

    @model_validator(mode="after")
    def _pq_needs_ivf(self) -> "IndexConfig":
        if self.quantization in ("pq", "pq4fs") and self.kind == "hnsw":
            raise invalid("quantization", f"{self.quantization} is available with kind ivf only (hnsw: sq8, fp16 or flat)")
        return self
