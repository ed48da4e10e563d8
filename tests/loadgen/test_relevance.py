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


async def test_query_drift_drill_shifts_the_query_mix_past_the_drift_alert_threshold():
    """The query-drift drill narrows shoppers to the longest queries: the PSI of query length (the server's
    `query_tokens` drift feature) against normal traffic crosses ModelDriftHigh's 0.25; normal traffic does not."""
    from inference_server.lifecycle.drift import psi
    from loadgen.config import ScenarioConfig
    from loadgen.scenarios import TrafficControl, make_scenario

    oracle = load_oracle(RelevanceConfig(catalog={**SMALL, "num_queries": 50}))
    control = TrafficControl()
    drill = make_scenario(ScenarioConfig(name="query-drift", drift_share=0.25), None, control)
    rng = random.Random(3)

    def lengths(n: int) -> list[int]:
        return [len(oracle.pick_intent(rng, control.longest_query_share).text.split()) for _ in range(n)]

    reference = lengths(2000)
    assert psi(reference, lengths(2000)) < 0.1
    await drill.start()
    drifted = lengths(2000)
    await drill.stop()
    assert control.longest_query_share is None
    assert psi(reference, drifted) > 0.25, psi(reference, drifted)
    longest = sorted(len(i.text.split()) for i in oracle.intents)[-round(0.25 * len(oracle.intents))]
    assert min(drifted) >= longest
