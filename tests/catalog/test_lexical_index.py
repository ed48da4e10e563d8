"""The lexical index: one normaliser for queries and titles, BM25 scores, the on-disk cache keyed by the
catalog and normaliser fingerprints, and rebuilds when the catalog changes."""
from __future__ import annotations

import numpy as np
import pytest

from inference_server.catalog.lexical_index import LexicalIndex, normalise, tokenize
from inference_server.catalog.types import Catalog, Product

TITLES = [
    "Delta 36 in. Vanity in White with Faucets",
    'Everbilt 3/4" x 10 ft. Copper Pipe',
    "2x4 Pressure-Treated Lumber 8 feet",
    "Husky 12V Cordless Drill Kit",
    "Oak Dining Table 72 inch",
]


def catalog(titles=TITLES) -> Catalog:
    return Catalog("tiny", [Product(f"P{i}", t) for i, t in enumerate(titles)])


@pytest.mark.parametrize("a, b", [
    ('36 inch vanity', '36 in. vanity'), ('36" vanity', '36 in vanity'), ("2 x 4 lumber", "2x4 lumber"),
    ("10 feet copper pipe", "10 ft. copper pipes"), ("12 volt drill", "12V drill"), ("faucets", "faucet"),
])
def test_one_normaliser_for_the_ways_shoppers_write_things(a, b):
    assert tokenize(a) == tokenize(b)


def test_normalise_keeps_fractions_and_drops_stop_words():
    assert tokenize('3/4" copper pipe for the sink') == ["3/4", "in", "copper", "pipe", "sink"]
    assert "2 x 4" in normalise("2x4")


def test_search_finds_normalised_matches_and_score_texts_agrees(tmp_path):
    index = LexicalIndex.build(catalog(), tmp_path)
    scores, rows = index.search('36" vanity', 2)
    assert index.ids[rows[0]] == "P0" and scores[0] > 0
    _, rows = index.search("2 x 4 lumber 8 ft", 1)
    assert index.ids[rows[0]] == "P2"
    full = index.scores("copper pipe 10 feet")
    assert np.allclose(index.score_rows("copper pipe 10 feet", [0, 1, 2], catalog()), full[:3], atol=1e-5)
    assert not index.scores("zzzz").any()
    _, rows = index.search("vanity", 3, exclude={0})
    assert 0 not in rows


def test_cache_is_keyed_by_catalog_and_reused(tmp_path):
    first = LexicalIndex.build(catalog(), tmp_path)
    again = LexicalIndex.build(catalog(), tmp_path)
    assert not first.from_cache and again.from_cache
    assert np.allclose(first.scores("oak table"), again.scores("oak table"))
    changed = catalog(TITLES[:-1] + ["Walnut Dining Table 72 inch"])
    rebuilt = again.apply(changed, tmp_path)
    assert rebuilt is not again and not rebuilt.from_cache
    assert rebuilt.scores("oak table")[4] < again.scores("oak table")[4]
    assert again.apply(catalog(), tmp_path) is again                      # unchanged catalog: same index
    assert len(list(tmp_path.glob("lexical-*"))) == 2


def test_misspelt_query_terms_are_corrected_against_the_catalog_vocabulary(tmp_path):
    index = LexicalIndex.build(catalog(), tmp_path)
    assert index.query_terms("cordlss dril") == ["cordless", "drill"]           # 1 edit each
    assert index.query_terms("presure treeted lumbr") == ["pressure", "treated", "lumber"]
    assert index.query_terms("vanaty") == ["vanity"]
    assert index.query_terms("cup") == []                 # short terms are never guessed ("cup" is not "copper")
    assert index.query_terms("zzzzzzzz") == []            # nothing close: dropped, as before
    _, rows = index.search("husky cordlss dril", 1)
    assert index.ids[rows[0]] == "P3"
    # the same correction applies to texts scored for /v1/rank
    assert index.score_texts("cordlss dril", [TITLES[3], TITLES[0]])[0] > 0


def test_speller_leaves_known_numeric_and_short_terms_alone():
    from inference_server.catalog.query_spelling import QuerySpeller

    speller = QuerySpeller({"drill": 5, "drills": 1, "grill": 2, "3/4": 4, "oak": 3})
    assert speller.correct(["dril", "oak", "oat", "3/4", "12", "dril"]) == ["drill", "oak", "oat", "3/4", "12", "drill"]
    assert speller.correct_term("drils") == "drill"            # ties at distance 1 go to the commoner term
