"""TensorRT implementation of `EncoderBackend` (NVIDIA GPU; FP16 by default, BF16/INT8/FP8 optional).

    ONNX export (onnx_export, shared with onnxruntime)  ->  TensorRT engine  ->  one enqueue per batch

* The engine is built from the exported encoder (pooling and L2 norm inside the graph) with one
  optimisation profile over batch size (1 .. `engine_max_batch_size`, optimum
  `engine_opt_batch_size`) and sequence length (1 .. `max_seq_length`, optimum 32 tokens: queries
  and product titles are short), see `select_profile`.
* Engines are cached under `<cache_dir>/tensorrt/`, keyed by (model fingerprint, TensorRT version,
  GPU name, profile, precision) (`engine_cache_key`); a key that changes in any part builds a new
  engine, and a cached file that fails to deserialise is rebuilt (`EngineCache`).
* I/O buffers are allocated once on the GPU at the profile's maximum shape and their addresses bound
  to the execution context at load; a batch is a host->device copy into them, `set_input_shape`,
  one `execute_async_v3` and a device->host copy of the rows used: one enqueue, no allocation.

`tensorrt` (and CUDA torch) are imported only when this backend is created; without them it raises
`BackendUnavailable` with the reason, which `backend: auto` takes as "not on this machine".
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from inference_server.models.backend import (
    BackendUnavailable,
    EncoderBackend,
    ModelSpec,
    default_cache_dir,
    resolve_weights_dir,
)
from inference_server.models.onnx_export import INPUT_NAMES, OUTPUT_NAME
from inference_server.models.tokenization import FastTokenizer, FastTokenizerMixin, Tokenized

__all__ = [
    "EngineCache",
    "EngineProfile",
    "TensorRTEncoderBackend",
    "build_engine",
    "engine_cache_key",
    "engine_precision",
    "import_tensorrt",
    "select_profile",
]

log = logging.getLogger(__name__)

OPT_SEQ_LENGTH = 32
WORKSPACE_BYTES = 4 << 30


@dataclass(frozen=True)
class EngineProfile:
    """One TensorRT optimisation profile over (batch, seq) for both int64 inputs."""

    min_batch: int
    opt_batch: int
    max_batch: int
    min_seq: int
    opt_seq: int
    max_seq: int

    def __post_init__(self) -> None:
        if not (1 <= self.min_batch <= self.opt_batch <= self.max_batch):
            raise ValueError(f"profile batch sizes must satisfy 1 <= min <= opt <= max: {self}")
        if not (1 <= self.min_seq <= self.opt_seq <= self.max_seq):
            raise ValueError(f"profile sequence lengths must satisfy 1 <= min <= opt <= max: {self}")

    def shapes(self) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
        """(min, opt, max) shapes of input_ids and attention_mask."""
        return ((self.min_batch, self.min_seq), (self.opt_batch, self.opt_seq), (self.max_batch, self.max_seq))

    def covers(self, batch: int, seq: int) -> bool:
        return self.min_batch <= batch <= self.max_batch and self.min_seq <= seq <= self.max_seq


def select_profile(spec: ModelSpec) -> EngineProfile:
    """The optimisation profile for a spec: batch 1..engine_max_batch_size, seq 1..max_seq_length."""
    max_batch = spec.engine_max_batch_size
    opt_batch = min(spec.engine_opt_batch_size, max_batch)
    max_seq = spec.max_seq_length
    return EngineProfile(1, opt_batch, max_batch, 1, min(OPT_SEQ_LENGTH, max_seq), max_seq)


def engine_precision(spec: ModelSpec) -> str:
    """fp16 (default), bf16, fp32, or int8/fp8 (with fp16 for the layers left in floating point)."""
    if spec.quantization in ("int8", "fp8"):
        return spec.quantization
    return {"auto": "fp16", "float16": "fp16", "bfloat16": "bf16", "float32": "fp32"}[spec.dtype]


_PRECISION_DTYPE = {"fp16": "float16", "bf16": "bfloat16", "fp32": "float32", "int8": "int8", "fp8": "fp8"}


def engine_cache_key(model_fingerprint: str, trt_version: str, gpu_name: str, profile: EngineProfile,
                     precision: str) -> str:
    """sha256 over everything an engine depends on; any change builds a new engine."""
    payload = json.dumps({"model": model_fingerprint, "tensorrt": trt_version, "gpu": gpu_name,
                          "profile": asdict(profile), "precision": precision}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class EngineCache:
    """Serialised engines on disk: `<key>.plan` plus `<key>.json` (what the key was made of)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def plan_path(self, key: str) -> Path:
        return self.root / f"{key[:32]}.plan"

    def meta_path(self, key: str) -> Path:
        return self.root / f"{key[:32]}.json"

    def load(self, key: str) -> Optional[bytes]:
        """The cached engine for `key`, or None (missing, or written for another key)."""
        plan, meta = self.plan_path(key), self.meta_path(key)
        if not plan.is_file() or not meta.is_file():
            return None
        try:
            if json.loads(meta.read_text(encoding="utf-8")).get("key") != key:
                return None
            return plan.read_bytes()
        except (OSError, ValueError):
            return None

    def store(self, key: str, blob: bytes, meta: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        plan = self.plan_path(key)
        tmp = plan.with_name(f".tmp-{os.getpid()}-{plan.name}")
        tmp.write_bytes(blob)
        tmp.replace(plan)
        self.meta_path(key).write_text(json.dumps({**meta, "key": key}, indent=2, sort_keys=True) + "\n",
                                       encoding="utf-8")
        return plan

    def invalidate(self, key: str) -> None:
        for path in (self.plan_path(key), self.meta_path(key)):
            path.unlink(missing_ok=True)

    def get_or_build(self, key: str, build: Callable[[], bytes], meta: dict[str, Any]) -> tuple[bytes, bool]:
        """(engine bytes, reused?): the cached engine for `key`, else `build()` stored under `key`."""
        blob = self.load(key)
        if blob is not None:
            return blob, True
        blob = build()
        self.store(key, blob, meta)
        return blob, False


def import_tensorrt():
    """The `tensorrt` module, or BackendUnavailable saying how to get it."""
    try:
        import tensorrt as trt  # noqa: PLC0415 - GPU-only dependency, imported on use
    except ImportError as exc:
        raise BackendUnavailable(
            "backend tensorrt needs the TensorRT Python package and an NVIDIA GPU "
            "(pip install '.[gpu]' on a CUDA machine); use backend: auto, torch or onnxruntime here"
        ) from exc
    return trt


def build_engine(trt, onnx_path: Path, profile: EngineProfile, precision: str, logger=None) -> bytes:
    """Parse the ONNX export and build a serialised engine with one optimisation profile."""
    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)   # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BackendUnavailable(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    flags = {"fp16": ["FP16"], "bf16": ["BF16"], "fp32": [], "int8": ["INT8", "FP16"], "fp8": ["FP8", "FP16"]}
    for flag in flags[precision]:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    opt_profile = builder.create_optimization_profile()
    low, opt, high = profile.shapes()
    for name in INPUT_NAMES:
        opt_profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendUnavailable(f"TensorRT failed to build an engine ({precision}, profile {profile})")
    return bytes(serialized)


