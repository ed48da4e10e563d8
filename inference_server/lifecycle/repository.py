"""The model repository on disk (Triton-like) and the artefacts written when a version is registered.

Layout::

    models/<name>/<version>/model.yaml     # what to load and how (see VersionConfig)
    models/<name>/<version>/artifacts/...  # optional: artefacts shipped with the version (--into-version-dir)
    <state_dir>/<name>/<version>/<catalog>-<catalog fingerprint[:12]>/   # artefacts written at registration
        manifest.json          # who/what/when: model and catalog fingerprints, sizes, settings
        golden.npz             # golden set: fixed queries, their reference embeddings and top-k ids/scores
        drift_reference.npz    # reference distributions: top1_score, score_spread, query_tokens
        evaluation.json        # offline evaluation on the judged queries: NDCG@k, MRR

Versions are directories named by a positive integer. Artefacts depend on the catalog the version
serves (top-k ids), so they are keyed by the catalog's fingerprint; they are *not* keyed by the model
fingerprint on purpose: weights that change after registration must fail the golden check, not
silently re-register. Only registration (`lifecycle/registration.py`, `make register`, the training
command) writes them; the server refuses a version without them.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Sequence

import numpy as np
import yaml
from pydantic import Field

from typed_config import Section, parse_section

from inference_server.catalog.atomic_dir import atomic_directory
from inference_server.config import BatchingConfig, ConfigError, ModelRepositoryConfig, VersionPolicy
from inference_server.models.degrade import DegradeConfig
from inference_server.models.backend import EncoderBackend, ModelSpec, resolve_weights_dir

__all__ = [
    "ARTIFACT_FORMAT",
    "Artifacts",
    "GoldenSet",
    "ModelRepository",
    "ModelRepositoryConfig",
    "RepositoryError",
    "VersionConfig",
    "VersionEntry",
    "VersionPolicy",
    "build_artifacts",
    "ranking_metrics",
    "select_versions",
]

log = logging.getLogger(__name__)

ARTIFACT_FORMAT = 1
REPO_ROOT = Path(__file__).resolve().parents[2]
_VERSION_RE = re.compile(r"^[1-9][0-9]{0,8}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json",
                    "added_tokens.json", "merges.txt", "vocab.json", "sentencepiece.bpe.model", "spiece.model")


class RepositoryError(ValueError):
    """A model repository problem; the message names the file and key."""


def select_versions(policy: VersionPolicy, available: Sequence[str]) -> list[str]:
    """The versions of `available` that `policy` (the `model_repository.version_policy`) loads."""
    ordered = sorted(available, key=int)
    if policy.kind == "all":
        return ordered
    if policy.kind == "latest":
        return ordered[-policy.num_versions:]
    missing = [v for v in policy.versions if v not in available]
    if missing:
        raise RepositoryError(f"version_policy.versions: {missing} not in the repository (have {ordered})")
    return sorted(set(policy.versions), key=int)


# ---------------------------------------------------------------------------------------------
# Configuration: the `model_repository:` server section and the per-version model.yaml
# ---------------------------------------------------------------------------------------------


class RetrievalConfig(Section):
    """How a version retrieves: dense (cosine), lexical (BM25 over normalised text) or hybrid (fusion).

    Hybrid score = (1 - lexical_weight) * dense cosine + lexical_weight * BM25 / (BM25 max of the query),
    over the union of both retrievers' top `candidates`; `lexical_weight` null = the weight chosen on
    DEV at registration (stored in the version's artefacts)."""

    mode: Literal["dense", "lexical", "hybrid"] = "dense"
    lexical_weight: Optional[Annotated[float, Field(ge=0, le=1)]] = None
    candidates: Annotated[int, Field(ge=1, le=10000)] = 200


class BatchingOverrides(Section):
    """Per-version batching; null keeps the server's `batching:` value."""

    enabled: Optional[bool] = None
    max_batch_size: Optional[Annotated[int, Field(ge=1)]] = None
    max_queue_delay_ms: Optional[Annotated[float, Field(ge=0)]] = None
    max_queue_size: Optional[Annotated[int, Field(ge=1)]] = None

    def apply(self, base: BatchingConfig) -> BatchingConfig:
        return parse_section(BatchingConfig, {**base.model_dump(), **self.model_dump(exclude_none=True)}, "batching")


class VersionConfig(Section):
    """models/<name>/<version>/model.yaml."""

    backend: Literal["auto", "torch", "onnxruntime", "tensorrt"] = "torch"
    weights: Optional[str] = None        # weights dir (relative to the version dir); null = bundled MiniLM
    tokenizer: Optional[str] = None      # tokenizer dir when not the weights dir; null = the weights dir
    device: Optional[Literal["auto", "cpu", "cuda"]] = None   # null = the server's model.device
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    max_seq_length: Annotated[int, Field(ge=2)] = 128
    batching: BatchingOverrides = Field(default_factory=BatchingOverrides)
    degrade: DegradeConfig = Field(default_factory=DegradeConfig)
    description: str = ""
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    parent: Optional[str] = None                     # version this one was fine-tuned from
    training: dict[str, Any] = Field(default_factory=dict)   # training config and outcome (informative)
    data_fingerprint: Optional[str] = None           # sha256 of what it was trained on
    weights_sha256: Optional[str] = None             # sha256 of the safetensors file(s), verified at load


@dataclass
class VersionEntry:
    name: str
    version: str
    path: Path                 # the version directory
    config: VersionConfig

    def model_spec(self, base: ModelSpec, state_dir: Path) -> ModelSpec:
        """The backend spec: paths resolved, device/threads/graph from the server's `model:` section."""
        weights = self._resolve(self.config.weights)
        tokenizer = self._resolve(self.config.tokenizer)
        if tokenizer is not None and tokenizer != (weights or resolve_weights_dir(ModelSpec())):
            weights = _merged_weights_dir(weights or resolve_weights_dir(ModelSpec()), tokenizer,
                                          state_dir / self.name / self.version / "merged-weights")
        return ModelSpec(name=self.name, version=self.version, backend=self.config.backend,
                         weights=str(weights) if weights is not None else None,
                         device=self.config.device or base.device, dtype=self.config.dtype,
                         max_seq_length=self.config.max_seq_length, num_threads=base.num_threads,
                         torch_graph=base.torch_graph,
                         quantization=base.quantization, cache_dir=base.cache_dir, parity_gate=base.parity_gate,
                         engine_max_batch_size=base.engine_max_batch_size,
                         engine_opt_batch_size=base.engine_opt_batch_size)

    def _resolve(self, value: Optional[str]) -> Optional[Path]:
        if value is None:
            return None
        path = Path(value).expanduser()
        return (path if path.is_absolute() else self.path / path).resolve()


def _merged_weights_dir(weights: Path, tokenizer: Path, target: Path) -> Path:
    """A directory of symlinks: the weights dir's files with the tokenizer dir's tokenizer files."""
    if not tokenizer.is_dir():
        raise RepositoryError(f"tokenizer directory {str(tokenizer)!r} does not exist")
    if not any((tokenizer / f).is_file() for f in _TOKENIZER_FILES):
        raise RepositoryError(f"tokenizer directory {str(tokenizer)!r} has no tokenizer files ({', '.join(_TOKENIZER_FILES[:3])}, ...)")
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for src in weights.iterdir():
        if src.is_file() and src.name not in _TOKENIZER_FILES:
            os.symlink(src.resolve(), target / src.name)
    for name in _TOKENIZER_FILES:
        if (tokenizer / name).is_file():
            os.symlink((tokenizer / name).resolve(), target / name)
    return target


# ---------------------------------------------------------------------------------------------
# Artefacts
# ---------------------------------------------------------------------------------------------


@dataclass
class GoldenSet:
    queries: list[str]
    embeddings: np.ndarray          # (n, dim) float32, L2-normalised
    topk_ids: list[list[str]]       # (n, k)
    topk_scores: np.ndarray         # (n, k) float32

    @property
    def k(self) -> int:
        return self.topk_scores.shape[1] if self.topk_scores.ndim == 2 else 0


@dataclass
class Artifacts:
    path: Path
    manifest: dict[str, Any]
    golden: GoldenSet
    drift_reference: dict[str, np.ndarray]
    evaluation: dict[str, Any]


def ranking_metrics(ranked_ids: Sequence[str], judgments: dict[str, float], k: int) -> tuple[float, float]:
    """(NDCG@k with linear graded gains, reciprocal rank of the first product with gain > 0)."""
    gains = [float(judgments.get(pid, 0.0)) for pid in ranked_ids[:k]]
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted((float(g) for g in judgments.values()), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    rr = next((1.0 / (i + 1) for i, g in enumerate(gains) if g > 0), 0.0)
    return (dcg / idcg if idcg > 0 else 0.0), rr


def _progress(total: int, desc: str, enabled: bool, unit: str = "q"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled, file=sys.stderr, leave=False)


def build_artifacts(backend: EncoderBackend, index, bundle, *, golden_queries: int = 16, golden_k: int = 10,
                    drift_queries: int = 500, eval_k: int = 10, batch_size: int = 64,
                    progress: bool = False, retrieval=None) -> tuple[GoldenSet, dict[str, np.ndarray], dict[str, Any]]:
    """Golden set, drift reference and offline evaluation of `backend` on the catalog of `bundle`.

    The golden set checks the encoder (embeddings and dense top-k); the drift reference and the
    evaluation use the version's `retrieval` (dense when None), i.e. the scores /v1/search returns."""
    from inference_server.serving.retrieval import Retrieval, fuse_search

    retrieval = retrieval or Retrieval("dense")
    judged = [q for q in bundle.queries if q.text.strip()]
    texts = [q.text for q in judged] or [p.title for p in bundle.catalog.products]
    if not texts:
        raise RepositoryError("the catalog has neither judged queries nor products to build a golden set from")
    golden_texts = texts[:golden_queries]
    k = min(golden_k, len(index.ids))
    golden_emb = np.asarray(backend.encode(golden_texts), dtype=np.float32)
    scores, rows = index.search(golden_emb, k)
    golden = GoldenSet(golden_texts, golden_emb, [[index.ids[r] for r in row] for row in rows],
                       np.asarray(scores, dtype=np.float32))

    ref_texts = texts[:drift_queries]
    ref_k = min(max(eval_k, 10), len(index.ids))
    top1, spread, tokens = [], [], []
    ndcgs, rrs = [], []
    with _progress(len(ref_texts), "drift reference + offline evaluation", progress) as bar:
        for start in range(0, len(ref_texts), batch_size):
            chunk = ref_texts[start:start + batch_size]
            emb = np.asarray(backend.encode(chunk), dtype=np.float32)
            s, r = index.search(emb, min(retrieval.depth(ref_k), len(index.ids)))
            if retrieval.mode != "dense":
                fused = [fuse_search(retrieval, index, text, e, s_row, r_row, ref_k)
                         for text, e, s_row, r_row in zip(chunk, emb, s, r)]
                s = np.stack([f[0] for f in fused])
                r = np.stack([f[1] for f in fused])
            tokens.extend(backend.token_lengths(chunk))
            depth = min(ref_k, 10) - 1
            top1.extend(float(x) for x in s[:, 0])
            spread.extend(float(x) for x in (s[:, 0] - s[:, depth]))
            for offset in range(len(chunk)):
                query = judged[start + offset] if start + offset < len(judged) else None
                if query is not None and query.judgments:
                    ndcg, rr = ranking_metrics([index.ids[j] for j in r[offset]], dict(query.judgments), eval_k)
                    ndcgs.append(ndcg)
                    rrs.append(rr)
            bar.update(len(chunk))
    drift = {"top1_score": np.asarray(top1, dtype=np.float64), "score_spread": np.asarray(spread, dtype=np.float64),
             "query_tokens": np.asarray(tokens, dtype=np.float64)}
    evaluation = {
        "queries": len(ndcgs),
        f"ndcg_at_{eval_k}": float(np.mean(ndcgs)) if ndcgs else None,
        "mrr": float(np.mean(rrs)) if rrs else None,
        "k": eval_k,
        "definition": "ranking over the whole catalog; NDCG with linear graded gains (unjudged = 0); "
                      "MRR = reciprocal rank of the first product with gain > 0",
    }
    return golden, drift, evaluation


# ---------------------------------------------------------------------------------------------
# The repository
# ---------------------------------------------------------------------------------------------


class ModelRepository:
    """Reads model.yaml files and reads/writes registration artefacts."""

    def __init__(self, root: str | Path, state_dir: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()
        self.state_dir = Path(state_dir).expanduser().resolve()

    @classmethod
    def from_config(cls, cfg: ModelRepositoryConfig) -> "ModelRepository":
        return cls(cfg.root, cfg.state_dir)

    def models(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME_RE.match(p.name) and self.versions(p.name))

    def versions(self, name: str) -> list[str]:
        """Version directories that hold a model.yaml, numerically ordered."""
        base = self.root / name
        if not _NAME_RE.match(name) or not base.is_dir():
            return []
        found = [p.name for p in base.iterdir() if p.is_dir() and _VERSION_RE.match(p.name) and (p / "model.yaml").is_file()]
        return sorted(found, key=int)

    def entry(self, name: str, version: str) -> VersionEntry:
        if not _NAME_RE.match(name):
            raise RepositoryError(f"model name {name!r} is not valid ([A-Za-z0-9_.-], up to 64 characters)")
        if not _VERSION_RE.match(version):
            raise RepositoryError(f"version {version!r} is not a positive integer")
        path = self.root / name / version
        file = path / "model.yaml"
        if not file.is_file():
            raise RepositoryError(f"model {name} version {version}: {file} does not exist")
        try:
            raw = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:  # unreadable, not UTF-8, bad YAML
            raise RepositoryError(f"{file}: cannot read YAML: {exc}") from exc
        try:
            config = parse_section(VersionConfig, raw)
        except ConfigError as exc:
            raise RepositoryError(f"{file}: {exc}") from exc
        return VersionEntry(name, version, path, config)

    def select(self, name: str, policy: VersionPolicy) -> list[str]:
        available = self.versions(name)
        if not available:
            raise RepositoryError(f"model {name!r} has no versions under {self.root / name} (need <version>/model.yaml)")
        return select_versions(policy, available)

    # -- artefacts ---------------------------------------------------------------------------

    @staticmethod
    def _catalog_key(catalog) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", catalog.name)[:40]
        return f"{safe}-{catalog.fingerprint()[:12]}"

    def artifact_dirs(self, name: str, version: str, catalog) -> list[Path]:
        """Where artefacts for this catalog are looked up, in order (shipped first, then state dir)."""
        key = self._catalog_key(catalog)
        return [self.root / name / version / "artifacts" / key, self.state_dir / name / version / key]

    def load_artifacts(self, name: str, version: str, catalog) -> Optional[Artifacts]:
        for path in self.artifact_dirs(name, version, catalog):
            if (path / "manifest.json").is_file():
                return _read_artifacts(path)
        return None

    def write_artifacts(self, name: str, version: str, catalog, golden: GoldenSet, drift: dict[str, np.ndarray],
                        evaluation: dict[str, Any], *, model_fingerprint: str, into_version_dir: bool = False,
                        settings: Optional[dict[str, Any]] = None, extra: Optional[dict[str, Any]] = None) -> Artifacts:
        shipped, state = self.artifact_dirs(name, version, catalog)
        target = shipped if into_version_dir else state
        manifest = {
            "format": ARTIFACT_FORMAT,
            "model": name,
            "version": version,
            "model_fingerprint": model_fingerprint,
            "catalog": catalog.name,
            "catalog_fingerprint": catalog.fingerprint(),
            "catalog_products": len(catalog),
            "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "golden": {"queries": len(golden.queries), "k": golden.k},
            "drift_reference": {f: int(v.size) for f, v in drift.items()},
            "settings": settings or {},
            **(extra or {}),
        }
        with atomic_directory(target) as tmp:
            np.savez(tmp / "golden.npz", queries=np.asarray(golden.queries, dtype=np.str_),
                     embeddings=golden.embeddings.astype(np.float32),
                     topk_ids=np.asarray(golden.topk_ids, dtype=np.str_),
                     topk_scores=golden.topk_scores.astype(np.float32))
            np.savez(tmp / "drift_reference.npz", **{f: np.asarray(v, dtype=np.float64) for f, v in drift.items()})
            (tmp / "evaluation.json").write_text(json.dumps(evaluation, indent=2) + "\n")
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        return _read_artifacts(target)


def _read_artifacts(path: Path) -> Artifacts:
    try:
        manifest = json.loads((path / "manifest.json").read_text())
        if manifest.get("format") != ARTIFACT_FORMAT:
            raise RepositoryError(f"{path}/manifest.json: format {manifest.get('format')!r}, expected {ARTIFACT_FORMAT}")
        with np.load(path / "golden.npz", allow_pickle=False) as g:
            golden = GoldenSet([str(q) for q in g["queries"]], g["embeddings"].astype(np.float32),
                               [[str(x) for x in row] for row in g["topk_ids"]], g["topk_scores"].astype(np.float32))
        with np.load(path / "drift_reference.npz", allow_pickle=False) as d:
            drift = {name: d[name].astype(np.float64) for name in d.files}
        evaluation = json.loads((path / "evaluation.json").read_text())
    except (OSError, ValueError, KeyError) as exc:
        if isinstance(exc, RepositoryError):
            raise
        raise RepositoryError(f"artefacts in {path} are unreadable: {exc}") from exc
    return Artifacts(path, manifest, golden, drift, evaluation)


# ---------------------------------------------------------------------------------------------
# CLI: python -m inference_server.lifecycle.repository register|list
# ---------------------------------------------------------------------------------------------


def _write_model_yaml(path: Path, args: argparse.Namespace) -> None:
    doc: dict[str, Any] = {"backend": args.backend, "weights": args.weights, "tokenizer": args.tokenizer,
                           "dtype": args.dtype, "max_seq_length": args.max_seq_length}
    if getattr(args, "retrieval", None):
        doc["retrieval"] = {"mode": args.retrieval}
    if args.degrade_noise:
        doc["degrade"] = {"embedding_noise": args.degrade_noise, "seed": args.degrade_seed}
    if args.description:
        doc["description"] = args.description
    path.mkdir(parents=True, exist_ok=True)
    (path / "model.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def main(argv: Optional[Sequence[str]] = None) -> int:
    from inference_server.config import load_config

    parser = argparse.ArgumentParser(prog="python -m inference_server.lifecycle.repository",
                                     description="Model repository: list versions, their model.yaml and artefacts "
                                                 "(register with python -m inference_server.lifecycle.registration).")
    parser.add_argument("--config", help="server config YAML (default: config/inference_server.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    lst = sub.add_parser("list", help="list versions, their model.yaml and artefact status")
    lst.add_argument("--model", default=None, help="only this model")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    rcfg: ModelRepositoryConfig = config.model_repository
    repo = ModelRepository.from_config(rcfg)
    try:
        from inference_server.catalog import load_catalog

        catalog = load_catalog(config.catalog).catalog
        names = [args.model] if args.model else repo.models()
        rows = []
        for name in names:
            for version in repo.versions(name):
                entry = repo.entry(name, version)
                art = repo.load_artifacts(name, version, catalog)
                rows.append({"model": name, "version": version, "backend": entry.config.backend,
                             "weights": entry.config.weights or "(bundled MiniLM)", "dtype": entry.config.dtype,
                             "degrade": entry.config.degrade.model_dump() if entry.config.degrade.active else None,
                             "description": entry.config.description,
                             "artifacts": str(art.path) if art else None,
                             "evaluation": art.evaluation if art else None})
        print(json.dumps({"root": str(repo.root), "catalog": catalog.name, "versions": rows}, indent=2))
        return 0
    except RepositoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    from inference_server.lifecycle.repository import main as _main  # the importable module's classes and sections

    sys.exit(_main())
