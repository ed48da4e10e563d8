"""Health checks of a model version: finite weights, golden set, warm-up.

A version takes traffic only after all three pass at load; the golden check then repeats every
`health.interval_s` while it serves, and a failure takes it out of routing (state `failed`).

- `finite_weights`: every parameter and buffer of the loaded network is finite (catches corrupt files
  and overflow after a dtype cast); backends without an inspectable network have their weight files
  scanned instead.
- `registration`: the version is registered for the catalog, its artefact files and weights match the
  sha256 recorded at registration (`registration.py`; the server never registers what it checks).
- `golden_set`: the fixed golden queries recorded at registration are embedded again and compared:
  each query's cosine similarity to its reference embedding must be >= `golden_min_cosine`, and the
  share of its reference top-k ids found again in the top-k must be >= `golden_min_topk_overlap`.
  Tolerances leave room for bf16/fp16 on GPU vs. the fp32 reference; a changed or corrupted model
  misses them by far.
- `warmup`: the warm-up passes ran and produced finite output.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
from prometheus_client import CollectorRegistry, Counter

from inference_server.config import HealthConfig
from inference_server.models.backend import EncoderBackend

__all__ = ["CHECKS", "CheckResult", "HealthConfig", "HealthMetrics", "check_finite_weights", "check_golden"]

CHECKS = ("finite_weights", "registration", "golden_set", "warmup")


@dataclass
class CheckResult:
    check: str
    ok: bool
    detail: str
    checked_at: float

    def as_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "detail": self.detail, "checked_at": self.checked_at}


class HealthMetrics:
    """Failure counter; the ok/last-run gauges are read from the versions at scrape time."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.failures = Counter("inference_model_health_check_failures_total", "Failed model health checks.",
                                ("model", "version", "check"), registry=registry)

    def init_version(self, model: str, version: str) -> None:
        for check in CHECKS:
            self.failures.labels(model, version, check)


def _torch_module(backend: EncoderBackend):
    """The torch network behind a backend, when there is one (unwrapping a degraded wrapper)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return None
    while True:       # unwrap degraded / delegating wrappers down to the real backend
        module = getattr(backend, "module", None)
        if isinstance(module, torch.nn.Module):
            return module
        inner = getattr(backend, "inner", None)
        if inner is None or inner is backend:
            return None
        backend = inner


def check_finite_weights(backend: EncoderBackend) -> CheckResult:
    """All weights finite? Inspects the loaded network, else the weight files on disk."""
    bad: list[str] = []
    total = 0
    module = _torch_module(backend)
    if module is not None:
        import torch

        with torch.inference_mode():
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
                if tensor.is_floating_point():
                    total += 1
                    if not bool(torch.isfinite(tensor).all()):
                        bad.append(name)
        where = "loaded tensors"
    else:
        from safetensors.numpy import load_file

        from inference_server.models.fingerprint import weight_files

        weights_dir = getattr(backend, "weights_dir", None)
        files = [f for f in weight_files(weights_dir) if f.suffix == ".safetensors"] if weights_dir else []
        if not files:
            return CheckResult("finite_weights", False, "no inspectable network and no *.safetensors files to scan",
                               time.time())
        for file in files:
            for name, array in load_file(str(file)).items():
                if np.issubdtype(array.dtype, np.floating):
                    total += 1
                    if not np.isfinite(array).all():
                        bad.append(f"{file.name}:{name}")
        where = "weight files"
    if bad:
        shown = ", ".join(bad[:5]) + (f" (+{len(bad) - 5} more)" if len(bad) > 5 else "")
        return CheckResult("finite_weights", False, f"{len(bad)} of {total} {where} hold NaN/Inf: {shown}", time.time())
    return CheckResult("finite_weights", True, f"{total} {where} finite", time.time())


def check_golden(golden, embeddings: np.ndarray, index, *, min_cosine: float, min_topk_overlap: float) -> CheckResult:
    """Compare fresh embeddings of the golden queries (and their top-k) with the registration reference."""
    emb = np.asarray(embeddings, dtype=np.float32)
    ref = golden.embeddings
    if emb.shape != ref.shape:
        return CheckResult("golden_set", False, f"embedding shape {emb.shape} differs from the reference {ref.shape}",
                           time.time())
    if not np.isfinite(emb).all():
        return CheckResult("golden_set", False, "golden queries produced non-finite embeddings", time.time())
    cosine = np.einsum("ij,ij->i", emb, ref) / np.maximum(
        np.linalg.norm(emb, axis=1) * np.linalg.norm(ref, axis=1), 1e-12)
    k = golden.k
    _, rows = index.search(emb, k)
    overlaps = np.array([len(set(index.ids[r] for r in row) & set(want)) / max(len(want), 1)
                         for row, want in zip(rows, golden.topk_ids)])
    worst_cos, worst_overlap = float(cosine.min()), float(overlaps.min())
    ok = worst_cos >= min_cosine and worst_overlap >= min_topk_overlap
    detail = (f"{len(cosine)} queries: min cosine {worst_cos:.4f} (need >= {min_cosine}), "
              f"min top-{k} overlap {worst_overlap:.2f} (need >= {min_topk_overlap})")
    return CheckResult("golden_set", ok, detail, time.time())


def warmup_result(seconds: Optional[float], error: Optional[str] = None) -> CheckResult:
    if error is not None:
        return CheckResult("warmup", False, error, time.time())
    return CheckResult("warmup", True, f"{seconds:.3f} s", time.time())
