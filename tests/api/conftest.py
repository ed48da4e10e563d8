"""Fixtures for the serving-core tests: one real MiniLM per session, apps built around it.

`shared_backend` loads all-MiniLM-L6-v2 once (CPU); `make_app` builds an app whose backend factory
hands out a non-closing view of it, optionally wrapped (gated/failing backends for batching and
error tests). The catalog is small and synthetic; its embeddings are cached once per session.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("INFERENCE_SERVER_USER_ID_SALT", "test-salt")

from inference_server.api.app import INITIAL_LOAD, create_app  # noqa: E402
from inference_server.config import parse_config  # noqa: E402
from inference_server.models.backend import EncoderBackend, ModelSpec  # noqa: E402
from inference_server.models.registry import create_backend  # noqa: E402
from inference_server.api.context import METRICS, SERVING_STATE  # noqa: E402


class DelegatingBackend(EncoderBackend):
    """Forwards to a shared backend; close() leaves the shared model alone."""

    def __init__(self, inner: EncoderBackend, spec: Optional[ModelSpec] = None) -> None:
        self.inner = inner
        self.spec = spec or inner.spec
        self.backend_name = inner.backend_name
        self.device = inner.device
        self.dtype = inner.dtype
        self.dim = inner.dim

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return self.inner.token_lengths(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.encode(texts)

    def fingerprint(self) -> str:
        return self.inner.fingerprint()

    def warmup(self, batch_sizes: Sequence[int] = (1, 8, 32)) -> float:
        return 0.0  # the shared model is warm already

    def close(self) -> None:
        pass


class GatedBackend(DelegatingBackend):
    """encode() blocks while the gate is closed, so tests control when the worker is busy."""

    def __init__(self, inner: EncoderBackend) -> None:
        super().__init__(inner)
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.calls: list[int] = []

    def arm(self) -> None:
        """Close the gate and forget earlier calls (index build, warm-up)."""
        self.gate.clear()
        self.entered.clear()
        self.calls.clear()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        self.entered.set()
        if not self.gate.wait(timeout=30):
            raise TimeoutError("test gate was never opened")
        return self.inner.encode(texts)


class FaultyBackend(DelegatingBackend):
    """Raises for texts containing 'EXPLODE'; returns NaN rows for texts containing 'NANNAN'."""

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if any("EXPLODE" in t for t in texts):
            raise RuntimeError("simulated CUDA error")
        out = self.inner.encode(texts)
        for i, t in enumerate(texts):
            if "NANNAN" in t:
                out[i] = np.nan
        return out


@pytest.fixture(scope="session")
def shared_backend() -> EncoderBackend:
    backend = create_backend(ModelSpec(device="cpu", num_threads=1))
    yield backend
    backend.close()


@pytest.fixture(scope="session")
def embedding_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("embeddings")


@pytest.fixture
def server_config(tmp_path, embedding_cache) -> Callable[..., object]:
    """Build a validated AppConfig for tests: `server_config(batching={...}, server={...})`."""

    def build(**sections) -> object:
        raw = {
            "server": {"request_timeout_ms": 20000},
            "catalog": {"source": "synthetic", "num_products": 300, "num_queries": 20,
                        "cache_dir": str(embedding_cache)},
            "request_log": {"path": str(tmp_path / "requests.jsonl")},
            # One model instance (also the default): tests that gate the worker reason about a
            # single batch at a time (test_model_instances_run_batches_concurrently covers several).
            "batching": {"instances": 1},
            "model_repository": {"state_dir": str(embedding_cache.parent / "model-repository")},
        }
        for name, values in sections.items():
            raw.setdefault(name, {}).update(values)
        return parse_config(raw)

    return build


@pytest.fixture
def make_client(aiohttp_client, shared_backend, server_config):
    from inference_server.lifecycle.registration import ensure_registered

    """Start an in-process app: `await make_client(wrap=GatedBackend, batching={...})` -> client.

    The client has `.app`, `.backend` (the wrapper in use) and the initial load has finished
    (unless wait_ready=False).
    """

    async def start(wrap: Callable[[EncoderBackend], EncoderBackend] = DelegatingBackend,
                    wait_ready: bool = True, backend_factory=None, **sections):
        config = server_config(**sections)
        holder: dict = {}
        # what `make register` does before a server starts: the server never registers what it checks
        ensure_registered(config, backend_factory=lambda spec: DelegatingBackend(shared_backend, spec))

        def factory(spec: ModelSpec) -> EncoderBackend:
            holder["backend"] = wrap(shared_backend)
            return holder["backend"]

        app = create_app(config, backend_factory=backend_factory or factory)
        client = await aiohttp_client(app)
        if wait_ready:
            await app[INITIAL_LOAD]["task"]
            assert app[SERVING_STATE].is_ready, app[SERVING_STATE].startup_error
        client.backend = holder.get("backend")
        client.metrics = app[METRICS]
        client.state = app[SERVING_STATE]
        return client

    return start


def sample_value(registry, name: str, labels: dict | None = None) -> float:
    """Current value of one sample (0.0 when absent)."""
    value = registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value
