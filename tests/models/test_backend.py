"""The PyTorch encoder backend on the real all-MiniLM-L6-v2 weights (CPU, float32)."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch

from inference_server.models import BackendUnavailable, ModelSpec, create_backend, resolve_weights_dir
from inference_server.models.fingerprint import model_fingerprint

DRILL = "DEWALT 20-Volt MAX Lithium-Ion Cordless Drill/Driver Kit"
SHEETS = "Queen Size 400 Thread Count Cotton Sheet Set in White"


def test_reports_what_is_loaded(encoder_backend):
    assert encoder_backend.backend_name == "torch"
    assert encoder_backend.device == "cpu"
    assert encoder_backend.dtype == "float32"
    assert encoder_backend.dim == 384
    described = encoder_backend.describe()
    assert described["fingerprint"] == encoder_backend.fingerprint()
    assert described["max_seq_length"] == 128


def test_encode_returns_unit_float32_rows(encoder_backend):
    vectors = encoder_backend.encode(["cordless drill", DRILL, SHEETS])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_encode_empty_batch(encoder_backend):
    vectors = encoder_backend.encode([])
    assert vectors.shape == (0, 384) and vectors.dtype == np.float32


def test_query_is_closer_to_matching_title(encoder_backend):
    query, drill, sheets = encoder_backend.encode(["cordless drill", DRILL, SHEETS])
    assert float(query @ drill) > float(query @ sheets) + 0.2
    query, drill, sheets = encoder_backend.encode(["white queen sheets", DRILL, SHEETS])
    assert float(query @ sheets) > float(query @ drill) + 0.2


def test_deterministic_and_independent_of_batch_padding(encoder_backend):
    texts = ["oak", "a much longer product title that forces padding of the short text in the batch"]
    first = encoder_backend.encode(texts)
    np.testing.assert_array_equal(first, encoder_backend.encode(texts))
    alone = encoder_backend.encode(texts[:1])
    # Mean pooling must ignore the padding the long neighbour adds to the short text.
    np.testing.assert_allclose(alone[0], first[0], atol=1e-5)


def test_token_lengths_count_special_tokens_and_cap(encoder_backend):
    lengths = encoder_backend.token_lengths(["hello", "hello world", "word " * 400, ""])
    assert lengths[0] == 3  # [CLS] hello [SEP]
    assert lengths[1] == 4
    assert lengths[2] == 128  # capped at max_seq_length
    assert lengths[3] == 2
    assert encoder_backend.token_lengths([]) == []


def test_fingerprint_is_stable_hex(encoder_backend):
    value = encoder_backend.fingerprint()
    assert re.fullmatch(r"[0-9a-f]{64}", value)
    assert encoder_backend.fingerprint() == value


def test_fingerprint_depends_on_settings_and_files(encoder_backend, tmp_path):
    source = resolve_weights_dir(ModelSpec())
    settings = {"pooling": "mean", "normalize": "l2", "max_seq_length": 128, "dtype": "float32"}
    assert model_fingerprint(source, settings) == encoder_backend.fingerprint()
    assert model_fingerprint(source, {**settings, "max_seq_length": 64}) != encoder_backend.fingerprint()
    assert model_fingerprint(source, {**settings, "dtype": "bfloat16"}) != encoder_backend.fingerprint()

    # A copy of the model directory (weights linked) fingerprints the same; a config edit does not.
    for item in source.iterdir():
        if item.is_file():
            (tmp_path / item.name).symlink_to(item)
    assert model_fingerprint(tmp_path, settings) == encoder_backend.fingerprint()
    config = json.loads((source / "config.json").read_text())
    (tmp_path / "config.json").unlink()
    (tmp_path / "config.json").write_text(json.dumps(config, indent=4))  # formatting only
    assert model_fingerprint(tmp_path, settings) == encoder_backend.fingerprint()
    config["layer_norm_eps"] = 1e-6
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert model_fingerprint(tmp_path, settings) != encoder_backend.fingerprint()


def test_warmup_reports_seconds(encoder_backend):
    assert encoder_backend.warmup((1, 2)) > 0
    with pytest.raises(ValueError):
        encoder_backend.warmup((0,))


def test_tensorrt_without_tensorrt_or_gpu_is_unavailable_with_instructions(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)   # import fails as on a machine without TensorRT
    with pytest.raises(BackendUnavailable, match="TensorRT"):
        create_backend(ModelSpec(backend="tensorrt"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU error")
def test_cuda_without_gpu_is_unavailable():
    with pytest.raises(BackendUnavailable, match="cuda"):
        create_backend(ModelSpec(device="cuda"))


def test_half_precision_on_cpu_is_unavailable():
    with pytest.raises(BackendUnavailable, match="float16"):
        create_backend(ModelSpec(device="cpu", dtype="float16"))


@pytest.mark.parametrize("field, value", [("max_seq_length", 1), ("max_seq_length", 4096), ("num_threads", 0)])
def test_bad_spec_values_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        create_backend(ModelSpec(device="cpu", **{field: value}))


def test_missing_weights_directory(tmp_path):
    with pytest.raises(BackendUnavailable, match="does not exist"):
        create_backend(ModelSpec(weights=str(tmp_path / "nope")))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU")
def test_cuda_half_precision_matches_cpu(encoder_backend):
    gpu = create_backend(ModelSpec(device="cuda"))
    try:
        assert gpu.device.startswith("cuda") and gpu.dtype in ("bfloat16", "float16")
        texts = ["cordless drill", DRILL, SHEETS]
        cosine = np.sum(gpu.encode(texts) * encoder_backend.encode(texts), axis=1)
        assert (cosine > 0.99).all()
    finally:
        gpu.close()


def test_loading_a_version_does_not_retune_another_versions_threads():
    """torch's thread count is process-wide: each backend applies its own before each of its passes."""
    import torch

    before = torch.get_num_threads()
    v1 = create_backend(ModelSpec(version="1", device="cpu", num_threads=1))
    v2 = create_backend(ModelSpec(version="2", device="cpu", num_threads=2))
    try:
        assert torch.get_num_threads() == before          # loading changed nothing
        v1.encode(["cordless drill"])
        assert torch.get_num_threads() == 1
        v2.encode(["cordless drill"])
        assert torch.get_num_threads() == 2
        v1.encode(["cordless drill"])
        assert torch.get_num_threads() == 1 and v1.threads == 1 and v2.threads == 2
    finally:
        v1.close()
        v2.close()
        torch.set_num_threads(before)


