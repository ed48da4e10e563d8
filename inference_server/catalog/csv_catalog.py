""""Bring your own catalog": products (and optional relevance judgments) from CSV files.

products.csv (UTF-8, header row required):
    id,title[,brand,category,price,description][,<any other column>]
  `id` and `title` are required and non-empty; ids are unique; `price` is a number >= 0 or empty.
  Any other column becomes a product attribute (e.g. colour, material, size) and is embedded with
  the title; `description` is kept but not embedded.

judgments.csv (UTF-8, optional):
    query,product_id,relevance
  one row per judged (query, product) pair; relevance is a number >= 0 (higher is better, e.g. 0-3);
  product ids must exist in products.csv. Unjudged pairs count as not relevant.

Every error names the file, the line and the column.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Optional

from inference_server.catalog.types import Catalog, CatalogBundle, CatalogError, JudgedQuery, Product

__all__ = ["JUDGMENT_COLUMNS", "PRODUCT_COLUMNS", "load_csv_catalog"]

PRODUCT_COLUMNS = ("id", "title", "brand", "category", "price", "description")
REQUIRED_PRODUCT_COLUMNS = ("id", "title")
JUDGMENT_COLUMNS = ("query", "product_id", "relevance")


def _read_rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Header and (line number, fields) of every non-blank row, decoding strictly as UTF-8."""
    if not path.is_file():
        raise CatalogError(f"{path}: file not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CatalogError(f"{path}: line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8") from exc
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
        if header is None:
            raise CatalogError(f"{path}: empty file; expected a header row")
        header = [name.strip().lower() for name in header]
        rows = []
        for fields in reader:
            if not fields or all(not f.strip() for f in fields):
                continue
            rows.append((reader.line_num, fields))
    except csv.Error as exc:
        raise CatalogError(f"{path}: line {reader.line_num}: malformed CSV: {exc}") from exc
    seen: set[str] = set()
    for position, name in enumerate(header, start=1):
        if not name:
            raise CatalogError(f"{path}: line 1: column {position} has an empty name")
        if name in seen:
            raise CatalogError(f"{path}: line 1: column {name!r} appears twice")
        seen.add(name)
    for line, fields in rows:
        if len(fields) != len(header):
            raise CatalogError(f"{path}: line {line}: expected {len(header)} fields ({','.join(header)}), got {len(fields)}")
    return header, rows


def _number(path: Path, line: int, column: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise CatalogError(f"{path}: line {line}, column {column}: expected a number, got {value!r}") from None
    if not math.isfinite(number) or number < 0:
        raise CatalogError(f"{path}: line {line}, column {column}: expected a finite number >= 0, got {value!r}")
    return number


def _load_products(path: Path) -> list[Product]:
    header, rows = _read_rows(path)
    missing = [c for c in REQUIRED_PRODUCT_COLUMNS if c not in header]
    if missing:
        raise CatalogError(
            f"{path}: line 1: missing required column(s) {', '.join(missing)}; "
            f"the header must contain id,title and may add {','.join(PRODUCT_COLUMNS[2:])} or attribute columns"
        )
    first_line: dict[str, int] = {}
    products = []
    for line, fields in rows:
        record = {name: value.strip() for name, value in zip(header, fields)}
        for column in REQUIRED_PRODUCT_COLUMNS:
            if not record[column]:
                raise CatalogError(f"{path}: line {line}, column {column}: must not be empty")
        product_id = record["id"]
        if product_id in first_line:
            raise CatalogError(f"{path}: line {line}, column id: duplicate id {product_id!r} (first on line {first_line[product_id]})")
        first_line[product_id] = line
        price = _number(path, line, "price", record["price"]) if record.get("price") else None
        attributes = {
            name: value for name, value in record.items()
            if name not in PRODUCT_COLUMNS[:5] and value
        }
        products.append(Product(
            id=product_id,
            title=record["title"],
            brand=record.get("brand") or None,
            category=record.get("category") or None,
            price=price,
            attributes=attributes,
        ))
    return products


def _load_judgments(path: Path, catalog: Catalog) -> list[JudgedQuery]:
    header, rows = _read_rows(path)
    if sorted(header) != sorted(JUDGMENT_COLUMNS):
        raise CatalogError(f"{path}: line 1: expected the columns {','.join(JUDGMENT_COLUMNS)}, got {','.join(header)}")
    judgments: dict[str, dict[str, float]] = {}
    first_line: dict[tuple[str, str], int] = {}
    for line, fields in rows:
        record = {name: value.strip() for name, value in zip(header, fields)}
        query, product_id = record["query"], record["product_id"]
        if not query:
            raise CatalogError(f"{path}: line {line}, column query: must not be empty")
        if product_id not in catalog:
            raise CatalogError(f"{path}: line {line}, column product_id: unknown product id {product_id!r}")
        key = (query, product_id)
        if key in first_line:
            raise CatalogError(f"{path}: line {line}: pair ({query!r}, {product_id!r}) already judged on line {first_line[key]}")
        first_line[key] = line
        judgments.setdefault(query, {})[product_id] = _number(path, line, "relevance", record["relevance"])
    return [
        JudgedQuery(query_id=f"csv-q{i + 1:05d}", text=query, judgments=judged)
        for i, (query, judged) in enumerate(judgments.items())
    ]


def load_csv_catalog(path: str | Path, judgments_path: Optional[str | Path] = None,
                     name: str = "custom") -> CatalogBundle:
    """Read products.csv (and judgments.csv when given) into a bundle named `name`."""
    products_path = Path(path).expanduser()
    products = _load_products(products_path)
    if not products:
        raise CatalogError(f"{products_path}: no products (only a header)")
    catalog = Catalog(name, products)
    queries = _load_judgments(Path(judgments_path).expanduser(), catalog) if judgments_path else []
    return CatalogBundle(catalog=catalog, queries=queries)
