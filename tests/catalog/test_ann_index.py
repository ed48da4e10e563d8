"""AnnIndex (faiss IVF and HNSW): recall against the exact index, persistence keyed by (model, catalog,
parameters), and catalog changes applied in place (exact and approximate alike)."""
from __future__ import annotations

import numpy as np
import pytest

from inference_server.catalog import Catalog, Product, VectorIndex
from inference_server.catalog.ann import AnnIndex, ann_paths
from inference_server.catalog.search_index import build_search_index
from inference_server.catalog.synthetic import generate_synthetic
from inference_server.catalog.types import IndexConfig

IVF = IndexConfig(kind="ivf", nprobe=16)
HNSW = IndexConfig(kind="hnsw")


def _clustered(n: int, dim: int = 64, seed: int = 0, clusters: int = 50):
    """Unit vectors around cluster centres (like embeddings: many near neighbours, not uniform noise)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, clusters, n)] + 0.35 * rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = centres[rng.integers(0, clusters, 200)] + 0.35 * rng.standard_normal((200, dim)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return vectors, queries


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth)]))


@pytest.mark.parametrize("cfg", [IVF, HNSW, IndexConfig(kind="ivf", quantization="pq", pq_m=16, nprobe=16, candidates=100)],
                         ids=["ivf-sq8", "hnsw-sq8", "ivf-pq"])
def test_recall_at_10_against_exact_search(cfg):
    vectors, queries = _clustered(5000)
    exact = VectorIndex([f"p{i}" for i in range(len(vectors))], vectors)
    ann = AnnIndex.build_ann(exact, cfg, None, "m", "c", progress=False)
    exact_scores, exact_rows = exact.search(queries, 10)
    scores, rows = ann.search(queries, 10)
    assert rows.shape == (200, 10)
    assert _recall(rows, exact_rows) >= 0.98
    # Candidates are re-scored with the fp32 vectors: a row found by both has the exact score.
    np.testing.assert_allclose(scores[:, 0], (vectors[rows[:, 0]] * queries).sum(axis=1), atol=1e-5)
    # A graph this small with a tiny candidate list still answers k rows per query.
    tiny = AnnIndex.build_ann(exact, cfg.model_copy(update={"nprobe": 1, "ef_search": 8, "candidates": 1}),
                              None, "m", "c", progress=False)
    assert tiny.search(queries, 10)[1].shape == (200, 10)
    assert ann.memory_bytes > 0


def test_exclusions_are_never_returned():
    vectors, queries = _clustered(2000, seed=1)
    exact = VectorIndex([f"p{i}" for i in range(len(vectors))], vectors)
    ann = AnnIndex.build_ann(exact, IVF, None, "m", "c", progress=False)
    _, nearest = exact.search(queries[:5], 30)
    exclude = [set(map(int, rows)) for rows in nearest]   # the 30 nearest of each query are excluded
    _, rows = ann.search(queries[:5], 10, exclude)
    _, expected = exact.search(queries[:5], 10, exclude)
    for found, banned in zip(rows, exclude):
        assert not set(map(int, found)) & banned
    assert _recall(rows, expected) >= 0.9


@pytest.mark.parametrize("kind", ["exact", "ivf", "hnsw"])
def test_apply_adds_updates_and_removes(kind):
    vectors, _ = _clustered(1000, seed=2)
    ids = [f"p{i}" for i in range(len(vectors))]
    index = VectorIndex(ids, vectors)
    if kind != "exact":
        index = AnnIndex.build_ann(index, IVF if kind == "ivf" else HNSW, None, "m", "c", progress=False)
    rng = np.random.default_rng(3)
    new = rng.standard_normal((2, vectors.shape[1])).astype(np.float32)
    new /= np.linalg.norm(new, axis=1, keepdims=True)
    moved = -vectors[5]                                 # p5 is updated: its vector flips
    rows = index.apply([("new-a", new[0]), ("new-b", new[1]), ("p5", moved)], ["p7", "missing"])
    assert rows == [1000, 1001, 1002]
    assert len(index) == 1000 + 2 - 1
    assert index.row("p7") is None and index.row("p5") == 1002 and index.row("new-a") == 1000
    # added products are found by their own vector
    _, found = index.search(new, 1)
    assert [index.ids[r] for r in found[:, 0]] == ["new-a", "new-b"]
    # the removed product and the old vector of the updated one are never returned
    _, found = index.search(np.stack([vectors[7], vectors[5], moved]), 20)
    returned = {int(r) for r in found.ravel()}
    assert 7 not in returned and 5 not in returned
    assert int(found[2, 0]) == 1002
    np.testing.assert_allclose(index.vectors([1002, 0]), np.stack([moved, vectors[0]]))
    live_ids, matrix = index.live_matrix()
    assert len(live_ids) == len(matrix) == len(index) and "p7" not in live_ids and live_ids[-1] == "p5"
    # k is capped by live rows
    small = VectorIndex(["a", "b"], vectors[:2])
    small.apply([], ["a"])
    scores, found = small.search(vectors[:1], 5)
    assert found.tolist() == [[1]]


def test_graph_is_persisted_and_invalidated(tmp_path, encoder_backend):
    catalog = generate_synthetic(seed=4, num_products=60, num_queries=0).catalog
    first = build_search_index(catalog, encoder_backend, IVF, tmp_path)
    assert isinstance(first, AnnIndex) and not first.from_cache
    graph_path, meta_path = ann_paths(tmp_path, encoder_backend.fingerprint(), catalog.fingerprint(), IVF, len(catalog))
    assert graph_path.is_file() and meta_path.is_file()
    again = build_search_index(catalog, encoder_backend, IVF, tmp_path)
    assert again.from_cache
    query = encoder_backend.encode([catalog.products[0].text()])
    assert again.search(query, 5)[1].tolist() == first.search(query, 5)[1].tolist()
    # search-time settings do not change the key; graph-shaping ones do
    assert build_search_index(catalog, encoder_backend, IVF.model_copy(update={"nprobe": 3}), tmp_path).from_cache
    assert not build_search_index(catalog, encoder_backend, IVF.model_copy(update={"quantization": "fp16"}),
                                  tmp_path).from_cache
    # a changed product changes the catalog fingerprint: new embeddings, new graph
    changed = Catalog(catalog.name, [Product(catalog.products[0].id, "Completely Different Garden Hose")]
                      + catalog.products[1:])
    assert not build_search_index(changed, encoder_backend, IVF, tmp_path).from_cache
    # a corrupt graph file is rebuilt, not trusted
    graph_path.write_bytes(b"not a graph")
    rebuilt = build_search_index(catalog, encoder_backend, IVF, tmp_path)
    assert not rebuilt.from_cache and len(rebuilt) == len(catalog)
