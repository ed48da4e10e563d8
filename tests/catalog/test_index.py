"""VectorIndex: exact top-k, exclusions, scale, and the on-disk embedding cache."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from inference_server.catalog import Catalog, Product, VectorIndex
from inference_server.catalog.index import cache_paths
from inference_server.catalog.synthetic import generate_synthetic


def _brute_force(queries, embeddings, k, exclude=None):
    """Full stable sort of every score, excluded rows dropped."""
    scores = queries @ embeddings.T
    for i, rows in enumerate(exclude or []):
        valid = [r for r in rows if 0 <= r < len(embeddings)]
        scores[i, valid] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k].astype(np.int64)


def _random_index(n, dim=384, seed=0):
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return VectorIndex([f"p{i}" for i in range(n)], vectors), rng


@pytest.fixture(scope="module")
def small_catalog():
    return generate_synthetic(seed=2, num_products=40, num_queries=0).catalog


@pytest.fixture(scope="module")
def built(small_catalog, encoder_backend, tmp_path_factory):
    cache_dir = tmp_path_factory.mktemp("embeddings")
    return VectorIndex.build(small_catalog, encoder_backend, cache_dir, batch_size=16, progress=False), cache_dir


def test_build_embeds_every_product_text(built, small_catalog, encoder_backend):
    index, _ = built
    assert index.ids == small_catalog.ids() and index.embeddings.shape == (40, 384)
    assert not index.from_cache and index.build_seconds > 0
    np.testing.assert_allclose(index.embeddings[:3], encoder_backend.encode([p.text() for p in small_catalog.products[:3]]), atol=1e-5)
    assert index.row("SYN-000007") == 6 and index.row("missing") is None
    np.testing.assert_array_equal(index.vectors([6, 0]), index.embeddings[[6, 0]])


def test_search_equals_brute_force(built, encoder_backend):
    index, _ = built
    queries = encoder_backend.encode(["gray velvet sofa", "cordless drill", "queen cotton sheets"])
    scores, rows = index.search(queries, 5)
    assert scores.dtype == np.float32 and rows.dtype == np.int64 and rows.shape == (3, 5)
    np.testing.assert_array_equal(rows, _brute_force(queries, index.embeddings, 5))
    np.testing.assert_allclose(scores, np.take_along_axis(queries @ index.embeddings.T, rows, axis=1), atol=1e-6)
    assert (np.diff(scores, axis=1) <= 0).all()
    one_scores, one_rows = index.search(queries[0], 5)  # a single vector works too
    np.testing.assert_array_equal(one_rows[0], rows[0])


def test_k_larger_than_catalog_returns_everything(built, encoder_backend):
    index, _ = built
    scores, rows = index.search(encoder_backend.encode(["lamp"]), 1000)
    assert rows.shape == (1, 40) and sorted(rows[0].tolist()) == list(range(40))
    with pytest.raises(ValueError):
        index.search(encoder_backend.encode(["lamp"]), 0)


def test_exclusions(built, encoder_backend):
    index, _ = built
    queries = encoder_backend.encode(["gray velvet sofa", "cordless drill"])
    _, top = index.search(queries, 3)
    exclude = [set(top[0].tolist()), {int(top[1][0]), 999, -1}]  # out-of-range rows are ignored
    _, rows = index.search(queries, 5, exclude=exclude)
    for i in range(2):
        assert not set(rows[i].tolist()) & exclude[i]
    np.testing.assert_array_equal(rows, _brute_force(queries, index.embeddings, 5, exclude))
    # width shrinks to what every query can still return
    _, rows = index.search(queries, 40, exclude=exclude)
    assert rows.shape == (2, 37)
    with pytest.raises(ValueError, match="exclude"):
        index.search(queries, 3, exclude=[set()])


def test_exact_search_on_50k_products():
    index, rng = _random_index(50_000)
    queries = rng.standard_normal((4, 384)).astype(np.float32)
    exclude = [set(), {1, 2, 3}, set(), set(range(0, 50_000, 2))]
    scores, rows = index.search(queries, 10, exclude=exclude)
    np.testing.assert_array_equal(rows, _brute_force(queries, index.embeddings, 10, exclude))


def test_cache_is_hit_verified_and_keyed_by_catalog(built, small_catalog, encoder_backend):
    index, cache_dir = built
    npy, ids_json = cache_paths(cache_dir, encoder_backend.fingerprint(), small_catalog.fingerprint())
    assert npy.is_file() and ids_json.is_file()
    assert re.fullmatch(r"[0-9a-f]{16}-[0-9a-f]{16}\.npy", npy.name)
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp")]

    again = VectorIndex.build(small_catalog, encoder_backend, cache_dir, progress=False)
    assert again.from_cache
    np.testing.assert_array_equal(again.embeddings, index.embeddings)

    # A changed product title is a different catalog: new key, fresh embeddings.
    products = list(small_catalog.products)
    products[0] = Product(id=products[0].id, title="Brass Table Lamp", brand=products[0].brand)
    changed = Catalog(small_catalog.name, products)
    assert changed.fingerprint() != small_catalog.fingerprint()
    rebuilt = VectorIndex.build(changed, encoder_backend, cache_dir, progress=False)
    assert not rebuilt.from_cache
    assert not np.allclose(rebuilt.embeddings[0], index.embeddings[0])
    np.testing.assert_allclose(rebuilt.embeddings[1:], index.embeddings[1:], atol=1e-5)


def test_damaged_cache_is_rebuilt(small_catalog, encoder_backend, tmp_path):
    tiny = Catalog("tiny", small_catalog.products[:4])
    first = VectorIndex.build(tiny, encoder_backend, tmp_path, progress=False)
    npy, ids_json = cache_paths(tmp_path, encoder_backend.fingerprint(), tiny.fingerprint())
    meta = json.loads(ids_json.read_text())
    meta["ids"] = meta["ids"][::-1]
    ids_json.write_text(json.dumps(meta))
    assert not VectorIndex.build(tiny, encoder_backend, tmp_path, progress=False).from_cache
    np.save(npy, np.zeros((3, 384), dtype=np.float32))
    second = VectorIndex.build(tiny, encoder_backend, tmp_path, progress=False)
    assert not second.from_cache
    np.testing.assert_allclose(second.embeddings, first.embeddings, atol=1e-6)
    assert VectorIndex.build(tiny, encoder_backend, tmp_path, progress=False).from_cache
    npy.write_bytes(npy.read_bytes()[:100])  # truncated by a full disk, say
    assert not VectorIndex.build(tiny, encoder_backend, tmp_path, progress=False).from_cache


def test_catalog_rejects_duplicate_ids():
    from inference_server.catalog import CatalogError

    with pytest.raises(CatalogError, match="duplicate"):
        Catalog("x", [Product("a", "A"), Product("a", "B")])
