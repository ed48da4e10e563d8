"""Fine-tune the encoder on judged pairs (and, optionally, logged clicks) into a new model version.

    python -m inference_server.training --time-budget 3600          # make finetune
    python -m inference_server.training --help

What it does, in order:
1. reads the judged (query, product, relevance) pairs of the catalog (Home Depot by default) and keeps
   the TRAIN split only (`catalog/splits.py`: DEV and TEST queries are never trained on); pairs with
   relevance >= `--min-relevance` are positives. `--pairs` adds your own judged pairs (CSV
   query,product_id,relevance) and `--click-log` the server's own feedback (JSONL
   {"query", "clicked": [...], "skipped": [...]}: clicked = positive, skipped = hard negative);
   their queries obey the same split;
2. trains the parent version's encoder with the multiple-negatives ranking loss (in-batch negatives,
   plus a hard negative per example where one is known), a fixed seed, AdamW with linear warm-up and
   decay, and a wall-clock `--time-budget` (the schedule is re-planned to the budget after the first
   steps); a progress bar shows loss, steps and the ETA;
3. writes a complete version directory `<model_repository.root>/<name>/<version>/`: `weights/`
   (safetensors, config, tokenizer; ignored by git) and `model.yaml` (parent, retrieval mode,
   training config, data fingerprint, weights sha256);
4. registers it (`lifecycle.registration`): golden set, drift reference, offline evaluation on DEV and
   TEST beside the parent and BM25, and the hybrid fusion weight chosen on DEV (`--no-register` skips).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
import os
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional, Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

from inference_server.catalog import CatalogBundle, CatalogConfig, load_catalog  # noqa: E402
from inference_server.catalog.splits import query_split  # noqa: E402

__all__ = ["TrainingConfig", "TrainingExample", "build_examples", "main", "train"]

log = logging.getLogger(__name__)


@dataclass
class TrainingConfig:
    """Everything that determines a training run (recorded in the version's model.yaml)."""

    seed: int = 0
    batch_size: int = 64
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.05
    weight_decay: float = 0.01
    epochs: float = 1.0
    time_budget_s: Optional[float] = None
    min_relevance: float = 2.33
    max_negative_relevance: float = 1.67
    hard_negatives: bool = True
    scale: float = 20.0                 # MNRL temperature: cosine * scale are the logits
    query_max_length: int = 32
    product_max_length: int = 64
    bf16: bool = False                  # CPU autocast (AVX512-BF16) / CUDA autocast
    num_threads: Optional[int] = None
    max_examples: Optional[int] = None  # tiny slices for tests


@dataclass
class TrainingExample:
    query: str
    positive: str
    negative: Optional[str] = None


@dataclass
class TrainingResult:
    steps: int = 0
    examples_seen: int = 0
    epochs: float = 0.0
    seconds: float = 0.0
    final_loss: Optional[float] = None
    stopped_by: str = "epochs"
    losses: list[float] = field(default_factory=list)


# --------------------------------------------------------------------------- data


def _read_pairs_csv(path: Path) -> list[tuple[str, str, float]]:
    """Your own judged pairs: CSV with a header `query,product_id,relevance`."""
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"query", "product_id", "relevance"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        for line, row in enumerate(reader, start=2):
            try:
                rows.append((row["query"], row["product_id"], float(row["relevance"])))
            except ValueError:
                raise ValueError(f"{path}: line {line}, column relevance: expected a number, got {row['relevance']!r}") from None
    return rows


def _read_click_log(path: Path) -> list[tuple[str, list[str], list[str]]]:
    """Logged feedback: JSONL lines {"query", "clicked": [ids], "skipped": [ids shown above a click, not clicked]}."""
    out = []
    with path.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                out.append((str(item["query"]), [str(x) for x in item.get("clicked", [])],
                            [str(x) for x in item.get("skipped", [])]))
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"{path}: line {line_no}: expected {{\"query\", \"clicked\", \"skipped\"}}: {exc}") from None
    return out


