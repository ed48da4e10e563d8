"""Sentence encoder backends behind one interface (`EncoderBackend`); PyTorch now, TensorRT next.

Importing this package does not import torch: `create_backend` loads the implementation it needs.
"""

from inference_server.models.backend import BackendUnavailable, EncoderBackend, ModelSpec, create_backend, resolve_weights_dir

__all__ = ["BackendUnavailable", "EncoderBackend", "ModelSpec", "create_backend", "resolve_weights_dir"]
