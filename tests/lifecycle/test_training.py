"""Fine-tuning end to end on a tiny slice: TRAIN split only, a complete new version (weights, model.yaml with
parent / data fingerprint / weights sha256), registered (evaluation on DEV and TEST, fusion weight), and
verifiable; a tampered golden set then fails verification."""
from __future__ import annotations

import shutil

import numpy as np
import yaml

from inference_server.catalog import generate_synthetic
from inference_server.catalog.splits import query_split
from inference_server.lifecycle import registration
from inference_server.lifecycle.registration import weights_sha256
from inference_server.training import TrainingConfig, build_examples, main

REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_training_examples_come_from_the_train_split_only():
    bundle = generate_synthetic(7, 300, 200)
    table = build_examples(bundle, TrainingConfig(min_relevance=2.0))
    assert table and all(query_split(q) == "train" for q in table)
    held_out = [q.text for q in bundle.queries if query_split(q.text) != "train"]
    assert held_out and not set(held_out) & set(table)
    # logged clicks on a TEST query are dropped like its judged pairs
    test_query = next(q for q in held_out)
    product = bundle.catalog.products[0].id
    assert test_query.strip() not in build_examples(bundle, TrainingConfig(), clicks=[(test_query, [product], [])])


def test_finetune_writes_registers_and_verifies_a_new_version(tmp_path, capsys):
    root = tmp_path / "models"
    shutil.copytree(REPO / "models" / "minilm" / "1", root / "minilm" / "1")
    config = tmp_path / "server.yaml"
    config.write_text(yaml.safe_dump({
        "model": {"device": "cpu", "num_threads": 1},
        "catalog": {"source": "synthetic", "num_products": 150, "num_queries": 60, "cache_dir": str(tmp_path / "cache")},
        "model_repository": {"root": str(root), "state_dir": str(tmp_path / "state"), "golden_queries": 4,
                             "drift_reference_queries": 20},
    }))
    code = main(["--config", str(config), "--catalog", "synthetic", "--min-relevance", "2", "--max-examples", "16",
                 "--batch-size", "8", "--epochs", "1", "--bf16", "off", "--num-threads", "1", "--no-progress"])
    assert code == 0
    version = root / "minilm" / "2"
    doc = yaml.safe_load((version / "model.yaml").read_text())
    assert doc["parent"] == "1" and doc["retrieval"]["mode"] == "hybrid" and doc["weights"] == "weights"
    assert doc["weights_sha256"] == weights_sha256(version / "weights")
    assert doc["training"]["steps"] == 2 and doc["training"]["seed"] == 0 and len(doc["data_fingerprint"]) == 64
    assert (version / "weights" / "model.safetensors").is_file()
    state = next((tmp_path / "state" / "minilm" / "2").iterdir())
    evaluation = __import__("json").loads((state / "evaluation.json").read_text())
    assert {"dev", "test", "fusion"} <= set(evaluation)
    assert "parent v1 dense" in evaluation["test"]["methods"] and "bm25 normalised" in evaluation["test"]["methods"]
    assert registration.main(["--config", str(config), "verify", "--version", "2"]) == 0
    with np.load(state / "golden.npz") as g:
        golden = {k: g[k] for k in g.files}
    golden["topk_scores"] = golden["topk_scores"] + 0.01
    np.savez(state / "golden.npz", **golden)
    capsys.readouterr()
    assert registration.main(["--config", str(config), "verify", "--version", "2"]) == 2
    assert "golden.npz" in capsys.readouterr().err
