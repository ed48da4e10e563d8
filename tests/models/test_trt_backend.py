"""The TensorRT backend at its boundary (no GPU needed): profiles, engine cache keys, cache reuse and
invalidation, the builder's calls into a mocked `tensorrt`, and clean refusals without TensorRT/GPU."""

from __future__ import annotations

import sys
import types
from unittest import mock

import pytest

from inference_server.models import BackendUnavailable, ModelSpec, create_backend
from inference_server.models.trt_backend import (
    EngineCache,
    EngineProfile,
    build_engine,
    engine_cache_key,
    engine_precision,
    select_profile,
)


def test_profile_covers_the_batcher_and_the_sequence_limit():
    profile = select_profile(ModelSpec(max_seq_length=128, engine_max_batch_size=256, engine_opt_batch_size=64))
    assert profile.shapes() == ((1, 1), (64, 32), (256, 128))
    assert profile.covers(256, 128) and profile.covers(1, 1) and not profile.covers(257, 10)
    short = select_profile(ModelSpec(max_seq_length=16, engine_max_batch_size=8, engine_opt_batch_size=64))
    assert short.shapes() == ((1, 1), (8, 16), (8, 16))   # opt clamped into [min, max]
    with pytest.raises(ValueError):
        EngineProfile(1, 8, 4, 1, 1, 1)


def test_registry_rejects_inconsistent_engine_batch_sizes():
    with pytest.raises(ValueError, match="engine"):
        create_backend(ModelSpec(backend="tensorrt", engine_max_batch_size=8, engine_opt_batch_size=16))


@pytest.mark.parametrize("dtype, quantization, expected", [
    ("auto", "none", "fp16"), ("float16", "none", "fp16"), ("bfloat16", "none", "bf16"),
    ("float32", "none", "fp32"), ("auto", "int8", "int8"), ("auto", "fp8", "fp8")])
def test_precision(dtype, quantization, expected):
    assert engine_precision(ModelSpec(dtype=dtype, quantization=quantization)) == expected


def test_cache_key_changes_with_every_component():
    profile = select_profile(ModelSpec())
    base = engine_cache_key("fp-a", "10.9.0", "NVIDIA H200", profile, "fp16")
    assert base == engine_cache_key("fp-a", "10.9.0", "NVIDIA H200", profile, "fp16")
    others = {
        engine_cache_key("fp-b", "10.9.0", "NVIDIA H200", profile, "fp16"),
        engine_cache_key("fp-a", "10.10.0", "NVIDIA H200", profile, "fp16"),
        engine_cache_key("fp-a", "10.9.0", "NVIDIA A100", profile, "fp16"),
        engine_cache_key("fp-a", "10.9.0", "NVIDIA H200", select_profile(ModelSpec(engine_max_batch_size=128)), "fp16"),
        engine_cache_key("fp-a", "10.9.0", "NVIDIA H200", profile, "bf16"),
    }
    assert base not in others and len(others) == 5


def test_engine_cache_reuse_and_invalidation(tmp_path):
    cache = EngineCache(tmp_path)
    builds = []

    def build(tag):
        def run():
            builds.append(tag)
            return f"engine-{tag}".encode()
        return run

    profile = select_profile(ModelSpec())
    key = engine_cache_key("fp", "10.9", "H200", profile, "fp16")
    blob, reused = cache.get_or_build(key, build("first"), {"gpu": "H200"})
    assert (blob, reused) == (b"engine-first", False)
    blob, reused = cache.get_or_build(key, build("second"), {"gpu": "H200"})
    assert (blob, reused) == (b"engine-first", True) and builds == ["first"]
    # Another GPU (or TensorRT version, profile, precision, model): another key, another engine.
    other = engine_cache_key("fp", "10.9", "A100", profile, "fp16")
    assert cache.get_or_build(other, build("a100"), {})[1] is False and builds == ["first", "a100"]
    # A metadata file that names another key (a truncated-key collision) is not trusted.
    cache.meta_path(key).write_text('{"key": "something else"}')
    assert cache.load(key) is None
    assert cache.get_or_build(key, build("rebuilt"), {})[0] == b"engine-rebuilt"
    cache.invalidate(key)
    assert cache.load(key) is None and not cache.plan_path(key).exists()


def _fake_tensorrt():
    trt = mock.MagicMock(name="tensorrt")
    trt.__version__ = "10.9.0"
    builder = trt.Builder.return_value
    builder.build_serialized_network.return_value = b"serialized-engine"
    trt.OnnxParser.return_value.parse_from_file.return_value = True
    return trt, builder


def test_build_engine_sets_profile_and_precision(tmp_path):
    trt, builder = _fake_tensorrt()
    profile = select_profile(ModelSpec())
    assert build_engine(trt, tmp_path / "encoder.onnx", profile, "fp16") == b"serialized-engine"
    opt = builder.create_optimization_profile.return_value
    assert opt.set_shape.call_args_list == [
        mock.call("input_ids", (1, 1), (64, 32), (256, 128)),
        mock.call("attention_mask", (1, 1), (64, 32), (256, 128)),
    ]
    config = builder.create_builder_config.return_value
    config.set_flag.assert_called_once_with(trt.BuilderFlag.FP16)
    config.add_optimization_profile.assert_called_once_with(opt)


def test_build_engine_failures_are_backend_unavailable(tmp_path):
    trt, builder = _fake_tensorrt()
    trt.OnnxParser.return_value.parse_from_file.return_value = False
    trt.OnnxParser.return_value.num_errors = 0
    with pytest.raises(BackendUnavailable, match="cannot parse"):
        build_engine(trt, tmp_path / "encoder.onnx", select_profile(ModelSpec()), "fp16")
    trt, builder = _fake_tensorrt()
    builder.build_serialized_network.return_value = None
    with pytest.raises(BackendUnavailable, match="failed to build"):
        build_engine(trt, tmp_path / "encoder.onnx", select_profile(ModelSpec()), "int8")


def test_backend_refuses_cpu_device():
    with pytest.raises(BackendUnavailable, match="GPU"):
        create_backend(ModelSpec(backend="tensorrt", device="cpu"))


def test_backend_with_tensorrt_but_no_gpu_is_unavailable(monkeypatch):
    import torch

    trt, _ = _fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailable, match="CUDA GPU"):
        create_backend(ModelSpec(backend="tensorrt"))


def test_module_imports_without_tensorrt(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    import importlib

    import inference_server.models.trt_backend as trt_backend

    assert isinstance(importlib.reload(trt_backend), types.ModuleType)


def _has_tensorrt_gpu() -> bool:
    try:
        import tensorrt  # noqa: F401
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _has_tensorrt_gpu(), reason="needs an NVIDIA GPU with TensorRT")
def test_real_engine_passes_the_gate_and_is_reused(tmp_path):
    from inference_server.models.parity import enforce_parity

    spec = ModelSpec(backend="tensorrt", cache_dir=str(tmp_path), engine_max_batch_size=64, engine_opt_batch_size=16)
    first = create_backend(spec)
    try:
        assert not first.engine_reused and first.dtype == "float16"
        report = enforce_parity(first)
        assert report.passed and report.min_cosine >= 0.999
    finally:
        first.close()
    second = create_backend(spec)
    try:
        assert second.engine_reused
        assert second.encode(["oak"] * 100).shape == (100, 384)   # more than the profile's max batch: chunked
    finally:
        second.close()
