"""Synthetic catalog: deterministic, realistic, and judged exactly as documented."""

from __future__ import annotations

import pytest

from inference_server.catalog import CatalogConfig, CatalogError, load_catalog
from inference_server.catalog.synthetic import generate_synthetic, generate_synthetic_with_specs, synthetic_relevance
from inference_server.catalog.taxonomy import COLOUR_SYNONYMS, MATERIAL_SYNONYMS, PRODUCT_TYPES


@pytest.fixture(scope="module")
def built():
    return generate_synthetic_with_specs(seed=11, num_products=1500, num_queries=200)


def test_same_seed_same_catalog_and_queries():
    first, second = generate_synthetic(seed=3, num_products=300, num_queries=40), generate_synthetic(seed=3, num_products=300, num_queries=40)
    assert first.catalog.fingerprint() == second.catalog.fingerprint()
    assert [(p.title, p.price, dict(p.attributes)) for p in first.catalog] == [(p.title, p.price, dict(p.attributes)) for p in second.catalog]
    assert [(q.text, dict(q.judgments)) for q in first.queries] == [(q.text, dict(q.judgments)) for q in second.queries]
    other = generate_synthetic(seed=4, num_products=300, num_queries=40)
    assert other.catalog.fingerprint() != first.catalog.fingerprint()


def test_load_catalog_uses_config():
    bundle = load_catalog(CatalogConfig(source="synthetic", seed=5, num_products=250, num_queries=30, name="demo"))
    assert bundle.catalog.name == "demo"
    assert len(bundle.catalog) == 250 and len(bundle.queries) == 30


def test_products_cover_the_taxonomy_with_facets(built):
    bundle, _ = built
    products = bundle.catalog.products
    assert len(products) == 1500 and len({p.id for p in products}) == 1500
    assert {p.attributes["type"] for p in products} == {t.name for t in PRODUCT_TYPES}
    for product in products:
        assert product.brand and product.brand in product.title
        assert product.category and product.price is not None and product.price > 0
        kind = next(t for t in PRODUCT_TYPES if t.name == product.attributes["type"])
        assert product.attributes.get("colour", None) in (kind.colours or (None,))
        assert product.attributes.get("material", None) in (kind.materials or (None,))
        assert product.attributes.get("size", None) in (kind.sizes or (None,))
        assert kind.name.lower() in product.title.lower()
    assert len({p.title for p in products}) > 0.95 * len(products)


def test_judgments_follow_the_construction_rule(built):
    bundle, specs = built
    assert len({q.text.lower() for q in bundle.queries}) == len(bundle.queries)
    for query, spec in zip(bundle.queries, specs):
        assert query.query_id == spec.query_id
        expected = {}
        for product in bundle.catalog:
            grade = synthetic_relevance(spec.product_type, spec.facets, product)
            if grade:
                expected[product.id] = float(grade)
        assert dict(query.judgments) == expected
        assert 3.0 in query.judgments.values()  # the anchor product


def test_relevance_grades_by_hand(built):
    bundle, _ = built
    sofa = next(p for p in bundle.catalog if p.attributes["type"] == "sofa")
    colour, material = sofa.attributes["colour"], sofa.attributes["material"]
    assert synthetic_relevance("sofa", {}, sofa) == 3
    assert synthetic_relevance("sofa", {"colour": colour, "material": material}, sofa) == 3
    assert synthetic_relevance("sofa", {"colour": colour, "material": "no-such"}, sofa) == 2
    assert synthetic_relevance("sofa", {"colour": "no-such"}, sofa) == 1
    assert synthetic_relevance("loveseat", {"colour": colour}, sofa) == 1  # related type
    assert synthetic_relevance("cordless drill", {}, sofa) == 0


def test_query_text_names_type_and_facets(built):
    bundle, specs = built
    kinds = {t.name: t for t in PRODUCT_TYPES}
    facet_kinds = {"brand", "size", "colour", "material"}
    mixes = set()
    for query, spec in zip(bundle.queries, specs):
        text = query.text.lower()
        kind = kinds[spec.product_type]
        assert any(name in text for name in (kind.name, *kind.synonyms))
        if "colour" in spec.facets:
            value = spec.facets["colour"]
            assert any(v in text for v in (value, *COLOUR_SYNONYMS.get(value, ())))
        if "material" in spec.facets:
            value = spec.facets["material"]
            assert any(v in text for v in (value, *MATERIAL_SYNONYMS.get(value, ())))
        if "brand" in spec.facets:
            assert spec.facets["brand"].lower() in text
        assert set(spec.facets) <= facet_kinds
        mixes.add(frozenset(spec.facets))
    # varied: type-only queries, single facets and combinations all occur
    assert frozenset() in mixes and len(mixes) >= 8
    assert any(len(m) >= 3 for m in mixes)


def test_rejects_impossible_sizes():
    with pytest.raises(CatalogError, match="num_products"):
        generate_synthetic(num_products=0)
    with pytest.raises(CatalogError, match="distinct queries"):
        generate_synthetic(num_products=1, num_queries=500)
