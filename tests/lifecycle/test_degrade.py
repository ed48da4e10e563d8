"""The degraded-canary wrapper: deterministic per text, unit norm, and index derivation is exact."""
from __future__ import annotations

import hashlib
from typing import Sequence

import numpy as np

from inference_server.models.degrade import DegradeConfig, DegradedBackend, maybe_degrade
from inference_server.models.backend import EncoderBackend, ModelSpec


class HashBackend(EncoderBackend):
    """Unit vectors derived from the text's hash: a model-free stand-in for the inner encoder."""

    backend_name, device, dtype, dim = "hash", "cpu", "float32", 16

    def __init__(self) -> None:
        self.spec = ModelSpec()

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) + 2 for t in texts]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        for t in texts:
            rng = np.random.default_rng(int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "big"))
            v = rng.standard_normal(self.dim).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows)

    def fingerprint(self) -> str:
        return "hash"


def test_degraded_embeddings_are_deterministic_unit_and_different():
    inner = HashBackend()
    deg = maybe_degrade(inner, DegradeConfig(embedding_noise=2.0, seed=1))
    assert isinstance(deg, DegradedBackend) and deg.fingerprint() != inner.fingerprint()
    texts = ["red drill", "blue saw", "oak table"]
    a, b = deg.encode(texts), deg.encode(list(reversed(texts)))[::-1]
    np.testing.assert_allclose(a, b, atol=1e-6)                     # per text, not per batch position
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    cosine = np.einsum("ij,ij->i", a, inner.encode(texts))
    assert (cosine < 0.9).all()
    np.testing.assert_allclose(deg.perturb(inner.encode(texts), texts), a, atol=1e-6)
    assert maybe_degrade(inner, DegradeConfig()) is inner            # zero noise: the model itself
