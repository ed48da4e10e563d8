"""Backend registry: a backend name in `model.backend` -> the class that implements it.

Backends register here (a line in `BUILTIN_BACKENDS`, or a `inference_server.backends` entry point for
a backend shipped in another package); the interface in `backend.py` never changes when one is added.
Implementations are imported only when asked for, so importing the registry does not import torch.
"""
from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import Callable

from inference_server.models.backend import BackendUnavailable, EncoderBackend, ModelSpec

__all__ = ["BUILTIN_BACKENDS", "ENTRY_POINT_GROUP", "available_backends", "create_backend", "register_backend"]

BackendClass = Callable[[ModelSpec], EncoderBackend]

ENTRY_POINT_GROUP = "inference_server.backends"

# name -> "module:attribute" of a class taking a ModelSpec.
BUILTIN_BACKENDS: dict[str, str] = {
    "torch": "inference_server.models.torch_backend:TorchEncoderBackend",
    "onnxruntime": "inference_server.models.ort_backend:OnnxRuntimeEncoderBackend",
    "tensorrt": "inference_server.models.trt_backend:TensorRTEncoderBackend",
    # Not a backend: picks the fastest of the above that passes the parity gate here.
    "auto": "inference_server.models.auto:create_auto_backend",
}

# Names the config accepts that cannot run in this build, with the reason given to the user.
UNAVAILABLE_BACKENDS: dict[str, str] = {}

_registered: dict[str, BackendClass] = {}


def register_backend(name: str, backend: BackendClass) -> None:
    """Add a backend at run time (tests, plugins); a taken name is a programming error."""
    if name in _registered or name in BUILTIN_BACKENDS:
        raise ValueError(f"backend {name!r} is already registered")
    _registered[name] = backend


def available_backends() -> list[str]:
    names = set(BUILTIN_BACKENDS) | set(_registered) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)


def _resolve(name: str) -> BackendClass:
    if name in _registered:
        return _registered[name]
    target = BUILTIN_BACKENDS.get(name)
    if target is not None:
        module, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module), attribute)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == name:
            return ep.load()
    if name in UNAVAILABLE_BACKENDS:
        raise BackendUnavailable(UNAVAILABLE_BACKENDS[name])
    raise ValueError(f"unknown backend {name!r}; expected one of {available_backends()}")


def create_backend(spec: ModelSpec) -> EncoderBackend:
    """Load the encoder described by `spec` (weights are read here; the caller times it)."""
    if spec.max_seq_length < 2:
        raise ValueError(f"max_seq_length must be >= 2, got {spec.max_seq_length}")
    if spec.num_threads is not None and spec.num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {spec.num_threads}")
    if spec.engine_opt_batch_size < 1 or spec.engine_max_batch_size < spec.engine_opt_batch_size:
        raise ValueError(f"engine batch sizes need 1 <= engine_opt_batch_size <= engine_max_batch_size, got "
                         f"{spec.engine_opt_batch_size} and {spec.engine_max_batch_size}")
    return _resolve(spec.backend)(spec)
