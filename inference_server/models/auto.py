"""`backend: auto`: the fastest backend that passes the parity gate on the machine it runs on.

Candidates, in order: on a CUDA machine tensorrt (fp16), then torch (bf16/fp16); on a CPU
onnxruntime (float32) and torch (bfloat16 where the CPU has native bf16, else float32); torch
float32 (the reference) is always the last resort. Each candidate that loads and passes the gate
(`parity.run_gate`) is timed for `TIMING_SECONDS` on a batch of 64 sample queries with the serving
layout (one stream per model instance); the fastest is kept, the others are closed. The choice is
remembered in `<cache_dir>/auto-choice.json`, keyed by the weights, the machine (CPU model and
flags, GPU name) and the library versions, so later starts load only the winner (which the load
path gates again).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import threading
import time
from typing import Any, Optional

from inference_server.models.backend import BackendUnavailable, EncoderBackend, ModelSpec, auto_cpu_instances, \
    default_cache_dir, resolve_weights_dir, usable_cpu_count

__all__ = ["candidate_specs", "create_auto_backend", "machine_key"]

log = logging.getLogger(__name__)

TIMING_SECONDS = 1.5
TIMING_BATCH = 64


def _replace(spec: ModelSpec, **changes: Any) -> ModelSpec:
    return spec.model_copy(update=changes)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def candidate_specs(spec: ModelSpec, cuda: Optional[bool] = None) -> list[ModelSpec]:
    """Specs to try, most promising first; the float32 torch reference last."""
    cuda = _cuda_available() if cuda is None else cuda
    if spec.device == "cpu":
        cuda = False
    out = []
    if cuda:
        out.append(_replace(spec, backend="tensorrt", dtype="float16", quantization="none"))
        out.append(_replace(spec, backend="torch", device="cuda", dtype="auto", quantization="none"))
        out.append(_replace(spec, backend="torch", device="cuda", dtype="float32", quantization="none"))
    else:
        out.append(_replace(spec, backend="onnxruntime", device="cpu", dtype="float32", quantization="none"))
        out.append(_replace(spec, backend="torch", device="cpu", dtype="auto", quantization="none"))
        out.append(_replace(spec, backend="torch", device="cpu", dtype="float32", quantization="none"))
    return out


def machine_key(spec: ModelSpec, cuda: bool) -> str:
    """Weights x machine x library versions: a choice made under another key is measured again."""
    from inference_server.models.fingerprint import model_fingerprint

    parts: dict[str, Any] = {"weights": model_fingerprint(resolve_weights_dir(spec), {"m": spec.max_seq_length}),
                             "cpu": platform.processor() or platform.machine(), "cpus": usable_cpu_count()}
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith(("model name", "flags")):
                    parts[line.split(":", 1)[0].strip()] = line.split(":", 1)[1].strip()
    except OSError:
        pass
    if cuda:
        try:
            import torch

            parts["gpu"] = torch.cuda.get_device_name()
        except Exception:  # noqa: BLE001 - no usable CUDA after all: the key says so
            parts["gpu"] = "unknown"
    for module in ("torch", "onnxruntime", "tensorrt"):
        try:
            parts[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - absent or broken: part of the key either way
            parts[module] = None
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _throughput(backend: EncoderBackend, texts: list[str], instances: int) -> float:
    """Queries/s of `instances` concurrent streams encoding pre-tokenised batches."""
    backend.configure_parallelism(instances)
    tokens = backend.tokenize(texts)
    backend.encode_tokens(tokens)   # warm-up
    counts = [0] * instances
    until = time.perf_counter() + TIMING_SECONDS

    def stream(slot: int) -> None:
        while time.perf_counter() < until:
            backend.encode_tokens(tokens)
            counts[slot] += len(texts)

    started = time.perf_counter()
    threads = [threading.Thread(target=stream, args=(i,)) for i in range(instances)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def create_auto_backend(spec: ModelSpec, *, factory=None, cuda: Optional[bool] = None) -> EncoderBackend:
    """Load every candidate that passes the parity gate here, keep the fastest (see module docstring)."""
    from inference_server.models.parity import default_sample, run_gate
    from inference_server.models.registry import create_backend

    factory = factory or create_backend
    cuda = _cuda_available() if cuda is None else cuda
    candidates = candidate_specs(spec, cuda)
    instances = 1 if cuda else auto_cpu_instances()
    choice_path = default_cache_dir(spec) / "auto-choice.json"
    key = machine_key(spec, cuda)
    remembered = _remembered(choice_path, key)
    if remembered is not None:
        for candidate in candidates:
            if (candidate.backend, candidate.dtype, candidate.device) == tuple(remembered["choice"]):
                try:
                    backend = factory(candidate)
                except BackendUnavailable as exc:
                    log.warning("backend auto: remembered choice %s is unavailable now (%s); measuring again",
                                remembered["choice"], exc)
                    break
                backend.auto_choice = remembered   # type: ignore[attr-defined]
                return backend
    texts = list(default_sample().queries)[:TIMING_BATCH]
    best: Optional[tuple[float, EncoderBackend, ModelSpec]] = None
    tried: list[dict[str, Any]] = []
    for candidate in candidates:
        label = f"{candidate.backend}/{candidate.dtype}/{candidate.device}"
        try:
            backend = factory(candidate)
        except BackendUnavailable as exc:
            tried.append({"candidate": label, "skipped": str(exc)})
            continue
        report = run_gate(backend)
        if not report.passed:
            tried.append({"candidate": label, "refused": report.summary()})
            backend.close()
            continue
        qps = _throughput(backend, texts, instances)
        tried.append({"candidate": label, "dtype": backend.dtype, "qps": round(qps, 1)})
        log.info("backend auto: %s (%s) %.0f q/s", label, backend.dtype, qps)
        if best is None or qps > best[0]:
            if best is not None:
                best[1].close()
            best = (qps, backend, candidate)
        else:
            backend.close()
    if best is None:
        raise BackendUnavailable(f"backend auto: no candidate loads and passes the parity gate here: {tried}")
    qps, backend, chosen = best
    record = {"key": key, "choice": [chosen.backend, chosen.dtype, chosen.device], "qps": round(qps, 1),
              "tried": tried, "measured_at": time.time()}
    try:
        choice_path.parent.mkdir(parents=True, exist_ok=True)
        choice_path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        log.warning("backend auto: cannot remember the choice in %s: %s", choice_path, exc)
    log.info("backend auto: chose %s/%s (%s)", chosen.backend, backend.dtype, tried)
    backend.auto_choice = record   # type: ignore[attr-defined]
    return backend


def _remembered(path, key: str) -> Optional[dict[str, Any]]:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if record.get("key") == key and isinstance(record.get("choice"), list) else None
