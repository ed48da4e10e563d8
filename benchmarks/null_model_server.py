#!/usr/bin/env python3
"""The inference server with a model that costs (almost) nothing: for the serving benchmark's (d).

`python benchmarks/null_model_server.py --config FILE` is `python -m inference_server --config FILE`
with every model version served by `NullEncoderBackend` (through `serve`'s backend factory): it
embeds a text as a pseudo-random unit vector seeded by the text (computed once per distinct text,
then looked up). The server's throughput is then bounded by everything but the model: HTTP, JSON,
validation, routing, batching, top-k over the catalog, metrics and the request log. That limit,
measured on the same cores as the real model's, bounds what the HTTP path can reach
(benchmarks/serving.py prints it as (d)).

Not for serving anything real: the embeddings mean nothing.
"""
from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from inference_server.models.backend import EncoderBackend, ModelSpec  # noqa: E402

DIM = 384   # all-MiniLM-L6-v2's, so the index and the responses have the real model's shape


class NullEncoderBackend(EncoderBackend):
    """A text -> a fixed pseudo-random unit vector (seeded by its BLAKE2b hash), memoised."""

    backend_name = "null"
    device = "cpu"
    dtype = "float32"
    dim = DIM

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self._vectors: dict[str, np.ndarray] = {}

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return [min(len(text.split()) + 2, self.spec.max_seq_length) for text in texts]

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, DIM), dtype=np.float32)
        return np.stack([self._vector(text) for text in texts])

    def _vector(self, text: str) -> np.ndarray:
        vector = self._vectors.get(text)
        if vector is None:
            seed = int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")
            vector = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
            vector /= np.linalg.norm(vector)
            self._vectors[text] = vector
        return vector

    def fingerprint(self) -> str:
        return hashlib.sha256(f"null-encoder|dim={DIM}|max_seq_length={self.spec.max_seq_length}".encode()).hexdigest()


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import logging

    from inference_server.api.app import serve
    from inference_server.config import load_config

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="server YAML (serve its `model:` section: model_repository.enabled false, "
                             "model.parity_gate false)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(load_config(args.config), backend_factory=NullEncoderBackend)
    return 0


if __name__ == "__main__":
    sys.exit(main())
