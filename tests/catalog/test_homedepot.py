"""Home Depot loader on the real files in ../shared/data/homedepot (skipped where absent)."""

from __future__ import annotations

import pytest

from inference_server.catalog import CatalogConfig, CatalogError, default_homedepot_dir, load_catalog, load_homedepot

DATA_DIR = default_homedepot_dir()
needs_data = pytest.mark.skipif(not (DATA_DIR / "train.csv").is_file(), reason=f"no Home Depot data in {DATA_DIR}")


@pytest.fixture(scope="module")
def full_bundle():
    return load_homedepot(DATA_DIR)


@needs_data
def test_full_counts(full_bundle):
    assert len(full_bundle.catalog) == 54_667
    assert len(full_bundle.queries) == 11_795
    assert sum(len(q.judgments) for q in full_bundle.queries) == 74_067
    assert full_bundle.catalog.name == "homedepot"


@needs_data
def test_labels_titles_and_brands(full_bundle):
    labels = [g for q in full_bundle.queries for g in q.judgments.values()]
    assert min(labels) == 1.0 and max(labels) == 3.0
    assert 2.37 < sum(labels) / len(labels) < 2.39  # documented mean 2.38
    first = full_bundle.catalog.get("100001")
    assert first.title == "Simpson Strong-Tie 12-Gauge Angle" and first.brand == "Simpson Strong-Tie"
    angle = next(q for q in full_bundle.queries if q.text == "angle bracket")
    assert angle.judgments["100001"] == 3.0
    brands = {p.brand for p in full_bundle.catalog}
    assert "Unbranded" not in brands and None in brands
    assert not any("&amp;" in p.title for p in full_bundle.catalog)
    assert all(full_bundle.catalog.get(pid) for q in full_bundle.queries for pid in q.judgments)


@needs_data
def test_max_queries_keeps_first_queries_and_their_products(full_bundle):
    small = load_homedepot(DATA_DIR, max_queries=50)
    assert [q.text for q in small.queries] == [q.text for q in full_bundle.queries[:50]]
    judged = {pid for q in small.queries for pid in q.judgments}
    assert set(small.catalog.ids()) == judged
    assert [dict(q.judgments) for q in small.queries] == [dict(q.judgments) for q in full_bundle.queries[:50]]


@needs_data
def test_load_catalog_homedepot_source():
    bundle = load_catalog(CatalogConfig(source="homedepot", path=str(DATA_DIR), max_queries=5))
    assert len(bundle.queries) == 5 and len(bundle.catalog) >= 5


def test_missing_directory_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(CatalogError, match="train.csv"):
        load_homedepot(tmp_path)
    monkeypatch.setenv("HOMEDEPOT_DIR", str(tmp_path / "elsewhere"))
    assert default_homedepot_dir() == tmp_path / "elsewhere"
    with pytest.raises(CatalogError, match="elsewhere"):
        load_catalog(CatalogConfig(source="homedepot"))


def test_malformed_relevance_names_row_and_column(tmp_path):
    (tmp_path / "train.csv").write_bytes(
        b'"id","product_uid","product_title","search_term","relevance"\n'
        b'1,100001,"Caf\xe9 Table","table",3\n'
        b'2,100002,"Lamp","lamp",high\n'
    )
    with pytest.raises(CatalogError, match=r"row 3, column relevance"):
        load_homedepot(tmp_path)


def test_small_latin1_file_without_brands(tmp_path):
    (tmp_path / "train.csv").write_bytes(
        b'"id","product_uid","product_title","search_term","relevance"\n'
        b'1,100001,"Caf\xe9 Table","table",3\n'
        b'2,100002,"Lamp","table",1.33\n'
        b'3,100001,"Caf\xe9 Table","cafe",2\n'
    )
    bundle = load_homedepot(tmp_path)
    assert bundle.catalog.get("100001").title == "Caf\u00e9 Table"
    assert [(q.text, dict(q.judgments)) for q in bundle.queries] == [
        ("table", {"100001": 3.0, "100002": 1.33}), ("cafe", {"100001": 2.0})]
