"""Evaluation metrics on hand-computed examples, the BM25 baseline, and one small real run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from inference_server.catalog import CatalogBundle, CatalogConfig, load_catalog
from inference_server.evaluate import BM25, dcg, evaluate_bundle, format_report, main, ndcg_at_k, reciprocal_rank, tokenize


def test_dcg_by_hand():
    # 3/log2(2) + 2/log2(3) + 1/log2(4)
    assert dcg([3, 2, 1], 10) == pytest.approx(3 + 2 / math.log2(3) + 0.5)
    assert dcg([3, 2, 1], 1) == pytest.approx(3.0)
    assert dcg([], 10) == 0.0


def test_ndcg_by_hand():
    ideal = 3 + 2 / math.log2(3) + 0.5
    assert ndcg_at_k([1, 2, 3], [3, 2, 1], 10) == pytest.approx((1 + 2 / math.log2(3) + 1.5) / ideal)
    assert ndcg_at_k([3, 2, 1], [1, 2, 3], 10) == pytest.approx(1.0)
    # full-catalog style: an unjudged product (gain 0) ranked above the only relevant one
    assert ndcg_at_k([0, 3], [3], 10) == pytest.approx((3 / math.log2(3)) / 3)
    # cut-off: the relevant product at rank 3 is outside @2
    assert ndcg_at_k([0, 0, 3], [3], 2) == 0.0
    # the ideal uses the query's judged labels, even those not retrieved
    assert ndcg_at_k([2], [3, 2], 10) == pytest.approx(2 / (3 + 2 / math.log2(3)))
    assert ndcg_at_k([0, 0], [0, 0], 10) is None


def test_reciprocal_rank_by_hand():
    assert reciprocal_rank([1, 2, 3], 2.5) == pytest.approx(1 / 3)
    assert reciprocal_rank([1, 2.33, 3], 2.0) == pytest.approx(1 / 2)
    assert reciprocal_rank([3], 2.5) == 1.0
    assert reciprocal_rank([1, 1.67], 2.5) == 0.0


def test_bm25_prefers_matching_rarer_terms():
    assert tokenize("Cordless Drills, 2-Pack 1.5 in.") == ["cordless", "drill", "2", "pack", "1.5", "in"]
    bm25 = BM25(["oak dining table", "oak table lamp", "brass floor lamp", "lamp shade"])
    terms = bm25.query_matrix(["oak lamps", "unknownword"])
    assert terms.shape[0] == 2 and terms[1].nnz == 0
    scores = bm25.pair_scores(terms, np.zeros(4, dtype=np.int64), np.arange(4))
    assert scores.argmax() == 1  # both terms
    assert scores[3] == 0 or scores[3] < scores[0]  # lamp alone vs oak alone: oak is rarer...
    assert scores[0] > scores[2]  # ...so the oak table beats the brass lamp


def _tiny_bundle() -> CatalogBundle:
    return load_catalog(CatalogConfig(seed=9, num_products=150, num_queries=25))


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("eval-cache")


@pytest.mark.parametrize("full_catalog", [False, True])
def test_evaluation_beats_random_on_synthetic(encoder_backend, shared_cache, full_catalog):
    bundle = _tiny_bundle()
    result = evaluate_bundle(bundle, encoder_backend, k=10, full_catalog=full_catalog, depth=20, seed=1,
                             random_repeats=3, cache_dir=str(shared_cache), progress=False, log=lambda _: None)
    assert result.queries == 25 and result.products == 150
    model, bm25, random = result.methods["model"], result.methods["bm25"], result.methods["random"]
    for scores in (model, bm25, random):
        assert 0.0 <= scores.ndcg <= 1.0 and 0.0 <= scores.mrr["2.5"] <= 1.0
        assert scores.ndcg_queries == 25
    assert model.ndcg > random.ndcg
    assert model.ndcg_label_minus_one > random.ndcg_label_minus_one + 0.1
    assert model.mrr["2.5"] > random.mrr["2.5"] + 0.1
    report = format_report(result, 3)
    assert "NDCG@10" in report and "random order (mean of 3)" in report


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert "--full-catalog" in help_text and "--max-queries" in help_text


def test_cli_rejects_bad_numbers(capsys):
    assert main(["--k", "0"]) == 2
    assert "--k must be >= 1" in capsys.readouterr().err