def build_examples(bundle: CatalogBundle, cfg: TrainingConfig, *, pairs: Sequence[tuple[str, str, float]] = (),
                   clicks: Sequence[tuple[str, list[str], list[str]]] = ()) -> dict[str, tuple[list[str], list[str]]]:
    """TRAIN-split query -> (positive texts, hard-negative texts). DEV/TEST queries are dropped."""
    catalog = bundle.catalog
    table: dict[str, tuple[list[str], list[str]]] = {}

    def add(query: str, product_id: str, positive: bool) -> None:
        key = query.strip()
        product = catalog.get(product_id)
        if not key or product is None or query_split(key) != "train":
            return
        pos, neg = table.setdefault(key, ([], []))
        (pos if positive else neg).append(product.text())

    for query in bundle.queries:
        for product_id, grade in query.judgments.items():
            if grade >= cfg.min_relevance:
                add(query.text, product_id, True)
            elif grade <= cfg.max_negative_relevance:
                add(query.text, product_id, False)
    for query, product_id, grade in pairs:
        if grade >= cfg.min_relevance:
            add(query, product_id, True)
        elif grade <= cfg.max_negative_relevance:
            add(query, product_id, False)
    for query, clicked, skipped in clicks:
        for product_id in clicked:
            add(query, product_id, True)
        for product_id in skipped:
            add(query, product_id, False)
    return {q: v for q, v in table.items() if v[0]}


def epoch_examples(table: dict[str, tuple[list[str], list[str]]], rng: random.Random,
                   hard_negatives: bool) -> list[TrainingExample]:
    """One pass: every query once (so no query meets itself as an in-batch negative), a random positive."""
    out = []
    for query in sorted(table):
        positives, negatives = table[query]
        negative = rng.choice(negatives) if hard_negatives and negatives else None
        out.append(TrainingExample(query, rng.choice(positives), negative))
    rng.shuffle(out)
    return out


def data_fingerprint(bundle: CatalogBundle, table: dict[str, tuple[list[str], list[str]]]) -> str:
    """sha256 over the catalog fingerprint and the training pairs: what the weights were trained on."""
    digest = hashlib.sha256(bundle.catalog.fingerprint().encode())
    for query in sorted(table):
        positives, negatives = table[query]
        digest.update(json.dumps([query, sorted(positives), sorted(negatives)]).encode("utf-8"))
    return digest.hexdigest()


# --------------------------------------------------------------------------- training


