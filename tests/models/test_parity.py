"""The parity gate: faithful backends pass, degraded ones are refused with the measured figures."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from inference_server.models import BackendUnavailable, ModelSpec, create_backend
from inference_server.models.backend import EncoderBackend
from inference_server.models.parity import (
    MIN_COSINE,
    ParityFailed,
    check_parity,
    enforce_parity,
    homedepot_sample,
    measure_parity,
    reference_vectors,
    synthetic_sample,
)


@functools.lru_cache(maxsize=1)
def small_sample():
    return synthetic_sample(n_queries=30, num_products=120)


class NoisyBackend(EncoderBackend):
    """The real model's embeddings plus seeded noise, posing as a non-reference backend on real weights."""

    backend_name = "noisy"

    def __init__(self, inner: EncoderBackend, noise: float) -> None:
        self.inner, self.noise = inner, noise
        self.spec, self.device, self.dtype, self.dim = inner.spec, "cpu", "float32", inner.dim
        self.weights_dir = inner.weights_dir

    def token_lengths(self, texts):
        return self.inner.token_lengths(texts)

    def encode(self, texts):
        vectors = self.inner.encode(texts)
        rng = np.random.default_rng(0)
        vectors = vectors + rng.standard_normal(vectors.shape).astype(np.float32) * self.noise
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    def fingerprint(self):
        return f"noisy-{self.noise}"


def test_measure_accepts_identical_and_refuses_perturbed_embeddings():
    sample = small_sample()
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((len(sample.texts), 16)).astype(np.float32)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    same = measure_parity(ref.copy(), ref, sample)
    assert same.passed and same.min_cosine == pytest.approx(1.0, abs=1e-6) and same.ndcg_delta == pytest.approx(0.0)
    noisy = measure_parity(ref + rng.standard_normal(ref.shape).astype(np.float32) * 0.3, ref, sample)
    assert not noisy.passed and noisy.min_cosine < MIN_COSINE
    assert any("cosine" in reason for reason in noisy.reasons)
    nan = ref.copy()
    nan[0] = np.nan
    assert "non-finite embeddings" in measure_parity(nan, ref, sample).reasons


def test_reference_is_not_measured(encoder_backend):
    report = check_parity(encoder_backend, sample=small_sample())
    assert report.passed and report.skipped


def test_faithful_backend_passes(encoder_backend, tmp_path):
    bf16 = create_backend(ModelSpec(device="cpu", dtype="bfloat16", num_threads=1))
    try:
        report = enforce_parity(bf16, sample=small_sample(), cache_dir=tmp_path)
    finally:
        bf16.close()
    assert report.passed and not report.skipped
    assert report.min_cosine >= MIN_COSINE and report.ndcg_delta >= -0.002
    assert list((tmp_path / "parity").glob("*.npy")), "reference embeddings are cached on disk"


def test_degraded_backend_is_refused_with_figures(encoder_backend, tmp_path):
    noisy = NoisyBackend(encoder_backend, noise=0.05)
    with pytest.raises(ParityFailed) as caught:
        enforce_parity(noisy, sample=small_sample(), cache_dir=tmp_path)
    assert isinstance(caught.value, BackendUnavailable)
    report = caught.value.report
    assert not report.passed and report.min_cosine < MIN_COSINE
    assert "cosine min" in str(caught.value) and "NDCG@10" in str(caught.value)


def test_gate_can_be_turned_off(encoder_backend):
    noisy = NoisyBackend(encoder_backend, noise=0.05)
    noisy.spec = ModelSpec(device="cpu", dtype="float32", parity_gate=False)
    assert enforce_parity(noisy, sample=small_sample()).skipped == "model.parity_gate is false"


def test_reference_cache_is_reused(encoder_backend, tmp_path):
    calls = []

    def factory(spec):
        calls.append(spec)
        assert spec.backend == "torch" and spec.dtype == "float32" and not spec.parity_gate
        return encoder_backend.__class__(spec)

    sample = small_sample()
    first = reference_vectors(encoder_backend.spec, encoder_backend.weights_dir, sample, cache_dir=tmp_path,
                              factory=factory)
    second = reference_vectors(encoder_backend.spec, encoder_backend.weights_dir, sample, cache_dir=tmp_path,
                               factory=factory)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first[:3], encoder_backend.encode(sample.texts[:3]), atol=1e-5)


def test_homedepot_sample_is_the_documented_dev_split(tmp_path):
    import hashlib

    rows = ["id,product_uid,product_title,search_term,relevance"]
    terms = [f"query {i}" for i in range(60)]
    for i, term in enumerate(terms):
        rows.append(f"{i},{100 + i},Title {i},{term},{1 + (i % 3)}")
        rows.append(f"{i + 1000},{100 + i + 1},Title {i + 1},{term.upper()} ,3")
    (tmp_path / "train.csv").write_text("\n".join(rows) + "\n", encoding="latin-1")
    sample = homedepot_sample(tmp_path, n_queries=5)
    dev = sorted((t for t in terms if int(hashlib.md5(t.encode()).hexdigest(), 16) % 10 == 1),
                 key=lambda t: int(hashlib.md5(t.encode()).hexdigest(), 16))[:5]
    assert [q.lower() for q in sample.queries] == dev
    assert all(len(c) == 2 for c in sample.candidates)   # "query i" and "QUERY I " are one key
    assert homedepot_sample(tmp_path / "absent") is None


@pytest.mark.skipif(not (Path(__file__).resolve().parents[3] / "shared/data/homedepot/train.csv").is_file(),
                    reason="Home Depot data (../shared) not present")
def test_homedepot_sample_is_fixed():
    sample = homedepot_sample()
    assert sample.name == "homedepot-dev-200q" and len(sample.queries) == 200
    assert sample.digest == homedepot_sample().digest