def test_model_threads_leave_a_core_to_the_event_loop(monkeypatch):
    from inference_server.models import backend as backend_module

    for cores, instances, threads in ((1, 1, 1), (2, 1, 1), (2, 2, 1), (8, 1, 7), (8, 2, 4), (8, 8, 1), (16, 8, 2),
                                      (16, 4, 4), (4, 4, 1)):
        monkeypatch.setattr(backend_module, "usable_cpu_count", lambda: cores)
        assert backend_module.model_threads(instances) == threads, (cores, instances)


def test_cpu_serving_runs_a_frozen_torchscript_graph_that_matches_eager(encoder_backend):
    """auto on CPU: passes run as one traced, frozen graph; it agrees with the eager module on batch
    sizes and lengths other than the traced ones, padded or not."""
    assert encoder_backend.graph == "torchscript" and encoder_backend.describe()["graph"] == "torchscript"
    eager = create_backend(ModelSpec(device="cpu", dtype="float32", torch_graph="eager"))
    try:
        assert eager.graph == "eager" and eager._forward is eager.module
        texts = ["oak", DRILL, SHEETS, "a much longer product title " * 6, "rug"]
        for batch in (texts[:1], texts, texts * 7):
            np.testing.assert_allclose(encoder_backend.encode(batch), eager.encode(batch), atol=1e-5)
    finally:
        eager.close()


def test_a_graph_that_cannot_be_traced_is_served_eagerly_or_refused(monkeypatch, caplog):
    from inference_server.models import torch_backend

    def broken_trace(*args, **kwargs):
        raise RuntimeError("unsupported operator")

    monkeypatch.setattr(torch_backend.torch.jit, "trace", broken_trace)
    fallback = create_backend(ModelSpec(device="cpu", dtype="float32"))          # auto: eager, with a warning
    try:
        assert fallback.graph == "eager" and fallback.encode(["oak"]).shape == (1, 384)
        assert "tracing it to a TorchScript graph failed: unsupported operator" in caplog.text
    finally:
        fallback.close()
    with pytest.raises(BackendUnavailable, match="cannot trace .* unsupported operator"):
        create_backend(ModelSpec(device="cpu", dtype="float32", torch_graph="torchscript"))


def test_a_trace_that_disagrees_with_the_module_is_not_served(monkeypatch):
    """The trace is checked on other shapes: a graph with a shape baked in is refused, not served."""
    from inference_server.models import torch_backend

    real_trace = torch_backend.torch.jit.trace

    def trace_that_ignores_the_mask(module, example, **kwargs):
        traced = real_trace(module, example, **kwargs)

        class Wrong(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.inner = traced

            def forward(self, input_ids, attention_mask):
                vectors, ids, mask = self.inner(input_ids, torch.ones_like(attention_mask))
                return vectors, ids, mask

        return torch.jit.script(Wrong().eval())

    monkeypatch.setattr(torch_backend.torch.jit, "trace", trace_that_ignores_the_mask)
    with pytest.raises(BackendUnavailable, match="traced graph disagrees with the module"):
        create_backend(ModelSpec(device="cpu", dtype="float32", torch_graph="torchscript"))


def test_bad_torch_graph_value_is_rejected():
    with pytest.raises(ValueError, match="torch_graph"):
        ModelSpec(torch_graph="compiled")
