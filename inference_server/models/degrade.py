"""A deliberately degraded encoder, for canary drills and tests of the rollback loop.

`model.yaml` may carry `degrade: {embedding_noise: 0.8, seed: 1}`: every embedding gets Gaussian noise
of expected norm `embedding_noise` added and is re-normalised. The noise is seeded by the text, so the
degraded model is deterministic (its golden set, recorded at registration, still matches: it is a
*healthy* bad model, exactly what a canary with worse rankings looks like) while its rankings, and so
its click-through rate, are measurably worse. Measured on the synthetic catalog (600 products, NDCG@10
of the clean model 0.85): noise 0.8 -> 0.80, 1.5 -> 0.53, 3.0 -> 0.12; the shipped canary uses 2.0.
"""
from __future__ import annotations

import hashlib
from typing import Annotated, Sequence

import numpy as np
from pydantic import Field

from typed_config import Section

from inference_server.models.backend import EncoderBackend

__all__ = ["DegradeConfig", "DegradedBackend", "maybe_degrade"]


class DegradeConfig(Section):
    """`degrade:` of a model.yaml; all zero means a normal model."""

    # expected L2 norm of the noise added to each unit embedding
    embedding_noise: Annotated[float, Field(ge=0.0, le=100.0)] = 0.0
    seed: int = 0

    @property
    def active(self) -> bool:
        return self.embedding_noise > 0.0


class DegradedBackend(EncoderBackend):
    """Wraps a backend and perturbs its embeddings deterministically (see module docstring)."""

    def __init__(self, inner: EncoderBackend, degrade: DegradeConfig) -> None:
        self.inner = inner
        self.degrade = degrade
        self.spec = inner.spec
        self.backend_name = inner.backend_name
        self.device = inner.device
        self.dtype = inner.dtype
        self.dim = inner.dim
        self._fingerprint = hashlib.sha256(
            f"{inner.fingerprint()}|degrade:noise={degrade.embedding_noise!r},seed={degrade.seed}".encode()
        ).hexdigest()

    @property
    def weights_dir(self):
        return getattr(self.inner, "weights_dir", None)

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return self.inner.token_lengths(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.perturb(np.array(self.inner.encode(texts), dtype=np.float32, copy=True), texts)

    def tokenize(self, texts: Sequence[str]):
        return self.inner.tokenize(texts)

    def encode_tokens(self, batch) -> np.ndarray:
        return self.perturb(np.array(self.inner.encode_tokens(batch), dtype=np.float32, copy=True), batch.texts)

    def configure_parallelism(self, instances: int) -> None:
        self.inner.configure_parallelism(instances)

    def perturb(self, vectors: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """Add each text's seeded noise to its row of the inner model's `vectors` (in place) and
        re-normalise; lets a catalog index be derived from the inner model's cached one."""
        scale = self.degrade.embedding_noise / np.sqrt(self.dim)
        for row, text in enumerate(texts):
            seed = hashlib.blake2b(f"{self.degrade.seed}\x00{text}".encode("utf-8", "surrogatepass"),
                                   digest_size=8).digest()
            rng = np.random.default_rng(int.from_bytes(seed, "big"))
            vectors[row] += rng.standard_normal(self.dim).astype(np.float32) * scale
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        np.divide(vectors, np.maximum(norms, 1e-12), out=vectors)
        return vectors

    def fingerprint(self) -> str:
        return self._fingerprint

    def close(self) -> None:
        self.inner.close()

    def describe(self) -> dict[str, object]:
        out = self.inner.describe()
        out["fingerprint"] = self._fingerprint
        out["degrade"] = {"embedding_noise": self.degrade.embedding_noise, "seed": self.degrade.seed}
        return out


def maybe_degrade(backend: EncoderBackend, degrade: DegradeConfig | None) -> EncoderBackend:
    return DegradedBackend(backend, degrade) if degrade is not None and degrade.active else backend
