"""Deterministic synthetic catalog with queries whose graded relevance is known by construction.

Products are drawn from the taxonomy in `taxonomy.py` (type, brand, colour, material, size,
price) with natural listing titles. Each query names a product type (or a synonym) plus some
facets of an anchor product, so its relevance to every product follows from the facets:

    3  same type, every facet the query names matches
    2  same type, some (not all) named facets match
    1  same type with no named facet matching, or a closely related type
    0  anything else (left unjudged)

The same seed always yields the same catalog and queries (only `random.Random(seed)` is used;
no set or hash ordering leaks in).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Optional

from inference_server.catalog.taxonomy import BRANDS, COLOUR_SYNONYMS, MATERIAL_SYNONYMS, PRODUCT_LINES, PRODUCT_TYPES, ProductType
from inference_server.catalog.types import Catalog, CatalogBundle, CatalogError, JudgedQuery, Product

__all__ = ["FACETS", "QuerySpec", "generate_synthetic", "generate_synthetic_with_specs", "synthetic_relevance"]

# Facets a query may name, in the order adjectives usually come in English ("large gray wool rug").
FACETS = ("brand", "size", "colour", "material")
_FACET_PROBABILITY = {"brand": 0.3, "size": 0.3, "colour": 0.5, "material": 0.4}

_TYPES_BY_NAME = {t.name: t for t in PRODUCT_TYPES}
# "closely related" is symmetric: a sofa shopper accepts a loveseat and vice versa.
_RELATED: dict[str, tuple[str, ...]] = {}
for _type in PRODUCT_TYPES:
    _RELATED.setdefault(_type.name, ())
    for _other in _type.related:
        for _a, _b in ((_type.name, _other), (_other, _type.name)):
            if _b not in _RELATED.get(_a, ()):
                _RELATED[_a] = _RELATED.get(_a, ()) + (_b,)


def _title_case(text: str) -> str:
    """Listing-style capitalisation that leaves units and model tokens alone ("12 in.", "20v")."""
    words = []
    for word in text.split(" "):
        if word and word[0].isalpha() and not re.fullmatch(r"(in|ft|qt|oz|gal|l|x|pint|btu|sq|of|and|with)\.?", word):
            word = word[0].upper() + word[1:]
        words.append(word)
    text = " ".join(words)
    # Unit spellings as listings print them: "10,000 BTU", "20V Max", "60W Equivalent".
    text = re.sub(r"\bbtu\b", "BTU", text)
    return re.sub(r"\b(\d+)([vw])\b", lambda m: m.group(1) + m.group(2).upper(), text)


def _product_title(rng: random.Random, brand: str, line: Optional[str], kind: ProductType,
                   colour: Optional[str], material: Optional[str], size: Optional[str]) -> str:
    name = _title_case(kind.name)
    mat = _title_case(material) if material else ""
    col = _title_case(colour) if colour else ""
    size = _title_case(size) if size else None
    head = " ".join(x for x in (brand, line or "") if x)
    template = rng.randrange(4)
    if template == 0:
        title = " ".join(x for x in (head, size or "", mat, name) if x) + (f" in {col}" if col else "")
    elif template == 1:
        title = " ".join(x for x in (head, col, mat, name) if x) + (f" ({size})" if size else "")
    elif template == 2:
        title = " ".join(x for x in (head, size or "", mat, name) if x) + (f", {col}" if col else "")
    else:
        details = ", ".join(x for x in (" ".join(x for x in (col, mat) if x), size or "") if x)
        title = f"{head} {name}" + (f" - {details}" if details else "")
    return re.sub(r"\s+", " ", title).strip()


def _price(rng: random.Random, kind: ProductType, material: Optional[str], size: Optional[str]) -> float:
    low, high = kind.price
    value = rng.uniform(low, high)
    if size and kind.sizes:
        value *= 1.0 + 0.15 * kind.sizes.index(size)  # larger sizes cost more
    if material and kind.materials:
        value *= 1.0 + 0.1 * (len(kind.materials) - 1 - kind.materials.index(material)) / max(1, len(kind.materials))
    return max(0.99, round(value) - 0.01)


def _make_product(rng: random.Random, index: int, kind: ProductType) -> Product:
    brand = rng.choice(BRANDS[kind.department])
    line = rng.choice(PRODUCT_LINES) if rng.random() < 0.6 else None
    colour = rng.choice(kind.colours) if kind.colours else None
    material = rng.choice(kind.materials) if kind.materials else None
    size = rng.choice(kind.sizes) if kind.sizes else None
    attributes = {"type": kind.name}
    for key, value in (("colour", colour), ("material", material), ("size", size)):
        if value is not None:
            attributes[key] = value
    return Product(
        id=f"SYN-{index:06d}",
        title=_product_title(rng, brand, line, kind, colour, material, size),
        brand=brand,
        category=kind.department,
        price=_price(rng, kind, material, size),
        attributes=attributes,
    )


def _size_surface(rng: random.Random, size: str) -> str:
    """How shoppers type a size: "12 in." -> "12 inch" / "12in" / "12 in"."""
    if " in." in size or size.endswith("in."):
        size = size.replace(" in.", rng.choice([" in", " inch", "in", " in."]))
    size = size.replace(" ft.", rng.choice([" ft", " ft.", " foot"]))
    size = size.replace(" qt.", rng.choice([" qt", " quart"]))
    size = size.replace(" oz.", rng.choice([" oz", " ounce"]))
    size = size.replace(" gal.", rng.choice([" gal", " gallon"]))
    if size.endswith("-seat"):
        size = size.replace("-seat", rng.choice(["-seat", " seater", " seat"]))
    if size.endswith("-piece"):
        size = size.replace("-piece", rng.choice(["-piece", " piece", " pc"]))
    return size


def _surface(rng: random.Random, value: str, synonyms: dict[str, tuple[str, ...]], p: float = 0.35) -> str:
    options = synonyms.get(value, ())
    return rng.choice(options) if options and rng.random() < p else value


def _compose_query(rng: random.Random, kind: ProductType, named: dict[str, str]) -> str:
    type_text = rng.choice(kind.synonyms) if kind.synonyms and rng.random() < 0.35 else kind.name
    words = {
        "brand": named.get("brand"),
        "size": _size_surface(rng, named["size"]) if "size" in named else None,
        "colour": _surface(rng, named["colour"], COLOUR_SYNONYMS) if "colour" in named else None,
        "material": _surface(rng, named["material"], MATERIAL_SYNONYMS) if "material" in named else None,
    }
    present = [f for f in FACETS if words[f]]
    style = rng.random()
    if style < 0.55 or not present:  # "nordhaus 3 seater gray velvet sofa"
        parts = [words[f] for f in present] + [type_text]
    elif style < 0.8:  # "sofa gray velvet 3 seater"
        rest = present[:]
        rng.shuffle(rest)
        parts = [type_text] + [words[f] for f in rest]
    else:  # "gray velvet sofa by nordhaus" / "sofa in gray"
        adjectives = [words[f] for f in present if f in ("size", "material")]
        tail = []
        if words["colour"]:
            tail.append(f"in {words['colour']}")
        if words["brand"]:
            tail.append(f"by {words['brand']}")
        parts = adjectives + [type_text] + tail
    text = " ".join(p for p in parts if p)
    return text.lower() if rng.random() < 0.85 else text


def synthetic_relevance(query_type: str, named: dict[str, str], product: Product) -> int:
    """Graded relevance (0-3) of `product` for a query naming `query_type` and the facets `named`."""
    product_type = product.attributes.get("type")
    if product_type == query_type:
        if not named:
            return 3
        facts = {"brand": product.brand, **product.attributes}
        matched = sum(1 for facet, value in named.items() if facts.get(facet) == value)
        if matched == len(named):
            return 3
        return 2 if matched else 1
    if product_type in _RELATED.get(query_type, ()):
        return 1
    return 0


@dataclass(frozen=True)
class QuerySpec:
    """How a synthetic query was built: its product type and the facets it names (canonical values)."""

    query_id: str
    product_type: str
    facets: dict[str, str]


def generate_synthetic(seed: int = 7, num_products: int = 5000, num_queries: int = 500,
                       name: str = "synthetic") -> CatalogBundle:
    """Build the catalog and its judged queries; identical output for identical arguments."""
    return generate_synthetic_with_specs(seed, num_products, num_queries, name)[0]


def generate_synthetic_with_specs(seed: int = 7, num_products: int = 5000, num_queries: int = 500,
                                  name: str = "synthetic") -> tuple[CatalogBundle, list[QuerySpec]]:
    """`generate_synthetic` plus each query's construction, to audit the judgments."""
    if num_products < 1:
        raise CatalogError(f"synthetic catalog: num_products must be >= 1, got {num_products}")
    if num_queries < 0:
        raise CatalogError(f"synthetic catalog: num_queries must be >= 0, got {num_queries}")
    rng = random.Random(seed)
    # Every type appears (round robin over a shuffled order), then types repeat at random.
    order = list(PRODUCT_TYPES)
    rng.shuffle(order)
    kinds = [order[i] if i < len(order) else rng.choice(PRODUCT_TYPES) for i in range(num_products)]
    products = [_make_product(rng, i + 1, kind) for i, kind in enumerate(kinds)]
    catalog = Catalog(name, products)

    by_type: dict[str, list[Product]] = {}
    for product in products:
        by_type.setdefault(product.attributes["type"], []).append(product)

    queries: list[JudgedQuery] = []
    specs: list[QuerySpec] = []
    seen: set[str] = set()
    attempts = 0
    while len(queries) < num_queries:
        attempts += 1
        if attempts > 100 * num_queries + 1000:
            raise CatalogError(
                f"synthetic catalog: could only make {len(queries)} distinct queries of {num_queries} "
                f"from {num_products} products; lower num_queries or raise num_products"
            )
        anchor = rng.choice(products)
        kind = _TYPES_BY_NAME[anchor.attributes["type"]]
        facts = {"brand": anchor.brand, **anchor.attributes}
        named = {f: facts[f] for f in FACETS if facts.get(f) and rng.random() < _FACET_PROBABILITY[f]}
        text = _compose_query(rng, kind, named)
        if text.lower() in seen:
            continue
        seen.add(text.lower())
        candidates = list(by_type.get(kind.name, ()))
        for other in _RELATED.get(kind.name, ()):
            candidates.extend(by_type.get(other, ()))
        judgments = {}
        for product in candidates:
            grade = synthetic_relevance(kind.name, named, product)
            if grade > 0:
                judgments[product.id] = float(grade)
        query_id = f"syn-q{len(queries) + 1:05d}"
        queries.append(JudgedQuery(query_id=query_id, text=text, judgments=judgments))
        specs.append(QuerySpec(query_id=query_id, product_type=kind.name, facets=dict(named)))
    return CatalogBundle(catalog=catalog, queries=queries), specs
