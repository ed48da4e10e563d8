"""Sentence encoder backends behind one interface (`EncoderBackend`) and the registry that creates them.

Importing this package does not import torch: `create_backend` loads the implementation it needs.
"""

from inference_server.models.backend import BackendUnavailable, EncoderBackend, ModelSpec, resolve_weights_dir
from inference_server.models.registry import create_backend

__all__ = ["BackendUnavailable", "EncoderBackend", "ModelSpec", "create_backend", "resolve_weights_dir"]
