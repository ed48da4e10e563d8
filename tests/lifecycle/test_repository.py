"""Model repository: model.yaml validation, version policy, artefact round trip, CLI help."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference_server.catalog import Catalog, Product
from inference_server.config import BatchingConfig, ConfigError
from typed_config import parse_section
from inference_server.models.backend import ModelSpec
from inference_server.lifecycle.repository import (
    GoldenSet,
    ModelRepository,
    RepositoryError,
    VersionPolicy,
    ranking_metrics,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def write(root: Path, version: str, text: str) -> None:
    path = root / "minilm" / version
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.yaml").write_text(text)


def test_shipped_repository_has_base_and_degraded_versions():
    repo = ModelRepository(REPO_ROOT / "models", "unused")
    assert repo.versions("minilm")[:2] == ["1", "2"]
    base = repo.entry("minilm", "1")
    assert base.config.weights is None and not base.config.degrade.active
    degraded = repo.entry("minilm", "2")
    assert degraded.config.degrade.active and degraded.config.degrade.embedding_noise > 0


@pytest.mark.parametrize("text, key", [
    ("backend: onnx\n", "backend"),
    ("max_seq_length: many\n", "max_seq_length"),
    ("batching: {max_batch_size: x}\n", "batching.max_batch_size"),
    ("degrade: {embedding_noise: -1}\n", "degrade.embedding_noise"),
    ("colour: red\n", "colour"),
    ("- a list\n", "mapping"),
])
def test_model_yaml_errors_name_the_key(tmp_path, text, key):
    write(tmp_path, "1", text)
    with pytest.raises(RepositoryError, match=key):
        ModelRepository(tmp_path, tmp_path / "state").entry("minilm", "1")


def test_version_policy(tmp_path):
    for v in ("1", "2", "10", "3"):
        write(tmp_path, v, "backend: torch\n")
    (tmp_path / "minilm" / "notaversion").mkdir()
    (tmp_path / "minilm" / "7").mkdir()                         # no model.yaml: not a version
    repo = ModelRepository(tmp_path, tmp_path / "state")
    assert repo.versions("minilm") == ["1", "2", "3", "10"]
    assert repo.select("minilm", VersionPolicy(kind="latest", num_versions=2)) == ["3", "10"]
    assert repo.select("minilm", VersionPolicy(kind="all")) == ["1", "2", "3", "10"]
    assert repo.select("minilm", VersionPolicy(kind="specific", versions=["2"])) == ["2"]
    with pytest.raises(RepositoryError, match="9"):
        repo.select("minilm", VersionPolicy(kind="specific", versions=["9"]))
    with pytest.raises(ConfigError, match="model_repository.version_policy.num_versions"):
        parse_section(VersionPolicy, {"kind": "latest", "num_versions": 0}, "model_repository.version_policy")
    with pytest.raises(ConfigError, match=r"model_repository.version_policy.versions\[1\]"):
        parse_section(VersionPolicy, {"versions": ["1", "x"]}, "model_repository.version_policy")


def test_spec_and_batching_resolution(tmp_path):
    write(tmp_path, "4", "weights: w\ndtype: float32\ndevice: cpu\nbatching: {max_batch_size: 8}\n")
    (tmp_path / "minilm" / "4" / "w").mkdir()
    entry = ModelRepository(tmp_path, tmp_path / "state").entry("minilm", "4")
    spec = entry.model_spec(ModelSpec(device="auto", num_threads=2, torch_graph="eager"), tmp_path / "state")
    assert (spec.name, spec.version, spec.dtype, spec.device, spec.num_threads) == ("minilm", "4", "float32", "cpu", 2)
    assert spec.torch_graph == "eager"   # the server's `model.torch_graph` applies to repository versions
    assert spec.weights == str((tmp_path / "minilm" / "4" / "w").resolve())
    merged = entry.config.batching.apply(BatchingConfig(max_batch_size=32, max_queue_size=100))
    assert (merged.max_batch_size, merged.max_queue_size) == (8, 100)


def test_separate_tokenizer_dir_is_merged_with_symlinks(tmp_path):
    weights, tok = tmp_path / "weights", tmp_path / "tok"
    weights.mkdir(), tok.mkdir()
    (weights / "config.json").write_text("{}")
    (weights / "model.safetensors").write_bytes(b"x")
    (weights / "tokenizer.json").write_text("old")
    (tok / "tokenizer.json").write_text("new")
    write(tmp_path, "1", f"weights: {weights}\ntokenizer: {tok}\n")
    spec = ModelRepository(tmp_path, tmp_path / "state").entry("minilm", "1").model_spec(ModelSpec(), tmp_path / "state")
    merged = Path(spec.weights)
    assert (merged / "tokenizer.json").read_text() == "new"
    assert (merged / "model.safetensors").resolve() == (weights / "model.safetensors").resolve()


def test_artifacts_round_trip_keyed_by_catalog(tmp_path):
    repo = ModelRepository(tmp_path, tmp_path / "state")
    catalog = Catalog("tiny", [Product("a", "red drill"), Product("b", "blue saw")])
    golden = GoldenSet(["drill", "saw"], np.eye(2, 4, dtype=np.float32), [["a", "b"], ["b", "a"]],
                       np.array([[0.9, 0.1], [0.8, 0.2]], dtype=np.float32))
    drift = {"top1_score": np.array([0.9, 0.8]), "score_spread": np.array([0.8, 0.6]), "query_tokens": np.array([3, 3])}
    written = repo.write_artifacts("minilm", "1", catalog, golden, drift, {"mrr": 1.0}, model_fingerprint="abc")
    loaded = repo.load_artifacts("minilm", "1", catalog)
    assert loaded.path == written.path and str(loaded.path).startswith(str(tmp_path / "state"))
    assert loaded.golden.queries == ["drill", "saw"] and loaded.golden.topk_ids == [["a", "b"], ["b", "a"]]
    np.testing.assert_array_equal(loaded.golden.embeddings, golden.embeddings)
    assert loaded.manifest["model_fingerprint"] == "abc" and loaded.evaluation == {"mrr": 1.0}
    other = Catalog("tiny", [Product("a", "red drill")])
    assert repo.load_artifacts("minilm", "1", other) is None      # another catalog: not registered


def test_ranking_metrics():
    ndcg, rr = ranking_metrics(["x", "a", "b"], {"a": 3.0, "b": 1.0}, 3)
    ideal = 3.0 + 1.0 / np.log2(3)
    assert ndcg == pytest.approx((3.0 / np.log2(3) + 1.0 / np.log2(4)) / ideal)
    assert rr == 0.5


def test_cli_help(capsys):
    out = subprocess.run([sys.executable, "-m", "inference_server.lifecycle.repository", "--help"], capture_output=True,
                         text=True, cwd=REPO_ROOT, timeout=60)
    assert out.returncode == 0 and "register" in out.stdout and "list" in out.stdout, out.stderr
    from inference_server.lifecycle.registration import main as registration_main
    from inference_server.lifecycle.repository import main

    for cli, args in ((main, ["list", "--help"]), (registration_main, ["register", "--help"]),
                      (registration_main, ["verify", "--help"])):
        with pytest.raises(SystemExit) as done:
            cli(args)
        assert done.value.code == 0
        assert "usage:" in capsys.readouterr().out
