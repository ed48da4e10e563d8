"""PyTorch implementation of `EncoderBackend` (CPU float32/bfloat16; CUDA bfloat16/float16 when present).

Weights and tokenizer are read from a local directory only: `HF_HUB_OFFLINE=1` is set before
transformers is imported and every load passes `local_files_only=True`, so a missing file is an
error here instead of a network request.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import json  # noqa: E402
import logging  # noqa: E402
import threading  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

from inference_server.models.backend import BackendUnavailable, EncoderBackend, ModelSpec, model_threads, resolve_weights_dir  # noqa: E402
from inference_server.models.fingerprint import model_fingerprint  # noqa: E402
from inference_server.models.pooling import NORMALIZE, POOLING, SentenceEncoder  # noqa: E402
from inference_server.models.tokenization import FastTokenizer, FastTokenizerMixin, Tokenized  # noqa: E402

# transformers 4.56 renamed `torch_dtype` to `dtype` (the old name warns).
_DTYPE_KWARG = "dtype" if tuple(int(x) for x in transformers.__version__.split(".")[:2]) >= (4, 56) else "torch_dtype"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Two texts of different lengths: the traced graph then carries the attention mask's padding path.
_TRACE_TEXTS = ("drill", "cordless drill with two batteries and a carrying case")

log = logging.getLogger(__name__)


def _resolve_device(requested: str) -> torch.device:
    if requested == "cpu":
        return torch.device("cpu")
    cuda = torch.cuda.is_available()
    if requested == "cuda" and not cuda:
        raise BackendUnavailable(
            "device 'cuda' requested but torch sees no CUDA GPU "
            f"(torch {torch.__version__}, built with CUDA {torch.version.cuda or 'none'})"
        )
    return torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX), so bf16 beats float32."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def _resolve_dtype(requested: str, device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        if requested == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if requested == "bfloat16" and not torch.cuda.is_bf16_supported():
            raise BackendUnavailable(f"this GPU ({torch.cuda.get_device_name(device)}) has no bfloat16 support")
        return _DTYPES[requested]
    if requested == "float16":
        raise BackendUnavailable("dtype float16 needs a CUDA device; use float32 or bfloat16 on CPU")
    if requested == "auto":
        # Native bf16: ~3x float32 here, cosine 0.9999+ to float32; the parity gate checks it at load.
        return torch.bfloat16 if cpu_has_native_bf16() else torch.float32
    return _DTYPES[requested]


class _KeepInputs(torch.nn.Module):
    """The encoder, returning its inputs too, for tracing.

    A tensor made in Python is released by a graph at its last use, in the middle of the pass, and
    that release takes the GIL: with the event loop holding it, the pass stalls there (up to the 5 ms
    switch interval, twice per pass). Returned, the inputs are released in Python with the GIL held.
    """

    def __init__(self, encoder: torch.nn.Module) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        return self.encoder(input_ids, attention_mask), input_ids, attention_mask


class TorchEncoderBackend(FastTokenizerMixin, EncoderBackend):
    """transformers `AutoModel` + mean pooling + L2 norm, run under `torch.inference_mode`.

    `tokenizer` (the fast tokenizer) and `module` (the `SentenceEncoder`) are public so the ONNX
    exporter traces exactly what this backend serves.
    """

    backend_name = "torch"

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.weights_dir = resolve_weights_dir(spec)
        config = json.loads((self.weights_dir / "config.json").read_text(encoding="utf-8"))
        limit = config.get("max_position_embeddings")
        if isinstance(limit, int) and spec.max_seq_length > limit:
            raise ValueError(f"max_seq_length {spec.max_seq_length} exceeds the model's limit of {limit} positions")
        device = _resolve_device(spec.device)
        dtype = _resolve_dtype(spec.dtype, device)
        # Intra-op threads of this backend's forward passes on CPU. torch's thread count is
        # process-wide, so it is applied just before each of this backend's passes
        # (`_apply_threads`), never at load: loading another version must not retune this one.
        self.threads: int | None = spec.num_threads if device.type == "cpu" else None
        # `self.tokenizer` (transformers) is kept for the ONNX exporter; serving tokenises with
        # `fast_tokenizer`, whose settings never change after load, so instances need no lock.
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(
                str(self.weights_dir), local_files_only=True, use_fast=True
            )
            transformer = AutoModel.from_pretrained(
                str(self.weights_dir), local_files_only=True, **{_DTYPE_KWARG: dtype}
            )
        except OSError as exc:
            raise BackendUnavailable(f"cannot load the model from {self.weights_dir}: {exc}") from exc
        if not self.tokenizer.is_fast:
            raise BackendUnavailable(f"{self.weights_dir} has no fast tokenizer (tokenizer.json)")
        # Lock-free tokenisation for the serving path (tokenize -> encode_tokens).
        self.fast_tokenizer = FastTokenizer(self.weights_dir, spec.max_seq_length)
        if getattr(transformer, "pooler", None) is not None:
            # BERT's pooler (dense + tanh over [CLS]) runs on every pass, but mean pooling never reads it:
            # ~4 % of a forward pass. Serving only; training keeps it so saved checkpoints stay complete.
            transformer.pooler = None
        self.module = SentenceEncoder(transformer).to(device).eval()
        self._torch_device = device
        self.graph, self._forward = self._serving_forward(spec.torch_graph)
        self.device = f"cuda:{device.index}" if device.type == "cuda" else "cpu"
        self.dtype = str(dtype).removeprefix("torch.")
        self.dim = int(transformer.config.hidden_size)
        self._fingerprint: str | None = None
        self._fingerprint_lock = threading.Lock()

    def encode_tokens(self, batch: Tokenized) -> np.ndarray:
        if not len(batch):
            return np.zeros((0, self.dim), dtype=np.float32)
        ids, mask = batch.padded()
        self._apply_threads()
        input_ids, attention_mask = torch.from_numpy(ids), torch.from_numpy(mask)
        if self._torch_device.type != "cpu":
            input_ids = input_ids.to(self._torch_device, non_blocking=True)
            attention_mask = attention_mask.to(self._torch_device, non_blocking=True)
        with torch.inference_mode():
            embeddings = self._forward(input_ids, attention_mask)
        # Every torch call here lets go of the GIL and must take it back, which waits while the event
        # loop holds it: on CPU the (float32) output is used as it is.
        if embeddings.device.type != "cpu" or embeddings.dtype != torch.float32:
            embeddings = embeddings.to("cpu", torch.float32)
        return embeddings.numpy()

    def _serving_forward(self, mode: str):
        """(graph name, callable) that serving passes run: `module` itself, or it traced and frozen.

        A frozen TorchScript graph runs a whole pass in C++: eager BERT dispatches ~300 ops from
        Python, each taking the GIL, which costs most at small batches (batch 4 ran 1.7x faster traced
        here) and stalls passes while the event loop holds the GIL. The trace is checked against
        `module` on other shapes before use, and the parity gate checks what serves; `module` stays
        eager for the ONNX exporter and training.
        """
        if mode == "eager" or (mode == "auto" and self._torch_device.type != "cpu"):
            return "eager", self.module
        try:
            return "torchscript", self._trace()
        except Exception as exc:  # noqa: BLE001 - any tracing failure means: serve eagerly (or refuse)
            if mode == "torchscript":
                raise BackendUnavailable(f"cannot trace {self.weights_dir} to a TorchScript graph: {exc}") from exc
            log.warning("serving %s eagerly: tracing it to a TorchScript graph failed: %s", self.weights_dir, exc)
            return "eager", self.module

    def _trace(self):
        def tensors(texts):
            ids, mask = self.fast_tokenizer.tokenize(list(texts)).padded()
            return (torch.from_numpy(ids).to(self._torch_device), torch.from_numpy(mask).to(self._torch_device))

        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # torch 2.13 (pinned) deprecates torch.jit; a torch without it fails here, and `auto` serves
            # eagerly (with a warning) until this moves to torch.export.
            warnings.simplefilter("ignore", DeprecationWarning)
            traced = torch.jit.freeze(torch.jit.trace(_KeepInputs(self.module).eval(), tensors(_TRACE_TEXTS),
                                                      check_trace=False))

            def graph(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
                return traced(input_ids, attention_mask)[0]
            # Other batch sizes and lengths than traced, padded and not: a shape baked into the
            # trace would show here, not in production.
            check = ("a", "b c d e f g h i j k l m n o p q r s t u v w x y z", "stainless steel sink")
            for texts in (check[:1], check):
                expected, got = self.module(*tensors(texts)).float(), graph(*tensors(texts)).float()
                cosine = float((expected * got).sum(dim=1).min())
                if cosine < 0.9999:
                    raise RuntimeError(f"traced graph disagrees with the module (cosine {cosine:.6f} on {len(texts)} texts)")
        return graph

    def configure_parallelism(self, instances: int) -> None:
        """On CPU, give each concurrent batch an equal share of the cores but the event loop's (unless
        num_threads is set; `model_threads`).

        Independent single-threaded forward passes use a small CPU far better than one pass spread
        over all cores by torch's intra-op threads (see docs/server.md, "Model instances").
        """
        if self._torch_device.type == "cpu" and self.spec.num_threads is None and instances >= 1:
            self.threads = model_threads(instances)

    def _apply_threads(self) -> None:
        """Run this thread's passes with this backend's thread count (a no-op when already so)."""
        if self.threads is not None and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "graph": self.graph}

    def fingerprint(self) -> str:
        with self._fingerprint_lock:
            if self._fingerprint is None:
                self._fingerprint = model_fingerprint(
                    self.weights_dir,
                    {
                        "pooling": POOLING,
                        "normalize": NORMALIZE,
                        "max_seq_length": self.spec.max_seq_length,
                        "dtype": self.dtype,
                    },
                )
            return self._fingerprint

    def close(self) -> None:
        encoder = getattr(self, "module", None)
        if encoder is None:
            return
        del self.module
        if self._torch_device.type == "cuda":
            torch.cuda.empty_cache()
