"""Bring-your-own catalog CSVs: the happy path and errors that name the line and column."""

from __future__ import annotations

import pytest

from inference_server.catalog import CatalogConfig, CatalogError, load_catalog, load_csv_catalog

PRODUCTS = (
    "id,title,brand,category,price,description,colour\n"
    "p1,Oak Dining Table,Hearthwood,Furniture,499.00,Seats six,natural\n"
    "p2,Velvet Sofa,,Furniture,,\"Deep seats, soft\",emerald green\n"
    "\n"
    "p3,LED Bulb 4-Pack,Lumora,,9.5,,\n"
)


def _write(path, text, encoding="utf-8"):
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_products_and_judgments(tmp_path):
    products = _write(tmp_path / "products.csv", PRODUCTS)
    judgments = _write(tmp_path / "judgments.csv", "query,product_id,relevance\nsofa,p2,3\nsofa,p1,0\ntable,p1,2.5\n")
    bundle = load_catalog(CatalogConfig(source="csv", path=str(products), judgments_path=str(judgments), name="shop"))
    catalog = bundle.catalog
    assert catalog.name == "shop" and catalog.ids() == ["p1", "p2", "p3"]
    table, sofa, bulb = catalog.products
    assert table.brand == "Hearthwood" and table.price == 499.0 and table.category == "Furniture"
    assert sofa.brand is None and sofa.price is None
    assert dict(sofa.attributes) == {"description": "Deep seats, soft", "colour": "emerald green"}
    assert sofa.text() == "Velvet Sofa, emerald green"  # attributes embedded, description not
    assert table.text() == "Hearthwood Oak Dining Table, natural"
    assert bulb.text() == "Lumora LED Bulb 4-Pack"
    assert [(q.text, dict(q.judgments)) for q in bundle.queries] == [
        ("sofa", {"p2": 3.0, "p1": 0.0}), ("table", {"p1": 2.5})]


def test_utf8_bom_is_accepted(tmp_path):
    bundle = load_csv_catalog(_write(tmp_path / "p.csv", "\ufeffid,title\nx,Caf\u00e9 Chair\n"))
    assert bundle.catalog.get("x").title == "Caf\u00e9 Chair"


@pytest.mark.parametrize(
    "content, message",
    [
        ("id,brand\np1,Acme\n", r"line 1: missing required column\(s\) title"),
        ("id,title\np1,Lamp\np2,\n", r"line 3, column title: must not be empty"),
        ("id,title\np1,Lamp\np1,Other lamp\n", r"line 3, column id: duplicate id 'p1' \(first on line 2\)"),
        ("id,title,price\np1,Lamp,cheap\n", r"line 2, column price: expected a number, got 'cheap'"),
        ("id,title,price\np1,Lamp,-3\n", r"line 2, column price: expected a finite number >= 0"),
        ("id,title\np1,Lamp,extra\n", r"line 2: expected 2 fields"),
        ("id,title,title\np1,a,b\n", r"column 'title' appears twice"),
        ("id,title\n", r"no products"),
        ("", r"empty file"),
    ],
)
def test_product_errors(tmp_path, content, message):
    with pytest.raises(CatalogError, match=message):
        load_csv_catalog(_write(tmp_path / "products.csv", content))


def test_non_utf8_names_the_line(tmp_path):
    path = _write(tmp_path / "products.csv", b"id,title\np1,Lamp\np2,Caf\xe9 Table\n")
    with pytest.raises(CatalogError, match=r"line 3: not valid UTF-8"):
        load_csv_catalog(path)


@pytest.mark.parametrize(
    "content, message",
    [
        ("query,product_id,relevance\nsofa,p9,3\n", r"line 2, column product_id: unknown product id 'p9'"),
        ("query,product_id,relevance\nsofa,p1,good\n", r"line 2, column relevance: expected a number"),
        ("query,product_id,relevance\n,p1,1\n", r"line 2, column query: must not be empty"),
        ("query,product_id,relevance\nsofa,p1,1\nsofa,p1,2\n", r"line 3: pair .* already judged on line 2"),
        ("query,product,relevance\nsofa,p1,1\n", r"expected the columns query,product_id,relevance"),
    ],
)
def test_judgment_errors(tmp_path, content, message):
    products = _write(tmp_path / "products.csv", PRODUCTS)
    judgments = _write(tmp_path / "judgments.csv", content)
    with pytest.raises(CatalogError, match=message):
        load_csv_catalog(products, judgments)


def test_csv_source_needs_a_path(tmp_path):
    with pytest.raises(CatalogError, match="catalog.path"):
        load_catalog(CatalogConfig(source="csv"))
    with pytest.raises(CatalogError, match="file not found"):
        load_catalog(CatalogConfig(source="csv", path=str(tmp_path / "missing.csv")))
