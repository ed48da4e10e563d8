"""True relevance comes from the catalog the server loads: synthetic by default, Home Depot on demand."""
import random
from pathlib import Path

import pytest
import yaml

from loadgen.config import ConfigError, RelevanceConfig
from loadgen.relevance import load_oracle

HOMEDEPOT = Path(__file__).resolve().parents[3] / "shared" / "data" / "homedepot"
SMALL = {"source": "synthetic", "num_products": 300, "num_queries": 40}


def test_synthetic_relevance_by_construction():
    oracle = load_oracle(RelevanceConfig(catalog=SMALL))
    assert oracle.catalog_name == "synthetic" and len(oracle.product_ids) == 300
    assert (oracle.min_grade, oracle.max_grade) == (0.0, 3.0)
    intent = oracle.pick_intent(random.Random(0))
    best = intent.relevant[0]
    assert oracle.relevance(intent, best) == 1.0 or intent.judgments[best] < 3
    unjudged = next(p for p in oracle.product_ids if p not in intent.judgments)
    assert oracle.relevance(intent, unjudged) == 0.0
    assert all(0 < oracle.relevance(intent, p) <= 1 for p in intent.relevant)
    assert oracle.price(best) > 0 and oracle.price(best) == oracle.catalog.get(best).price


def test_catalog_section_read_from_the_server_config(tmp_path):
    server_cfg = tmp_path / "server.yaml"
    server_cfg.write_text(yaml.safe_dump({"server": {"port": 1}, "catalog": {**SMALL, "num_products": 250}}))
    oracle = load_oracle(RelevanceConfig(server_config=str(server_cfg)))
    assert len(oracle.product_ids) == 250


def test_bad_catalog_section_names_the_key():
    with pytest.raises(ConfigError, match="catalog.num_product"):
        load_oracle(RelevanceConfig(catalog={"source": "synthetic", "num_product": 3}))


@pytest.mark.skipif(not (HOMEDEPOT / "train.csv").exists(), reason="../shared/data/homedepot absent")
def test_homedepot_judgments_drive_relevance():
    oracle = load_oracle(RelevanceConfig(catalog={"source": "homedepot", "path": str(HOMEDEPOT), "max_queries": 100}))
    assert oracle.catalog_name == "homedepot" and oracle.min_grade == 1.0 and oracle.max_grade == 3.0
    for intent in oracle.intents[:50]:
        for pid, grade in intent.judgments.items():
            expected = (grade - 1.0) / 2.0
            assert oracle.relevance(intent, pid) == pytest.approx(expected)
            assert (pid in intent.relevant) == (grade > 1.0)
    # Home Depot has no prices: a stable pseudo-price is used for revenue.
    pid = oracle.product_ids[0]
    assert oracle.price(pid) == oracle.price(pid) > 0


def test_server_env_overrides_apply_to_the_catalog(tmp_path, monkeypatch):
    server_cfg = tmp_path / "server.yaml"
    server_cfg.write_text(yaml.safe_dump({"catalog": SMALL}))
    monkeypatch.setenv("INFERENCE_SERVER__CATALOG__NUM_PRODUCTS", "220")
    oracle = load_oracle(RelevanceConfig(server_config=str(server_cfg)))
    assert len(oracle.product_ids) == 220
