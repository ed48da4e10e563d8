"""`backend: auto` picks the fastest candidate that loads and passes the parity gate, and remembers it."""

from __future__ import annotations

import time

import numpy as np
import pytest

from inference_server.models import BackendUnavailable, ModelSpec
from inference_server.models import auto
from inference_server.models.backend import EncoderBackend
from inference_server.models.parity import ParityReport


class Timed(EncoderBackend):
    def __init__(self, spec, delay):
        self.spec, self.delay, self.closed = spec, delay, False
        self.backend_name, self.device, self.dtype, self.dim = spec.backend, spec.device, spec.dtype, 4

    def token_lengths(self, texts):
        return [3] * len(texts)

    def encode(self, texts):
        time.sleep(self.delay)
        return np.full((len(texts), 4), 0.5, dtype=np.float32)

    def fingerprint(self):
        return self.backend_name

    def close(self):
        self.closed = True


def test_candidates_per_machine():
    cpu = [(s.backend, s.dtype) for s in auto.candidate_specs(ModelSpec(), cuda=False)]
    assert cpu == [("onnxruntime", "float32"), ("torch", "auto"), ("torch", "float32")]
    gpu = [(s.backend, s.dtype, s.device) for s in auto.candidate_specs(ModelSpec(), cuda=True)]
    assert gpu[0] == ("tensorrt", "float16", "auto") and gpu[-1] == ("torch", "float32", "cuda")
    assert auto.candidate_specs(ModelSpec(device="cpu"), cuda=True)[0].backend == "onnxruntime"


def test_picks_fastest_passing_candidate_and_remembers(tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "TIMING_SECONDS", 0.2)
    made = []
    delays = {"tensorrt": None, "torch/auto": 0.001, "torch/float32": 0.02}

    def factory(spec):
        label = spec.backend if spec.backend != "torch" else f"torch/{spec.dtype}"
        made.append(label)
        if delays[label] is None:
            raise BackendUnavailable("no GPU here")
        return Timed(spec, delays[label])

    def gate(backend, **kwargs):   # the fastest one embeds badly: refused
        ok = not (backend.backend_name == "torch" and backend.dtype == "auto")
        return ParityReport(backend.backend_name, backend.dtype, backend.device, "s", 1, 1.0 if ok else 0.9,
                            1.0, 0.5, 0.5, ok, [] if ok else ["cosine"])

    monkeypatch.setattr("inference_server.models.parity.run_gate", gate)
    spec = ModelSpec(backend="auto", cache_dir=str(tmp_path))
    chosen = auto.create_auto_backend(spec, factory=factory, cuda=True)
    # tensorrt: unavailable; torch/auto: fastest but refused; torch/float32: the one left.
    assert (chosen.backend_name, chosen.dtype) == ("torch", "float32")
    record = chosen.auto_choice
    assert any("skipped" in t for t in record["tried"]) and any("refused" in t for t in record["tried"])
    made.clear()
    again = auto.create_auto_backend(spec, factory=factory, cuda=True)
    assert len(made) == 1 and (again.backend_name, again.dtype) == (chosen.backend_name, chosen.dtype)


def test_fastest_of_several_passing(tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "TIMING_SECONDS", 0.2)
    delays = {"onnxruntime": 0.002, "auto": 0.02, "float32": 0.05}
    backends = []

    def factory(spec):
        backends.append(Timed(spec, delays[spec.backend if spec.backend != "torch" else spec.dtype]))
        return backends[-1]

    chosen = auto.create_auto_backend(ModelSpec(backend="auto", cache_dir=str(tmp_path)), factory=factory, cuda=False)
    assert chosen.backend_name == "onnxruntime" and not chosen.closed
    assert all(b.closed for b in backends if b is not chosen)


def test_nothing_passes(tmp_path, monkeypatch):
    def factory(spec):
        raise BackendUnavailable("nope")

    with pytest.raises(BackendUnavailable, match="no candidate"):
        auto.create_auto_backend(ModelSpec(backend="auto", cache_dir=str(tmp_path)), factory=factory, cuda=False)
