"""Fixtures for the lifecycle tests: a real MiniLM shared per session, a model repository in a temp dir
(the shipped versions 1 and 2 plus broken ones), and apps built around them.

Versions without their own weights share one loaded MiniLM through `SharedBackend` (calls serialised
with a lock, since two versions' batch workers may call it at once); versions with their own weights
directory (the NaN-corrupted one) are loaded for real.
"""
from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Sequence

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("INFERENCE_SERVER_USER_ID_SALT", "test-salt")

from inference_server.api.app import INITIAL_LOAD, create_app  # noqa: E402
from inference_server.config import parse_config  # noqa: E402
from inference_server.api.context import LIFECYCLE  # noqa: E402
from inference_server.models.backend import EncoderBackend, ModelSpec  # noqa: E402
from inference_server.models.registry import create_backend  # noqa: E402
from inference_server.api.context import METRICS, SERVING_STATE  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "test-admin-token-0123456789"
ALERTS_TOKEN = "test-alerts-token-0123456789"
FEEDBACK_TOKEN = "test-feedback-token-0123456789"


class SharedBackend(EncoderBackend):
    """A per-version view of one loaded model; close() leaves the shared model alone."""

    def __init__(self, inner: EncoderBackend, lock: threading.Lock, spec: ModelSpec) -> None:
        self.inner = inner
        self._lock = lock
        self.spec = spec
        self.backend_name = inner.backend_name
        self.device = inner.device
        self.dtype = inner.dtype
        self.dim = inner.dim

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        with self._lock:
            return self.inner.token_lengths(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        with self._lock:
            return self.inner.encode(texts)

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def close(self) -> None:
        pass


@pytest.fixture(scope="session")
def shared_model() -> EncoderBackend:
    backend = create_backend(ModelSpec(device="cpu", num_threads=1))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def lifecycle_dirs(tmp_path_factory, shared_model) -> dict[str, Path]:
    """A model repository: shipped versions 1 (base) and 2 (degraded), 3 (NaN weights), 4 (golden mismatch)."""
    base = tmp_path_factory.mktemp("lifecycle")
    root = base / "models"
    for version in ("1", "2"):
        shutil.copytree(REPO_ROOT / "models" / "minilm" / version, root / "minilm" / version)
    # Version 3: a copy of the weights with NaN in one tensor.
    from safetensors.numpy import load_file, save_file

    src = Path(shared_model.weights_dir)
    weights = base / "nan-weights"
    weights.mkdir()
    for f in src.iterdir():
        if f.is_file() and f.suffix != ".safetensors":
            shutil.copy(f, weights / f.name)
    tensors = load_file(str(src / "model.safetensors"))
    name = next(n for n in sorted(tensors) if n.endswith("attention.output.dense.weight"))
    tensors[name] = tensors[name].copy()
    tensors[name][0, :4] = np.nan
    save_file(tensors, str(weights / "model.safetensors"))
    (root / "minilm" / "3").mkdir(parents=True)
    (root / "minilm" / "3" / "model.yaml").write_text(f"weights: {weights}\ndescription: NaN-corrupted weights\n")
    # Version 4: registered as the base model (artefacts copied by the test), served with changed outputs.
    (root / "minilm" / "4").mkdir(parents=True)
    (root / "minilm" / "4" / "model.yaml").write_text(
        "degrade: {embedding_noise: 2.0, seed: 2}\ndescription: outputs changed after registration\n")
    token = base / "admin_token"
    token.write_text(ADMIN_TOKEN + "\n")
    (base / "alerts_token").write_text(ALERTS_TOKEN + "\n")
    (base / "feedback_token").write_text(FEEDBACK_TOKEN + "\n")
    return {"root": root, "state": base / "state", "cache": base / "embeddings", "token": token, "base": base,
            "alerts_token": base / "alerts_token", "feedback_token": base / "feedback_token"}


@pytest.fixture
def lifecycle_config(tmp_path, lifecycle_dirs):
    def build(**sections):
        raw = {
            "server": {"request_timeout_ms": 30000},
            "model": {"device": "cpu", "num_threads": 1},
            "catalog": {"source": "synthetic", "num_products": 200, "num_queries": 30,
                        "cache_dir": str(lifecycle_dirs["cache"])},
            "batching": {"max_batch_size": 8, "max_queue_delay_ms": 2},
            "request_log": {"path": str(tmp_path / "requests.jsonl")},
            "model_repository": {"root": str(lifecycle_dirs["root"]), "state_dir": str(lifecycle_dirs["state"]),
                                 "golden_queries": 8, "drift_reference_queries": 30},
            "health": {"interval_s": 0},
            "feedback": {"sweep_interval_s": 0.05, "token_file": str(lifecycle_dirs["feedback_token"])},
            "drift": {"min_samples": 5, "window_size": 200},
            "admin": {"token_file": str(lifecycle_dirs["token"]),
                      "alerts_token_file": str(lifecycle_dirs["alerts_token"])},
        }
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        return parse_config(raw)

    return build


@pytest.fixture
def lifecycle_client(aiohttp_client, shared_model, lifecycle_config):
    """`await lifecycle_client(feedback={...})` -> a test client of a started app (version 1 ready)."""
    lock = threading.Lock()

    def factory(spec: ModelSpec) -> EncoderBackend:
        if spec.weights is None:
            return SharedBackend(shared_model, lock, spec)
        return create_backend(spec)

    async def start(**sections):
        config = lifecycle_config(**sections)
        register_shipped(config, factory)
        app = create_app(config, backend_factory=factory)
        client = await aiohttp_client(app)
        await app[INITIAL_LOAD]["task"]
        state = app[SERVING_STATE]
        assert state.is_ready, state.startup_error
        client.lifecycle = app[LIFECYCLE]
        client.state = state
        client.registry = app[METRICS].registry
        client.auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        client.alerts_auth = {"Authorization": f"Bearer {ALERTS_TOKEN}"}
        client.feedback_auth = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}
        return client

    return start


def register_shipped(config, factory, versions: Sequence[str] = ("1", "2")) -> None:
    """Register the shipped versions for the test catalog, as `make register` does before a server starts
    (the server never writes artefacts itself); already registered ones are kept."""
    from inference_server.catalog import load_catalog
    from inference_server.lifecycle.registration import register_version
    from inference_server.lifecycle.repository import ModelRepository

    repo = ModelRepository.from_config(config.model_repository)
    catalog = load_catalog(config.catalog).catalog
    for version in versions:
        if repo.load_artifacts(config.model.name, version, catalog) is None:
            register_version(config, repo, config.model.name, version, progress=False, backend_factory=factory)


def sample(registry, name: str, **labels) -> float:
    value = registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
