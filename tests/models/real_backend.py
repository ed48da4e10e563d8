"""One real all-MiniLM-L6-v2 backend per test session, shared by tests/model and tests/catalog."""

from __future__ import annotations

import functools

from inference_server.models import EncoderBackend, ModelSpec, create_backend


@functools.lru_cache(maxsize=1)
def real_backend() -> EncoderBackend:
    """The bundled model on CPU in float32 (loaded once; tests must not close it)."""
    return create_backend(ModelSpec(device="cpu", dtype="float32", max_seq_length=128))
