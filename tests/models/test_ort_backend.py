"""The onnxruntime backend: export cached once, float32 faithful, int8 refused by the parity gate."""

from __future__ import annotations

import numpy as np
import pytest

from inference_server.models import BackendUnavailable, ModelSpec, create_backend
from inference_server.models.parity import ParityFailed, enforce_parity, synthetic_sample

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

TEXTS = ["cordless drill", "DEWALT 20-Volt MAX Lithium-Ion Cordless Drill/Driver Kit", "white queen sheets", ""]


@pytest.fixture(scope="module")
def ort_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("models-cache")


@pytest.fixture(scope="module")
def ort_fp32(ort_cache):
    backend = create_backend(ModelSpec(backend="onnxruntime", device="cpu", cache_dir=str(ort_cache)))
    yield backend
    backend.close()


def test_float32_matches_the_reference(ort_fp32, encoder_backend):
    assert (ort_fp32.backend_name, ort_fp32.device, ort_fp32.dtype) == ("onnxruntime", "cpu", "float32")
    np.testing.assert_allclose(ort_fp32.encode(TEXTS), encoder_backend.encode(TEXTS), atol=1e-4)
    tokens = ort_fp32.tokenize(TEXTS)
    np.testing.assert_allclose(ort_fp32.encode_tokens(tokens.select([2, 0])), ort_fp32.encode([TEXTS[2], TEXTS[0]]),
                               atol=1e-6)
    assert ort_fp32.fingerprint() != encoder_backend.fingerprint()


def test_export_is_cached_and_threads_follow_instances(ort_fp32, ort_cache):
    exports = list((ort_cache / "onnx").glob("*/encoder.onnx"))
    assert len(exports) == 2   # the float32 export and its optimised copy
    again = create_backend(ModelSpec(backend="onnxruntime", device="cpu", cache_dir=str(ort_cache)))
    try:
        assert again.model_path == ort_fp32.model_path
        again.configure_parallelism(2)
        assert again.threads >= 1
    finally:
        again.close()


def test_int8_is_refused_by_the_gate(ort_cache):
    int8 = create_backend(ModelSpec(backend="onnxruntime", device="cpu", quantization="int8",
                                    cache_dir=str(ort_cache)))
    try:
        assert int8.dtype == "int8"
        with pytest.raises(ParityFailed, match="cosine"):
            enforce_parity(int8, sample=synthetic_sample(n_queries=30, num_products=120), cache_dir=ort_cache)
    finally:
        int8.close()


def test_unsupported_precisions_are_unavailable():
    with pytest.raises(BackendUnavailable, match="bfloat16"):
        create_backend(ModelSpec(backend="onnxruntime", device="cpu", dtype="bfloat16"))
    with pytest.raises(BackendUnavailable, match="GPU"):
        create_backend(ModelSpec(backend="onnxruntime", device="cuda"))
