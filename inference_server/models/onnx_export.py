"""Export the sentence encoder to ONNX: the fixed input contract a TensorRT engine is built from.

    inputs   input_ids        int64   [batch, seq]
             attention_mask   int64   [batch, seq]   1 for real tokens, 0 for padding
    output   sentence_embedding float32 [batch, 384]  mean-pooled over the mask, L2-normalised

Pooling and normalisation are inside the graph, so an engine built from this file returns what
the PyTorch backend returns. Both axes are dynamic (batch, seq up to the model's 512 positions);
tokenisation stays outside the graph (the server's fast tokenizer does it).

    python -m inference_server.models.onnx_export --output var/onnx/minilm.onnx
    trtexec --onnx=var/onnx/minilm.onnx --saveEngine=minilm.plan --bf16 \\
        --minShapes=input_ids:1x8,attention_mask:1x8 --optShapes=input_ids:32x64,attention_mask:32x64 \\
        --maxShapes=input_ids:128x128,attention_mask:128x128
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

if TYPE_CHECKING:
    from inference_server.models.torch_backend import TorchEncoderBackend

INPUT_NAMES = ("input_ids", "attention_mask")
OUTPUT_NAME = "sentence_embedding"
DEFAULT_OPSET = 17


def export_encoder(backend: "TorchEncoderBackend", output: str | Path, opset: int = DEFAULT_OPSET,
                   check: bool = True) -> dict[str, object]:
    """Trace `backend.module` (a CPU float32 PyTorch backend) to `output`; return its description.

    The description (inputs, output, dim, opset, source model fingerprint) is also written beside
    the model as `<output>.json` so deployments can verify what they run.
    """
    import onnx
    import torch

    if backend.device != "cpu" or backend.dtype != "float32":
        raise ValueError(f"export needs a CPU float32 backend, got {backend.device} {backend.dtype}")
    sample = backend.tokenizer(
        ["export sample: cordless drill", "a longer sample sentence for the exporter's trace"],
        padding=True, return_tensors="pt", return_token_type_ids=False,
    )
    example = (sample["input_ids"].to(torch.int64), sample["attention_mask"].to(torch.int64))
    path = Path(output)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter is the one that needs no extra packages; its deprecation notice
        # and the tracer's note about the constant 1.0 in the attention mask are expected.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            backend.module,
            example,
            str(path),
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_axes={
                "input_ids": {0: "batch", 1: "seq"},
                "attention_mask": {0: "batch", 1: "seq"},
                OUTPUT_NAME: {0: "batch"},
            },
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    # The tracer leaves the embedding width symbolic; pin it so engines see [batch, dim].
    model = onnx.load(str(path))
    width = model.graph.output[0].type.tensor_type.shape.dim[1]
    width.Clear()
    width.dim_value = backend.dim
    onnx.save(model, str(path))
    if check:
        onnx.checker.check_model(str(path), full_check=True)
    description = {
        "inputs": {name: {"dtype": "int64", "shape": ["batch", "seq"]} for name in INPUT_NAMES},
        "output": {OUTPUT_NAME: {"dtype": "float32", "shape": ["batch", backend.dim]}},
        "dim": backend.dim,
        "max_seq_length": backend.spec.max_seq_length,
        "opset": opset,
        "pooling": "mean over attention_mask, L2-normalised (inside the graph)",
        "source_fingerprint": backend.fingerprint(),
        "weights": str(backend.weights_dir),
    }
    Path(f"{path}.json").write_text(json.dumps(description, indent=2) + "\n", encoding="utf-8")
    return description


def export_onnx(output: str | Path, weights: Optional[str] = None, opset: int = DEFAULT_OPSET,
                max_seq_length: int = 128, check: bool = True) -> dict[str, object]:
    """Load the encoder on CPU in float32 and export it (see `export_encoder`)."""
    from inference_server.models.backend import ModelSpec
    from inference_server.models.torch_backend import TorchEncoderBackend

    backend = TorchEncoderBackend(
        ModelSpec(weights=weights, device="cpu", dtype="float32", max_seq_length=max_seq_length, torch_graph="eager")
    )
    try:
        return export_encoder(backend, output, opset, check)
    finally:
        backend.close()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m inference_server.models.onnx_export",
        description="Export the sentence encoder (transformer + mean pooling + L2 norm) to ONNX with "
                    "inputs input_ids/attention_mask int64 [batch, seq] and output "
                    "sentence_embedding float32 [batch, dim], for building a TensorRT engine.",
    )
    parser.add_argument("--output", "-o", required=True, help="path of the .onnx file to write")
    parser.add_argument("--weights", default=None,
                        help="model directory (default: the bundled all-MiniLM-L6-v2)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    parser.add_argument("--max-seq-length", type=int, default=128,
                        help="recorded in the description; the graph itself accepts any length up to the model's limit")
    parser.add_argument("--no-check", action="store_true", help="skip onnx.checker validation")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    description = export_onnx(args.output, args.weights, args.opset, args.max_seq_length, check=not args.no_check)
    size_mb = Path(args.output).stat().st_size / 1e6
    print(f"wrote {args.output} ({size_mb:.1f} MB, opset {description['opset']}, dim {description['dim']}) "
          f"in {time.perf_counter() - started:.1f} s; description in {args.output}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