def _format_eta(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 3600:d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def train(weights_dir: Path, table: dict[str, tuple[list[str], list[str]]], cfg: TrainingConfig, output_dir: Path,
          *, progress: bool = True) -> TrainingResult:
    """Fine-tune the encoder in `weights_dir` and save it (safetensors + tokenizer) to `output_dir`."""
    import torch
    from tqdm import tqdm
    from transformers import AutoModel, AutoTokenizer

    from inference_server.models.pooling import SentenceEncoder

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer = AutoTokenizer.from_pretrained(str(weights_dir), local_files_only=True, use_fast=True)
    transformer = AutoModel.from_pretrained(str(weights_dir), local_files_only=True)
    encoder = SentenceEncoder(transformer).to(device).train()

    per_epoch = len(table) if cfg.max_examples is None else min(len(table), cfg.max_examples)
    if per_epoch < 2:
        raise ValueError(f"need at least 2 training queries, have {per_epoch}")
    batch = min(cfg.batch_size, per_epoch)
    steps_per_epoch = max(1, per_epoch // batch)
    planned = max(1, int(math.ceil(steps_per_epoch * cfg.epochs)))
    no_decay = ("bias", "LayerNorm.weight", "layer_norm.weight")
    params = [
        {"params": [p for n, p in encoder.named_parameters() if not any(x in n for x in no_decay)],
         "weight_decay": cfg.weight_decay},
        {"params": [p for n, p in encoder.named_parameters() if any(x in n for x in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate)
    total = {"steps": planned}

    def lr_at(step: int) -> float:
        warm = max(1, int(total["steps"] * cfg.warmup_ratio))
        if step < warm:
            return cfg.learning_rate * (step + 1) / warm
        return cfg.learning_rate * max(0.0, (total["steps"] - step) / max(1, total["steps"] - warm))

    def embed(texts: list[str], max_length: int) -> "torch.Tensor":
        enc = tokenizer(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt",
                        return_token_type_ids=False)
        return encoder(enc["input_ids"].to(device), enc["attention_mask"].to(device))

    autocast = torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cfg.bf16)
    result = TrainingResult()
    started = time.perf_counter()
    bar = tqdm(total=planned, desc="fine-tuning", unit="step", disable=not progress, file=sys.stderr,
               dynamic_ncols=True, mininterval=5.0)
    step, epoch = 0, 0
    while step < total["steps"]:
        examples = epoch_examples(table, rng, cfg.hard_negatives)[:per_epoch]
        for start in range(0, len(examples) - batch + 1, batch):
            if step >= total["steps"]:
                break
            chunk = examples[start:start + batch]
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step)
            with autocast:
                queries = embed([e.query for e in chunk], cfg.query_max_length)
                docs = [e.positive for e in chunk] + [e.negative for e in chunk if e.negative is not None]
                products = embed(docs, cfg.product_max_length)
                logits = (queries.float() @ products.float().T) * cfg.scale
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(chunk), device=device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(encoder.parameters(), 1.0)
            optimizer.step()
            step += 1
            result.examples_seen += len(chunk)
            value = float(loss.detach())
            result.losses.append(value)
            elapsed = time.perf_counter() - started
            if cfg.time_budget_s is not None and step == 10:
                # re-plan the schedule so it ends (learning rate decayed to 0) inside the budget
                affordable = int(cfg.time_budget_s / (elapsed / step))
                if affordable < total["steps"]:
                    total["steps"] = max(step + 1, affordable)
                    bar.total = total["steps"]
            bar.update(1)
            recent = result.losses[-50:]
            bar.set_postfix(loss=f"{sum(recent) / len(recent):.3f}", epoch=f"{result.examples_seen / per_epoch:.2f}",
                            eta=_format_eta(elapsed / step * (total["steps"] - step)), refresh=False)
            if cfg.time_budget_s is not None and elapsed >= cfg.time_budget_s:
                result.stopped_by = "time_budget"
                total["steps"] = step
                break
        epoch += 1
    bar.close()
    result.steps = step
    result.epochs = result.examples_seen / per_epoch
    result.seconds = time.perf_counter() - started
    recent = result.losses[-50:]
    result.final_loss = sum(recent) / len(recent) if recent else None
    output_dir.mkdir(parents=True, exist_ok=True)
    encoder.eval()
    transformer.save_pretrained(str(output_dir), safe_serialization=True)
    tokenizer.save_pretrained(str(output_dir))
    return result


# --------------------------------------------------------------------------- CLI


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m inference_server.training",
                                description="Fine-tune the encoder on the TRAIN split of judged pairs (and optional "
                                            "click logs) and write + register a new model version.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--config", help="server config YAML (model repository, catalog); default config/inference_server.yaml")
    p.add_argument("--catalog", choices=("homedepot", "synthetic"), default="homedepot", help="judged data to train on")
    p.add_argument("--data-dir", default=None, help="Home Depot data directory")
    p.add_argument("--max-queries", type=int, default=None, help="Home Depot: first N queries only (tiny runs)")
    p.add_argument("--pairs", type=Path, default=None, help="extra judged pairs CSV: query,product_id,relevance")
    p.add_argument("--click-log", type=Path, default=None,
                   help="logged feedback JSONL: {\"query\", \"clicked\": [ids], \"skipped\": [ids]}")
    p.add_argument("--model", default=None, help="model name (default: the config's model.name)")
    p.add_argument("--parent", default="1", help="version whose weights are fine-tuned")
    p.add_argument("--version", default=None, help="new version number (default: the next free one)")
    p.add_argument("--retrieval", choices=("dense", "lexical", "hybrid"), default="hybrid",
                   help="retrieval mode written to the new model.yaml")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--epochs", type=float, default=1.0)
    p.add_argument("--time-budget", type=float, default=None, help="stop training after this many seconds")
    p.add_argument("--min-relevance", type=float, default=2.33, help="judged pairs at or above are positives")
    p.add_argument("--no-hard-negatives", action="store_true", help="in-batch negatives only")
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                   help="bfloat16 autocast (auto: on where the CPU has AVX512-BF16 or on CUDA)")
    p.add_argument("--num-threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--max-examples", type=int, default=None, help="training queries per epoch (tiny runs)")
    p.add_argument("--no-register", action="store_true", help="write weights and model.yaml only")
    p.add_argument("--description", default="", help="model.yaml description")
    p.add_argument("--no-progress", action="store_true")
    return p


def _bf16_supported() -> bool:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return "avx512_bf16" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    import yaml

    from inference_server.config import ConfigError, load_config
    from inference_server.lifecycle.registration import weights_sha256 as registration_sha256
    from inference_server.lifecycle.repository import ModelRepository, RepositoryError
    from inference_server.models.backend import ModelSpec, resolve_weights_dir

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    name = args.model or config.model.name
    repo = ModelRepository.from_config(config.model_repository)
    try:
        parent = repo.entry(name, args.parent)
    except RepositoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    existing = repo.versions(name)
    version = args.version or str(max((int(v) for v in existing), default=0) + 1)
    if version in existing:
        print(f"error: version {version} of {name} already exists under {repo.root / name}", file=sys.stderr)
        return 2
    if args.catalog == "homedepot":
        catalog_cfg = CatalogConfig(source="homedepot", path=args.data_dir, max_queries=args.max_queries)
    else:
        catalog_cfg = config.catalog
    bundle = load_catalog(catalog_cfg)
    cfg = TrainingConfig(seed=args.seed, batch_size=args.batch_size, learning_rate=args.lr, epochs=args.epochs,
                         time_budget_s=args.time_budget, min_relevance=args.min_relevance,
                         hard_negatives=not args.no_hard_negatives,
                         bf16=_bf16_supported() if args.bf16 == "auto" else args.bf16 == "on",
                         num_threads=args.num_threads, max_examples=args.max_examples)
    try:
        pairs = _read_pairs_csv(args.pairs) if args.pairs else []
        clicks = _read_click_log(args.click_log) if args.click_log else []
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = build_examples(bundle, cfg, pairs=pairs, clicks=clicks)
    print(f"training data: {len(table):,} TRAIN queries with a positive "
          f"({sum(len(p) for p, _ in table.values()):,} positives, {sum(len(n) for _, n in table.values()):,} "
          f"hard negatives); DEV/TEST queries excluded", file=sys.stderr)
    parent_weights = resolve_weights_dir(parent.model_spec(ModelSpec(), repo.state_dir))
    version_dir = repo.root / name / version
    weights_dir = version_dir / "weights"
    started = time.perf_counter()
    result = train(parent_weights, table, cfg, weights_dir, progress=not args.no_progress)
    print(f"trained {result.steps} steps ({result.epochs:.2f} epochs, {result.examples_seen:,} examples) in "
          f"{result.seconds:.0f} s, stopped by {result.stopped_by}, final loss {result.final_loss}", file=sys.stderr)
    doc = {
        "backend": "torch",
        "weights": "weights",
        "dtype": parent.config.dtype,
        "max_seq_length": parent.config.max_seq_length,
        "retrieval": {"mode": args.retrieval},
        "description": args.description or f"fine-tuned from version {args.parent} on {bundle.catalog.name} TRAIN pairs",
        "parent": args.parent,
        "training": {**{k: v for k, v in asdict(cfg).items()},
                     "catalog": bundle.catalog.name, "train_queries": len(table),
                     "steps": result.steps, "epochs_done": round(result.epochs, 4),
                     "seconds": round(result.seconds, 1), "stopped_by": result.stopped_by,
                     "final_loss": result.final_loss, "split": "md5(query.strip().lower()) % 10: 0 test, 1 dev, else train",
                     "extra_pairs": len(pairs), "click_log_queries": len(clicks)},
        "data_fingerprint": data_fingerprint(bundle, table),
        "weights_sha256": registration_sha256(weights_dir),
    }
    (version_dir / "model.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    print(f"wrote {version_dir / 'model.yaml'} ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    if args.no_register:
        return 0
    from inference_server.lifecycle.registration import register_main

    return register_main(config, repo, name, version, progress=not args.no_progress)


if __name__ == "__main__":
    sys.exit(main())
