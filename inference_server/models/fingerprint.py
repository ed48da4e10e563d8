"""Content hashes of model files, memoised by (path, size, mtime) so re-fingerprinting is cheap.

The model fingerprint keys the on-disk embedding cache: any change to the weights, tokenizer,
config, pooling, sequence length or dtype must give a new key, and nothing else may.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Mapping

_CHUNK = 4 * 1024 * 1024
_lock = threading.Lock()
_file_hashes: dict[tuple[str, int, int], str] = {}

# Files whose bytes decide what the encoder computes (weights and tokenizer); config.json is
# hashed in canonical JSON form so formatting-only edits do not invalidate caches.
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, computed once per (path, size, mtime) in this process."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _lock:
        cached = _file_hashes.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    value = digest.hexdigest()
    with _lock:
        _file_hashes[key] = value
    return value


def weight_files(weights_dir: Path) -> list[Path]:
    """The weight files of a model directory, safetensors preferred (what transformers loads)."""
    for pattern in WEIGHT_PATTERNS:
        found = sorted(p for p in weights_dir.glob(pattern) if p.is_file())
        if found:
            return found
    return []


def model_fingerprint(weights_dir: Path, settings: Mapping[str, object]) -> str:
    """Hex sha256 over weight and tokenizer file hashes, the parsed config and `settings`."""
    weights = weight_files(weights_dir)
    if not weights:
        raise FileNotFoundError(f"no *.safetensors or pytorch_model*.bin in {weights_dir}")
    config = json.loads((weights_dir / "config.json").read_text(encoding="utf-8"))
    # transformers writes its own version and the hub path into config.json; neither changes outputs.
    for volatile in ("_name_or_path", "transformers_version"):
        config.pop(volatile, None)
    document = {
        "weights": {p.name: file_sha256(p) for p in weights},
        "tokenizer": {
            name: file_sha256(weights_dir / name)
            for name in TOKENIZER_FILES
            if (weights_dir / name).is_file()
        },
        "config": config,
        "settings": dict(settings),
    }
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()