class TensorRTEncoderBackend(FastTokenizerMixin, EncoderBackend):
    """A TensorRT engine with pre-allocated I/O (see module docstring)."""

    backend_name = "tensorrt"

    def __init__(self, spec: ModelSpec) -> None:
        if spec.device == "cpu":
            raise BackendUnavailable("backend tensorrt runs on an NVIDIA GPU, not device 'cpu'")
        trt = import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise BackendUnavailable(f"backend tensorrt needs a CUDA GPU; torch {torch.__version__} sees none")
        self.spec = spec
        self.weights_dir = resolve_weights_dir(spec)
        config = json.loads((self.weights_dir / "config.json").read_text(encoding="utf-8"))
        self.dim = int(config["hidden_size"])
        self.fast_tokenizer = FastTokenizer(self.weights_dir, spec.max_seq_length)
        self.precision = engine_precision(spec)
        self.dtype = _PRECISION_DTYPE[self.precision]
        self.profile = select_profile(spec)
        self._torch = torch
        self._device = torch.device("cuda", torch.cuda.current_device())
        self.device = f"cuda:{self._device.index}"
        self.gpu_name = torch.cuda.get_device_name(self._device)

        from inference_server.models.ort_backend import exported_onnx

        cache = default_cache_dir(spec)
        onnx_path, self._source_fingerprint = exported_onnx(spec, self.weights_dir, cache)
        self.engine_key = engine_cache_key(self._source_fingerprint, trt.__version__, self.gpu_name, self.profile,
                                           self.precision)
        self.engine_cache = EngineCache(cache / "tensorrt")
        meta = {"model_fingerprint": self._source_fingerprint, "tensorrt": trt.__version__, "gpu": self.gpu_name,
                "profile": asdict(self.profile), "precision": self.precision, "onnx": str(onnx_path)}
        logger = trt.Logger(trt.Logger.WARNING)
        build = lambda: build_engine(trt, onnx_path, self.profile, self.precision, logger)  # noqa: E731
        blob, self.engine_reused = self.engine_cache.get_or_build(self.engine_key, build, meta)
        runtime = trt.Runtime(logger)
        engine = runtime.deserialize_cuda_engine(blob)
        if engine is None and self.engine_reused:   # stale or corrupt cache file: rebuild once
            log.warning("cached TensorRT engine %s does not deserialise; rebuilding",
                        self.engine_cache.plan_path(self.engine_key))
            self.engine_cache.invalidate(self.engine_key)
            blob, self.engine_reused = self.engine_cache.get_or_build(self.engine_key, build, meta)
            engine = runtime.deserialize_cuda_engine(blob)
        if engine is None:
            raise BackendUnavailable("TensorRT could not deserialise the engine it built")
        self._runtime, self._engine = runtime, engine
        self._context = engine.create_execution_context()
        self._stream = torch.cuda.Stream(self._device)
        # I/O buffers at the profile's maximum, bound once; a batch of n x L uses their first n*L slots.
        cap = self.profile.max_batch * self.profile.max_seq
        self._ids = torch.zeros(cap, dtype=torch.int64, device=self._device)
        self._mask = torch.zeros(cap, dtype=torch.int64, device=self._device)
        self._out = torch.zeros(self.profile.max_batch * self.dim, dtype=torch.float32, device=self._device)
        self._host_in = torch.zeros((2, cap), dtype=torch.int64).pin_memory()
        self._host_out = torch.zeros(self.profile.max_batch * self.dim, dtype=torch.float32).pin_memory()
        self._context.set_tensor_address(INPUT_NAMES[0], self._ids.data_ptr())
        self._context.set_tensor_address(INPUT_NAMES[1], self._mask.data_ptr())
        self._context.set_tensor_address(OUTPUT_NAME, self._out.data_ptr())
        self._lock = threading.Lock()   # one execution context: one batch at a time
        log.info("TensorRT engine %s (%s, profile batch<=%d seq<=%d) %s", self.engine_key[:12], self.precision,
                 self.profile.max_batch, self.profile.max_seq, "reused from cache" if self.engine_reused else "built")

    def encode_tokens(self, batch: Tokenized) -> np.ndarray:
        n = len(batch)
        if not n:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.empty((n, self.dim), dtype=np.float32)
        step = self.profile.max_batch
        for start in range(0, n, step):
            rows = list(range(start, min(n, start + step)))
            out[start:start + len(rows)] = self._run(batch.select(rows))
        return out

    def _run(self, batch: Tokenized) -> np.ndarray:
        ids, mask = batch.padded()
        n, width = ids.shape
        size = n * width
        torch = self._torch
        with self._lock, torch.cuda.stream(self._stream):
            host = self._host_in.numpy()
            host[0, :size] = ids.reshape(-1)
            host[1, :size] = mask.reshape(-1)
            self._ids[:size].copy_(self._host_in[0, :size], non_blocking=True)
            self._mask[:size].copy_(self._host_in[1, :size], non_blocking=True)
            self._context.set_input_shape(INPUT_NAMES[0], (n, width))
            self._context.set_input_shape(INPUT_NAMES[1], (n, width))
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            self._host_out[:n * self.dim].copy_(self._out[:n * self.dim], non_blocking=True)
            self._stream.synchronize()
            return self._host_out[:n * self.dim].numpy().reshape(n, self.dim).copy()

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self._source_fingerprint}|tensorrt|{self.precision}".encode()).hexdigest()

    def describe(self) -> dict[str, object]:
        out = super().describe()
        out["engine"] = {"key": self.engine_key[:16], "reused": self.engine_reused, "gpu": self.gpu_name,
                         "profile": asdict(self.profile), "precision": self.precision}
        return out

    def close(self) -> None:
        for name in ("_context", "_engine", "_runtime", "_ids", "_mask", "_out"):
            if hasattr(self, name):
                delattr(self, name)
        if hasattr(self, "_torch"):
            self._torch.cuda.empty_cache()
