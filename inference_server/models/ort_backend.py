"""ONNX Runtime implementation of `EncoderBackend` (CPU; graph optimisations; optional int8).

The encoder is exported once with `onnx_export.export_encoder` (pooling and normalisation inside
the graph), optimised by ONNX Runtime (`ORT_ENABLE_ALL`, saved so later loads skip it) and, with
`quantization: int8`, dynamically quantised (`onnxruntime.quantization.quantize_dynamic`, int8
weights of the MatMuls). Files are cached under `<cache_dir>/onnx/<key>/`, keyed by the source
model's fingerprint, the opset, the quantisation and the ONNX Runtime version.

Tokenisation is the server's (`FastTokenizer`); a session runs with `intra_op_num_threads` set to
this backend's share of the cores (`configure_parallelism`), one session per thread count.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from pathlib import Path

import numpy as np

from inference_server.models.backend import (
    BackendUnavailable,
    EncoderBackend,
    ModelSpec,
    default_cache_dir,
    model_threads,
    resolve_weights_dir,
    usable_cpu_count,
)
from inference_server.models.fingerprint import model_fingerprint
from inference_server.models.onnx_export import DEFAULT_OPSET, INPUT_NAMES, OUTPUT_NAME
from inference_server.models.pooling import NORMALIZE, POOLING
from inference_server.models.tokenization import FastTokenizer, FastTokenizerMixin, Tokenized

__all__ = ["OnnxRuntimeEncoderBackend", "exported_onnx"]

log = logging.getLogger(__name__)

_EXPORT_LOCK = threading.Lock()


def exported_onnx(spec: ModelSpec, weights_dir: Path, cache_dir: Path, opset: int = DEFAULT_OPSET) -> tuple[Path, str]:
    """The float32 ONNX export of the encoder under `cache_dir/onnx/` (exported on first use).

    Returns (path, source fingerprint). Shared by the ONNX Runtime and TensorRT backends.
    """
    source = model_fingerprint(weights_dir, {"pooling": POOLING, "normalize": NORMALIZE,
                                             "max_seq_length": spec.max_seq_length, "dtype": "float32"})
    target = cache_dir / "onnx" / f"{source[:16]}-opset{opset}" / "encoder.onnx"
    with _EXPORT_LOCK:
        if not target.is_file():
            from inference_server.models.onnx_export import export_onnx

            log.info("exporting the encoder to %s (once per model)", target)
            tmp = target.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-encoder.onnx")
            export_onnx(tmp, weights=str(weights_dir), opset=opset, max_seq_length=spec.max_seq_length, check=False)
            Path(f"{tmp}.json").replace(f"{target}.json")
            tmp.replace(target)
    return target, source


class OnnxRuntimeEncoderBackend(FastTokenizerMixin, EncoderBackend):
    """ONNX Runtime CPU session over the exported encoder (see module docstring)."""

    backend_name = "onnxruntime"

    def __init__(self, spec: ModelSpec) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable("backend onnxruntime needs the onnxruntime package "
                                     "(pip install 'onnxruntime>=1.17,<2')") from exc
        if spec.device == "cuda":
            raise BackendUnavailable("backend onnxruntime runs on the CPU here; on a GPU use tensorrt or torch")
        if spec.dtype not in ("auto", "float32"):
            raise BackendUnavailable(f"backend onnxruntime runs float32 graphs (optionally int8-quantised), "
                                     f"not {spec.dtype}; use torch for bfloat16")
        if spec.quantization not in ("none", "int8"):
            raise BackendUnavailable(f"backend onnxruntime supports quantization none or int8, not {spec.quantization}")
        self._ort = ort
        self.spec = spec
        self.weights_dir = resolve_weights_dir(spec)
        self.device = "cpu"
        self.dtype = "int8" if spec.quantization == "int8" else "float32"
        config = json.loads((self.weights_dir / "config.json").read_text(encoding="utf-8"))
        self.dim = int(config["hidden_size"])
        self.fast_tokenizer = FastTokenizer(self.weights_dir, spec.max_seq_length)
        cache = default_cache_dir(spec)
        source_path, self._source_fingerprint = exported_onnx(spec, self.weights_dir, cache)
        self.model_path = self._optimised(source_path, cache)
        self.threads = spec.num_threads or usable_cpu_count()
        self._sessions: dict[int, object] = {}
        self._sessions_lock = threading.Lock()
        self._session(self.threads)   # fail at load, not at the first request

    # -- model files -------------------------------------------------------------------------

    def _optimised(self, source: Path, cache: Path) -> Path:
        """Graph-optimised (and, for int8, quantised) model file, built once and cached."""
        ort = self._ort
        key = hashlib.sha256(f"{source.parent.name}|{self.spec.quantization}|ort{ort.__version__}".encode()).hexdigest()[:16]
        target = cache / "onnx" / f"ort-{key}" / "encoder.onnx"
        with _EXPORT_LOCK:
            if target.is_file():
                return target
            target.parent.mkdir(parents=True, exist_ok=True)
            stage = source
            if self.spec.quantization == "int8":
                from onnxruntime.quantization import QuantType, quantize_dynamic

                quantised = target.with_name("quantised.onnx")
                quantize_dynamic(str(source), str(quantised), weight_type=QuantType.QInt8,
                                 op_types_to_quantize=["MatMul"])
                stage = quantised
            options = ort.SessionOptions()
            # EXTENDED is portable across CPUs (ALL adds layout transforms for this CPU: done per
            # session at load instead, so the cached file can be shared).
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
            tmp = target.with_name(f".tmp-{os.getpid()}.onnx")
            options.optimized_model_filepath = str(tmp)
            ort.InferenceSession(str(stage), options, providers=["CPUExecutionProvider"])
            tmp.replace(target)
            return target

    def _session(self, threads: int):
        with self._sessions_lock:
            session = self._sessions.get(threads)
            if session is None:
                ort = self._ort
                options = ort.SessionOptions()
                # Already optimised offline; ENABLE_ALL again is cheap and keeps layout transforms.
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                try:
                    session = ort.InferenceSession(str(self.model_path), options, providers=["CPUExecutionProvider"])
                except Exception as exc:  # noqa: BLE001 - a corrupt cache file or an unsupported op
                    raise BackendUnavailable(f"onnxruntime cannot load {self.model_path}: {exc}") from exc
                self._sessions[threads] = session
            return session

    # -- EncoderBackend ----------------------------------------------------------------------

    def encode_tokens(self, batch: Tokenized) -> np.ndarray:
        if not len(batch):
            return np.zeros((0, self.dim), dtype=np.float32)
        ids, mask = batch.padded()
        (out,) = self._session(self.threads).run([OUTPUT_NAME], {INPUT_NAMES[0]: ids, INPUT_NAMES[1]: mask})
        return np.asarray(out, dtype=np.float32)

    def configure_parallelism(self, instances: int) -> None:
        if self.spec.num_threads is None and instances >= 1:
            self.threads = model_threads(instances)
            self._session(self.threads)

    def fingerprint(self) -> str:
        return hashlib.sha256(f"{self._source_fingerprint}|onnxruntime|{self.dtype}".encode()).hexdigest()

    def close(self) -> None:
        with self._sessions_lock:
            self._sessions.clear()
