"""Registration: the only place that writes a version's artefacts, and their verification at load.

    python -m inference_server.lifecycle.registration register --version 1      # make register (base model)
    python -m inference_server.lifecycle.registration register --policy --missing-only
    python -m inference_server.lifecycle.registration verify --version 3

Registering a version loads its weights, builds its catalog indexes and writes, per catalog, the
golden set, the drift reference and the offline evaluation (NDCG@10 and recall@100 on the DEV and TEST
splits beside its parent and normalised BM25, through the same `fuse_search` as /v1/search); a hybrid
version's fusion weight is chosen here on DEV when its model.yaml does not fix one. The manifest
records the sha256 of the weights (safetensors) and of every artefact file.

At load (`verify_registration`, called by the lifecycle before the golden check) the server refuses
a version with no artefacts, with artefact files whose sha256 differs from the manifest, or with
weights whose sha256 differs from the registered one (and from model.yaml's `weights_sha256`).
The server never registers the version it is about to check.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from inference_server.catalog.index import VectorIndex, encode_texts
from inference_server.catalog.lexical_index import LexicalIndex, normaliser_fingerprint
from inference_server.catalog.splits import select_split
from inference_server.config import ConfigError, ModelRepositoryConfig
from inference_server.lifecycle.health import CheckResult
from inference_server.lifecycle.repository import (
    _VERSION_RE,
    Artifacts,
    ModelRepository,
    RepositoryError,
    _write_model_yaml,
    build_artifacts,
)
from inference_server.models.backend import ModelSpec, resolve_weights_dir
from inference_server.models.fingerprint import file_sha256
from inference_server.serving.retrieval import DEFAULT_LEXICAL_WEIGHT, Retrieval, fuse_search

__all__ = [
    "ARTIFACT_FILES",
    "RegistrationError",
    "check_registration",
    "evaluate_retrieval",
    "choose_lexical_weight",
    "register_version",
    "stale_lexical_rules",
    "verify_registration",
    "weights_sha256",
]

log = logging.getLogger(__name__)

ARTIFACT_FILES = ("golden.npz", "drift_reference.npz", "evaluation.json")
WEIGHT_GRID = tuple(round(x * 0.05, 2) for x in range(21))
RECALL_RELEVANCE = 2.5


class RegistrationError(RepositoryError):
    """A version is not registered, or what is on disk is not what was registered."""


def weights_sha256(weights_dir: Path) -> str:
    """sha256 over the sha256 of each *.safetensors file of a weights directory, in name order."""
    files = sorted(Path(weights_dir).glob("*.safetensors"))
    if not files:
        raise RegistrationError(f"no *.safetensors in {weights_dir}")
    if len(files) == 1:
        return file_sha256(files[0])
    digest = hashlib.sha256()
    for file in files:
        digest.update(f"{file.name}:{file_sha256(file)}\n".encode())
    return digest.hexdigest()


def _file_hashes(path: Path) -> dict[str, str]:
    return {name: hashlib.sha256((path / name).read_bytes()).hexdigest() for name in ARTIFACT_FILES}


# ---------------------------------------------------------------------------------------------- evaluation


def _ndcg_gain_minus_one(ranked: Sequence[str], judgments: dict[str, float], k: int) -> Optional[float]:
    """NDCG@k with gain = label - 1 (unjudged = 0); None when the query has no gain to find."""
    ideal = sorted((max(0.0, g - 1.0) for g in judgments.values()), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    if idcg <= 0:
        return None
    dcg = sum(max(0.0, judgments.get(pid, 0.0) - 1.0) / math.log2(i + 2) for i, pid in enumerate(ranked[:k]))
    return dcg / idcg


class RetrievalMetrics:
    """NDCG@k (gain = label - 1) and recall@depth (label >= 2.5) accumulated over queries."""

    def __init__(self, k: int, depth: int) -> None:
        self.k, self.depth = k, depth
        self.ndcgs: list[float] = []
        self.recalls: list[float] = []

    def add(self, ranked: Sequence[str], judgments: dict[str, float]) -> None:
        value = _ndcg_gain_minus_one(ranked, judgments, self.k)
        if value is not None:
            self.ndcgs.append(value)
        relevant = {pid for pid, g in judgments.items() if g >= RECALL_RELEVANCE}
        if relevant:
            self.recalls.append(len(relevant & set(ranked)) / len(relevant))

    def result(self, queries: int) -> dict[str, Any]:
        return {f"ndcg_at_{self.k}": float(np.mean(self.ndcgs)) if self.ndcgs else None,
                f"recall_at_{self.depth}": float(np.mean(self.recalls)) if self.recalls else None,
                "queries": queries, "ndcg_queries": len(self.ndcgs), "recall_queries": len(self.recalls)}


def evaluate_retrieval(queries, index: VectorIndex, query_vectors: Optional[np.ndarray], retrieval: Retrieval, *,
                       k: int = 10, depth: int = 100, block: int = 256,
                       dense_hits: Optional[tuple[np.ndarray, np.ndarray]] = None) -> dict[str, Any]:
    """NDCG@k (gain = label - 1) and recall@depth (label >= 2.5) of full-catalog retrieval, each query
    answered by `fuse_search` exactly as /v1/search answers it."""
    ids = index.ids if index is not None else retrieval.lexical.ids
    depth = min(depth, len(ids))
    metrics = RetrievalMetrics(k, depth)
    for start in range(0, len(queries), block):
        chunk = queries[start:start + block]
        if retrieval.uses_dense and dense_hits is not None:     # precomputed (deep enough) dense top hits
            want = min(retrieval.depth(depth), len(ids))
            scores, rows = dense_hits[0][start:start + len(chunk), :want], dense_hits[1][start:start + len(chunk), :want]
        elif retrieval.uses_dense:
            scores, rows = index.search(query_vectors[start:start + len(chunk)], min(retrieval.depth(depth), len(ids)))
        for offset, query in enumerate(chunk):
            qv = query_vectors[start + offset] if retrieval.uses_dense else None
            _, found = fuse_search(retrieval, index, query.text, qv,
                                   scores[offset] if retrieval.uses_dense else None,
                                   rows[offset] if retrieval.uses_dense else None, depth)
            metrics.add([ids[r] for r in found], dict(query.judgments))
    return metrics.result(len(queries))


def choose_lexical_weight(queries, index: VectorIndex, query_vectors: np.ndarray, lexical: LexicalIndex, *,
                          candidates: int = 200, k: int = 10, depth: int = 100) -> tuple[float, dict[str, dict]]:
    """The fusion weight with the best DEV NDCG@k + recall@depth on the grid 0, 0.05, ..., 1 (ties: the
    smaller weight). Both count because a search answer must rank well (NDCG) and miss little (recall);
    NDCG alone picks weights whose NDCG differs by the third decimal while recall falls by the second."""
    table = {}
    hits = index.search(query_vectors, min(max(candidates, depth), len(index.ids)))   # the dense half, once
    for weight in WEIGHT_GRID:
        retrieval = Retrieval("hybrid", lexical, weight, candidates)
        figures = evaluate_retrieval(queries, index, query_vectors, retrieval, k=k, depth=depth, dense_hits=hits)
        table[f"{weight:.2f}"] = {f"ndcg_at_{k}": figures[f"ndcg_at_{k}"] or 0.0,
                                  f"recall_at_{depth}": figures[f"recall_at_{depth}"] or 0.0}
    best = max(WEIGHT_GRID, key=lambda w: (sum(table[f"{w:.2f}"].values()), -w))
    return best, table


# ---------------------------------------------------------------------------------------------- registration


def register_version(config, repo: ModelRepository, name: str, version: str, *, progress: bool = True,
                     into_version_dir: bool = False, backend_factory=None) -> Artifacts:
    """Load a version, build its indexes, choose its fusion weight, evaluate it and write its artefacts."""
    from inference_server.catalog import load_catalog
    from inference_server.lifecycle.repository import _progress
    from inference_server.models.degrade import maybe_degrade
    from inference_server.models.parity import enforce_parity
    from inference_server.models.registry import create_backend

    factory = backend_factory or create_backend
    rcfg: ModelRepositoryConfig = config.model_repository
    entry = repo.entry(name, version)
    spec = entry.model_spec(config.model, repo.state_dir)
    weights_dir = resolve_weights_dir(ModelSpec(weights=spec.weights))
    sha = weights_sha256(weights_dir)
    if entry.config.weights_sha256 and entry.config.weights_sha256 != sha:
        raise RegistrationError(f"model {name} version {version}: weights sha256 {sha[:16]} differs from model.yaml's "
                                f"weights_sha256 {entry.config.weights_sha256[:16]}; refusing to register them")
    steps = _progress(5, f"register {name}/{version}", progress, unit="step")
    with steps:
        steps.set_postfix_str("catalog")
        bundle = load_catalog(config.catalog)
        catalog = bundle.catalog
        steps.update()
        steps.set_postfix_str("weights")
        raw = factory(spec)
        backend = maybe_degrade(raw, entry.config.degrade)
        steps.update()
        try:
            if backend_factory is None:
                enforce_parity(raw)   # a backend/precision unlike the float32 reference is not registered
            steps.set_postfix_str("indexes")
            index = VectorIndex.build(catalog, backend, config.catalog.cache_dir, progress=progress)
            rc = entry.config.retrieval
            lexical = LexicalIndex.build(catalog, config.catalog.cache_dir, progress=progress)
            steps.update()
            steps.set_postfix_str("evaluation (DEV, TEST)")
            fusion, evaluation_splits = _evaluate_splits(config, repo, name, entry, bundle, backend, index, lexical,
                                                         progress=progress, factory=factory)
            weight = rc.lexical_weight if rc.lexical_weight is not None else fusion.get("lexical_weight", DEFAULT_LEXICAL_WEIGHT)
            retrieval = Retrieval(rc.mode, lexical if rc.mode != "dense" else None, weight, rc.candidates, catalog)
            steps.update()
            steps.set_postfix_str("golden set, drift reference")
            golden, drift, evaluation = build_artifacts(
                backend, index, bundle, golden_queries=rcfg.golden_queries, golden_k=rcfg.golden_k,
                drift_queries=rcfg.drift_reference_queries, eval_k=rcfg.eval_k, progress=progress, retrieval=retrieval)
            evaluation.update(evaluation_splits)
            evaluation["fusion"] = fusion
            steps.update()
            art = repo.write_artifacts(
                name, version, catalog, golden, drift, evaluation, model_fingerprint=backend.fingerprint(),
                into_version_dir=into_version_dir,
                settings={"golden_k": rcfg.golden_k, "eval_k": rcfg.eval_k},
                extra={"weights_sha256": sha,
                       "retrieval": {**retrieval.describe(), "lexical_weight": weight,
                                     "normaliser_fingerprint": normaliser_fingerprint()}})
        finally:
            backend.close()
    # file hashes last: the manifest names what was written
    manifest = dict(art.manifest)
    manifest["files_sha256"] = _file_hashes(art.path)
    (art.path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    art.manifest = manifest
    return art


def _evaluate_splits(config, repo, name, entry, bundle, backend, index, lexical, *, progress, factory):
    """(fusion choice, {"dev": {...}, "test": {...}}) for this version, its parent and normalised BM25."""
    from inference_server.models.degrade import maybe_degrade

    rc = entry.config.retrieval
    splits = {s: [q for q in select_split(bundle.queries, s) if q.judgments] for s in ("dev", "test")}
    vectors = {s: encode_texts(backend, [q.text.strip() for q in qs], 256, progress, desc=f"encoding {s} queries")
               if qs else np.zeros((0, backend.dim), np.float32) for s, qs in splits.items()}
    fusion: dict[str, Any] = {}
    if splits["dev"]:
        weight, grid = choose_lexical_weight(splits["dev"], index, vectors["dev"], lexical, candidates=rc.candidates)
        fusion = {"lexical_weight": weight, "chosen_on": "dev", "dev_by_weight": grid,
                  "formula": "(1 - w) * cosine + w * bm25 / max bm25 over the candidates"}
    weight = rc.lexical_weight if rc.lexical_weight is not None else fusion.get("lexical_weight", DEFAULT_LEXICAL_WEIGHT)
    out: dict[str, Any] = {}
    parent_parts = None
    if entry.config.parent and entry.config.parent in repo.versions(name):
        parent = repo.entry(name, entry.config.parent)
        parent_backend = maybe_degrade(factory(parent.model_spec(config.model, repo.state_dir)), parent.config.degrade)
        parent_index = VectorIndex.build(bundle.catalog, parent_backend, config.catalog.cache_dir, progress=progress)
        parent_vectors = {s: encode_texts(parent_backend, [q.text.strip() for q in qs], 256, progress,
                                          desc=f"parent: encoding {s} queries") if qs else None for s, qs in splits.items()}
        parent_parts = (parent, parent_index, parent_vectors)
        parent_backend.close()
    for split, queries in splits.items():
        if not queries:
            continue
        rows = {
            f"v{entry.version} dense": evaluate_retrieval(queries, index, vectors[split], Retrieval("dense")),
            f"v{entry.version} hybrid (w={weight:.2f})": evaluate_retrieval(
                queries, index, vectors[split], Retrieval("hybrid", lexical, weight, rc.candidates)),
            "bm25 normalised": evaluate_retrieval(queries, index, None, Retrieval("lexical", lexical)),
        }
        if parent_parts is not None:
            parent, parent_index, parent_vectors = parent_parts
            rows[f"parent v{parent.version} dense"] = evaluate_retrieval(queries, parent_index, parent_vectors[split],
                                                                         Retrieval("dense"))
            rows[f"parent v{parent.version} hybrid (w={weight:.2f})"] = evaluate_retrieval(
                queries, parent_index, parent_vectors[split], Retrieval("hybrid", lexical, weight, rc.candidates))
        out[split] = {"served_mode": rc.mode, "methods": rows}
    return fusion, out


# ---------------------------------------------------------------------------------------------- verification


def stale_lexical_rules(artifacts: Artifacts) -> Optional[str]:
    """Why a lexical or hybrid registration no longer fits this server's BM25 rules (its fusion weight and
    evaluation were measured with other normaliser / BM25 / speller rules), or None when it fits."""
    retrieval = artifacts.manifest.get("retrieval") or {}
    if retrieval.get("mode", "dense") == "dense":
        return None
    registered = retrieval.get("normaliser_fingerprint")
    if registered == normaliser_fingerprint():
        return None
    return (f"registered with lexical rules {str(registered)[:12]}, this server's are {normaliser_fingerprint()[:12]} "
            f"(the BM25 normaliser changed); register it again")


def verify_registration(artifacts: Optional[Artifacts], weights_dir: Path, *, model_yaml_sha256: Optional[str],
                        where: str) -> str:
    """Raise RegistrationError unless the artefacts exist, their files match the manifest's sha256 and
    the weights match the registered sha256. Returns a one-line detail for the health record."""
    if artifacts is None:
        raise RegistrationError(f"{where} is not registered for this catalog; run `python -m "
                                f"inference_server.lifecycle.registration register --version <v>` (make register)")
    manifest = artifacts.manifest
    recorded = manifest.get("files_sha256")
    if not isinstance(recorded, dict) or set(recorded) != set(ARTIFACT_FILES):
        raise RegistrationError(f"{where}: {artifacts.path}/manifest.json has no artefact sha256 (registered by an "
                                f"older version); register it again")
    actual = _file_hashes(artifacts.path)
    changed = sorted(n for n in ARTIFACT_FILES if actual[n] != recorded[n])
    if changed:
        raise RegistrationError(f"{where}: artefact file(s) {', '.join(changed)} in {artifacts.path} changed after "
                                f"registration (sha256 mismatch); refusing to trust its golden set")
    sha = weights_sha256(weights_dir)
    registered = manifest.get("weights_sha256")
    if registered != sha:
        raise RegistrationError(f"{where}: weights sha256 {sha[:16]} differs from the registered {str(registered)[:16]} "
                                f"({weights_dir}); register the new weights as a new version")
    if model_yaml_sha256 and model_yaml_sha256 != sha:
        raise RegistrationError(f"{where}: weights sha256 {sha[:16]} differs from model.yaml's weights_sha256 "
                                f"{model_yaml_sha256[:16]}")
    stale = stale_lexical_rules(artifacts)
    if stale:
        raise RegistrationError(f"{where}: {stale}")
    return f"weights sha256 {sha[:12]} and {len(ARTIFACT_FILES)} artefact files match the registration"


def check_registration(artifacts: Optional[Artifacts], weights_dir: Path, *, model_yaml_sha256: Optional[str],
                       where: str) -> CheckResult:
    """`verify_registration` as the `registration` health check of a load."""
    try:
        return CheckResult("registration", True, verify_registration(artifacts, weights_dir,
                                                                      model_yaml_sha256=model_yaml_sha256, where=where),
                           time.time())
    except RegistrationError as exc:
        return CheckResult("registration", False, str(exc), time.time())


# ---------------------------------------------------------------------------------------------- CLI


def _print_evaluation(art: Artifacts) -> None:
    ev = art.evaluation
    for split in ("dev", "test"):
        if split not in ev:
            continue
        print(f"{split.upper()} ({ev[split]['served_mode']} served)")
        for method, m in ev[split]["methods"].items():
            print(f"  {method:<36} NDCG@10 {m['ndcg_at_10'] or 0:.4f}  recall@100 {m.get('recall_at_100') or 0:.4f}  "
                  f"({m['queries']} queries)")
    if ev.get("fusion"):
        print(f"fusion weight chosen on DEV: {ev['fusion']['lexical_weight']}")


def ensure_registered(config, *, backend_factory=None, progress: bool = False) -> list[str]:
    """Register the versions of the version policy that have no artefacts for the configured catalog, or
    whose lexical rules are stale (a set-up step run before the server starts: `make register`, the stack runner, test fixtures)."""
    from inference_server.catalog import load_catalog

    repo = ModelRepository.from_config(config.model_repository)
    if not config.model_repository.enabled:
        return []
    catalog = load_catalog(config.catalog).catalog
    done = []
    for version in repo.select(config.model.name, config.model_repository.version_policy):
        existing = repo.load_artifacts(config.model.name, version, catalog)
        if existing is None or stale_lexical_rules(existing):
            register_version(config, repo, config.model.name, version, progress=progress,
                             backend_factory=backend_factory)
            done.append(version)
    return done


def register_main(config, repo: ModelRepository, name: str, version: str, *, progress: bool = True,
                  into_version_dir: bool = False) -> int:
    started = time.perf_counter()
    try:
        art = register_version(config, repo, name, version, progress=progress, into_version_dir=into_version_dir)
    except RepositoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"registered {name}/{version} in {time.perf_counter() - started:.1f} s -> {art.path}")
    _print_evaluation(art)
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    from inference_server.catalog import load_catalog
    from inference_server.config import load_config

    parser = argparse.ArgumentParser(prog="python -m inference_server.lifecycle.registration",
                                     description="Register model versions (write golden set, drift reference, "
                                                 "offline evaluation, sha256 of weights and artefacts) or verify them.")
    parser.add_argument("--config", help="server config YAML (default: config/inference_server.yaml)")
    sub = parser.add_subparsers(dest="command", required=True)
    for command, text in (("register", "register versions (writes their artefacts)"),
                          ("verify", "check artefacts and weights against their registration")):
        p = sub.add_parser(command, help=text, description=text)
        p.add_argument("--model", default=None, help="model name (default: the config's model.name)")
        which = p.add_mutually_exclusive_group(required=True)
        which.add_argument("--version", action="append", help="version (repeatable)")
        which.add_argument("--policy", action="store_true", help="the versions model_repository.version_policy loads")
        which.add_argument("--all", action="store_true", help="every version in the repository (drills included)")
        if command == "register":
            p.add_argument("--missing-only", action="store_true", help="skip versions already registered for this catalog")
            p.add_argument("--into-version-dir", action="store_true",
                           help="write artefacts under models/<name>/<version>/artifacts/ instead of the state dir")
            p.add_argument("--no-progress", action="store_true")
            new = p.add_argument_group("model.yaml of a new version (externally trained weights; ignored when it exists)")
            new.add_argument("--backend", default="torch", choices=("auto", "torch", "onnxruntime", "tensorrt"))
            new.add_argument("--weights", default=None, help="weights directory (default: the bundled MiniLM)")
            new.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the weights directory)")
            new.add_argument("--dtype", default="auto", choices=("auto", "float32", "float16", "bfloat16"))
            new.add_argument("--max-seq-length", type=int, default=128)
            new.add_argument("--retrieval", default=None, choices=("dense", "lexical", "hybrid"))
            new.add_argument("--degrade-noise", type=float, default=0.0, help="degrade: embedding_noise (drills)")
            new.add_argument("--degrade-seed", type=int, default=0)
            new.add_argument("--description", default="")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    repo = ModelRepository.from_config(config.model_repository)
    name = args.model or config.model.name
    try:
        versions = args.version or (repo.versions(name) if args.all else
                                    repo.select(name, config.model_repository.version_policy))
        if args.command == "register":
            status = 0
            catalog = load_catalog(config.catalog).catalog if args.missing_only else None
            for version in versions:
                path = repo.root / name / version
                if args.version and not (path / "model.yaml").is_file():
                    if not _VERSION_RE.match(version):
                        raise RepositoryError(f"version {version!r} is not a positive integer")
                    _write_model_yaml(path, args)
                    print(f"wrote {path / 'model.yaml'}")
                existing = repo.load_artifacts(name, version, catalog) if catalog is not None else None
                if existing is not None and not stale_lexical_rules(existing):
                    print(f"{name}/{version}: already registered for catalog {catalog.name}")
                    continue
                status = max(status, register_main(config, repo, name, version, progress=not args.no_progress,
                                                   into_version_dir=args.into_version_dir))
            return status
        catalog = load_catalog(config.catalog).catalog
        for version in versions:
            entry = repo.entry(name, version)
            spec = entry.model_spec(config.model, repo.state_dir)
            detail = verify_registration(repo.load_artifacts(name, version, catalog),
                                         resolve_weights_dir(ModelSpec(weights=spec.weights)),
                                         model_yaml_sha256=entry.config.weights_sha256, where=f"{name}/{version}")
            print(f"{name}/{version}: {detail}")
        return 0
    except RepositoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    from inference_server.lifecycle.registration import main as _main

    sys.exit(_main())
