"""Honest registration: the server refuses unregistered versions, tampered artefacts and tampered weights,
and serves a registered hybrid version through every endpoint."""
from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from inference_server.lifecycle.registration import register_version
from inference_server.lifecycle.repository import ModelRepository
from tests.lifecycle.conftest import SharedBackend


@pytest.fixture
def own_repo(tmp_path, lifecycle_dirs, shared_model):
    """A private copy of the test repository (versions 1, 2) plus versions this module adds."""
    root = tmp_path / "models"
    for version in ("1", "2"):
        shutil.copytree(lifecycle_dirs["root"] / "minilm" / version, root / "minilm" / version)
    return {"model_repository": {"root": str(root), "state_dir": str(tmp_path / "state")}}


async def _load(client, version: str, status: int = 200) -> dict:
    resp = await client.post(f"/v1/admin/models/minilm/versions/{version}/load", headers=client.auth)
    data = await resp.json()
    assert resp.status == status, data
    return data


async def test_unregistered_version_and_tampered_golden_set_are_refused(lifecycle_client, own_repo, lifecycle_config):
    root = own_repo["model_repository"]["root"]
    (root_path := Path(root) / "minilm" / "5").mkdir(parents=True)
    (root_path / "model.yaml").write_text("description: never registered\n")
    client = await lifecycle_client(**own_repo)
    data = await _load(client, "5", status=422)
    assert "registration" in data["error"]["message"] and "not registered" in data["error"]["message"]
    assert not any(client.lifecycle.repository.state_dir.glob("minilm/5/*")), "the server wrote artefacts"

    # version 2 is registered; change its golden set on disk -> refused, with the file named
    art_dir = client.lifecycle.repository.load_artifacts("minilm", "2", client.state.catalog).path
    with np.load(art_dir / "golden.npz") as g:
        golden = {k: g[k] for k in g.files}
    golden["embeddings"] = golden["embeddings"] * 0.5
    np.savez(art_dir / "golden.npz", **golden)
    data = await _load(client, "2", status=422)
    assert "golden.npz" in data["error"]["message"] and "sha256" in data["error"]["message"]
    models = {m["version"]: m for m in (await (await client.get("/v1/models")).json())["models"]}
    assert models["2"]["health"]["registration"]["ok"] is False


async def test_tampered_weights_are_refused(lifecycle_client, own_repo, lifecycle_config, shared_model):
    version_dir = Path(own_repo["model_repository"]["root"]) / "minilm" / "6"
    shutil.copytree(shared_model.weights_dir, version_dir / "weights",
                    ignore=shutil.ignore_patterns("*.bin", "*.onnx", "onnx", "openvino"))
    (version_dir / "model.yaml").write_text("weights: weights\ndescription: own copy of the base weights\n")
    config = lifecycle_config(**own_repo)
    register_version(config, ModelRepository.from_config(config.model_repository), "minilm", "6", progress=False)
    client = await lifecycle_client(**own_repo)
    assert (await _load(client, "6"))["health"]["registration"]["ok"]
    await client.post("/v1/admin/models/minilm/versions/6/unload", headers=client.auth)
    weights = version_dir / "weights" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-8:] = bytes(8)                                     # the last float values of the last tensor
    weights.write_bytes(bytes(raw))
    data = await _load(client, "6", status=422)
    assert "weights sha256" in data["error"]["message"]


async def test_registered_hybrid_version_serves_every_endpoint(lifecycle_client, own_repo, lifecycle_config, shared_model):
    version_dir = Path(own_repo["model_repository"]["root"]) / "minilm" / "7"
    version_dir.mkdir(parents=True)
    (version_dir / "model.yaml").write_text("retrieval: {mode: hybrid}\nparent: '1'\ndescription: base model, hybrid\n")
    config = lifecycle_config(**own_repo)
    lock = threading.Lock()
    art = register_version(config, ModelRepository.from_config(config.model_repository), "minilm", "7", progress=False,
                           backend_factory=lambda spec: SharedBackend(shared_model, lock, spec))
    weight = art.manifest["retrieval"]["lexical_weight"]
    assert 0.0 <= weight <= 1.0 and "fusion" in art.evaluation
    client = await lifecycle_client(**own_repo)
    await _load(client, "7")
    resp = await client.put("/v1/admin/models/minilm/traffic", json={"weights": {"7": 100}}, headers=client.auth)
    assert resp.status == 200
    product = client.state.catalog.products[3]
    search = await (await client.post("/v1/search", json={"query": product.title, "k": 5})).json()
    assert search["version"] == "7" and search["results"][0]["id"] == product.id
    assert all(0.0 <= r["score"] <= 1.0 + 1e-6 for r in search["results"])     # fused scores
    rank = await (await client.post("/v1/rank", json={"query": product.title, "items": [
        {"id": "x", "title": "completely unrelated words"}, {"id": product.id}]})).json()
    assert [r["id"] for r in rank["results"]][0] == product.id
    rec = await (await client.post("/v1/recommend", json={"history": [product.id], "k": 4})).json()
    assert len(rec["results"]) == 4 and product.id not in [r["id"] for r in rec["results"]]
    models = {m["version"]: m for m in (await (await client.get("/v1/models")).json())["models"]}
    assert models["7"]["retrieval"]["mode"] == "hybrid" and models["7"]["retrieval"]["lexical_weight"] == weight


async def test_hybrid_registration_with_other_lexical_rules_is_refused(lifecycle_client, own_repo, lifecycle_config,
                                                                       shared_model, monkeypatch):
    """A fusion weight chosen on DEV with other BM25 rules is not what the server would serve: re-register."""
    from inference_server.lifecycle import registration

    version_dir = Path(own_repo["model_repository"]["root"]) / "minilm" / "8"
    version_dir.mkdir(parents=True)
    (version_dir / "model.yaml").write_text("retrieval: {mode: hybrid}\nparent: '1'\ndescription: base model, hybrid\n")
    config = lifecycle_config(**own_repo)
    repo = ModelRepository.from_config(config.model_repository)
    lock = threading.Lock()
    art = register_version(config, repo, "minilm", "8", progress=False,
                           backend_factory=lambda spec: SharedBackend(shared_model, lock, spec))
    assert registration.stale_lexical_rules(art) is None
    monkeypatch.setattr(registration, "normaliser_fingerprint", lambda: "f" * 64)     # the rules changed since
    assert "register it again" in registration.stale_lexical_rules(art)
    client = await lifecycle_client(**own_repo)
    data = await _load(client, "8", status=422)
    assert "lexical rules" in data["error"]["message"] and "register it again" in data["error"]["message"]
    models = {m["version"]: m for m in (await (await client.get("/v1/models")).json())["models"]}
    assert models["1"]["health"]["registration"]["ok"]                               # dense versions unaffected
