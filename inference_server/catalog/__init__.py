"""Product catalogs (synthetic, Home Depot, bring-your-own CSV) and the vector index over them."""

from __future__ import annotations

from inference_server.catalog.csv_catalog import load_csv_catalog
from inference_server.catalog.homedepot import default_homedepot_dir, load_homedepot
from inference_server.catalog.index import VectorIndex
from inference_server.catalog.synthetic import generate_synthetic
from inference_server.catalog.types import Catalog, CatalogBundle, CatalogConfig, CatalogError, JudgedQuery, Product

__all__ = [
    "Catalog",
    "CatalogBundle",
    "CatalogConfig",
    "CatalogError",
    "JudgedQuery",
    "Product",
    "VectorIndex",
    "default_homedepot_dir",
    "generate_synthetic",
    "load_catalog",
    "load_csv_catalog",
    "load_homedepot",
]


def load_catalog(cfg: CatalogConfig) -> CatalogBundle:
    """Build the catalog bundle the configuration asks for (raises CatalogError with a clear message)."""
    if cfg.source == "synthetic":
        return generate_synthetic(cfg.seed, cfg.num_products, cfg.num_queries, name=cfg.name or "synthetic")
    if cfg.source == "homedepot":
        return load_homedepot(cfg.path, cfg.max_queries, name=cfg.name or "homedepot")
    if cfg.source == "csv":
        if not cfg.path:
            raise CatalogError("catalog.path is required when catalog.source is 'csv' (the products CSV file)")
        return load_csv_catalog(cfg.path, cfg.judgments_path, name=cfg.name or "custom")
    raise CatalogError(f"unknown catalog.source {cfg.source!r}; expected 'synthetic', 'homedepot' or 'csv'")
