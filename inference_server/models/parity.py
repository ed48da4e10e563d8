"""The parity gate: a backend or precision serves only if it embeds like the float32 reference.

Every non-reference backend (onnxruntime, tensorrt, torch in bfloat16/float16, ...) is checked at
load (`ServingState.build_version`, the lifecycle manager's builder) and at registration
(`lifecycle.repository.register_version`) against the PyTorch float32 encoder on the same weights:

  * cosine >= 0.999 (`MIN_COSINE`) between its embedding and the reference's for every text of the
    golden set (the sample's queries and product titles), and
  * no ranking-quality loss: NDCG@10 of the sample's queries, ranking their candidate products by
    cosine, at most 0.002 (`MAX_NDCG_DROP`) below the reference's.

A backend that fails is refused (`ParityFailed`, a `BackendUnavailable`) with the measured figures.

The sample is fixed and documented:
  * Home Depot (when ../shared/data/homedepot/train.csv, or $HOMEDEPOT_DIR, is present): the first
    200 queries, by md5 of the key, of the DEV split (key = search_term.strip().lower(); DEV when
    int(md5(key).hexdigest(), 16) % 10 == 1); each query ranks its human-judged products (gain =
    relevance - 1, so a rater mean of 1 "irrelevant" gains 0); 1,444 texts.
  * otherwise (CI without ../shared): the synthetic catalog (seed 7, 600 products, 200 judged
    queries), each query ranking the whole catalog.

Reference embeddings are computed once per (weights, sample) and cached as .npy under
`<cache_dir>/parity/`.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np

from inference_server.models.backend import BackendUnavailable, EncoderBackend, ModelSpec, default_cache_dir

__all__ = [
    "MAX_NDCG_DROP",
    "MIN_COSINE",
    "ParityFailed",
    "ParityReport",
    "ParitySample",
    "check_parity",
    "default_sample",
    "enforce_parity",
    "run_gate",
    "homedepot_sample",
    "is_reference",
    "measure_parity",
    "synthetic_sample",
]

log = logging.getLogger(__name__)

MIN_COSINE = 0.999
MAX_NDCG_DROP = 0.002
NDCG_K = 10
SAMPLE_QUERIES = 200


@dataclass(frozen=True)
class ParitySample:
    """Queries, the candidate products each one ranks (indices into `docs`) and their gains."""

    name: str
    queries: tuple[str, ...]
    docs: tuple[str, ...]
    candidates: tuple[tuple[int, ...], ...]
    gains: tuple[tuple[float, ...], ...]

    @property
    def texts(self) -> list[str]:
        """The golden set: every query and product text of the sample."""
        return list(self.queries) + list(self.docs)

    @functools.cached_property
    def digest(self) -> str:
        h = hashlib.sha256(self.name.encode())
        for text in self.texts:
            h.update(b"\x00" + text.encode("utf-8", "surrogatepass"))
        for cands, gains in zip(self.candidates, self.gains):
            h.update(repr((cands, gains)).encode())
        return h.hexdigest()


def _ndcg(scores: np.ndarray, gains: np.ndarray, k: int = NDCG_K) -> float:
    order = np.lexsort((np.arange(len(scores)), -scores))[:k]   # ties: candidate order
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    dcg = float((gains[order] * discounts[:len(order)]).sum())
    ideal = np.sort(gains)[::-1][:k]
    idcg = float((ideal * discounts[:len(ideal)]).sum())
    return dcg / idcg if idcg > 0 else 0.0


def mean_ndcg(query_vectors: np.ndarray, doc_vectors: np.ndarray, sample: ParitySample, k: int = NDCG_K) -> float:
    values = []
    for row, (cands, gains) in enumerate(zip(sample.candidates, sample.gains)):
        idx = np.asarray(cands, dtype=np.int64)
        scores = doc_vectors[idx] @ query_vectors[row]
        values.append(_ndcg(scores.astype(np.float64), np.asarray(gains, dtype=np.float64), k))
    return float(np.mean(values)) if values else 0.0


@dataclass
class ParityReport:
    """Measured figures of one backend against the float32 reference on one sample."""

    backend: str
    dtype: str
    device: str
    sample: str
    texts: int
    min_cosine: float
    mean_cosine: float
    ndcg_reference: float
    ndcg_candidate: float
    passed: bool
    reasons: list[str] = field(default_factory=list)
    seconds: float = 0.0
    skipped: Optional[str] = None

    @property
    def ndcg_delta(self) -> float:
        return self.ndcg_candidate - self.ndcg_reference

    def summary(self) -> str:
        if self.skipped:
            return f"parity gate skipped: {self.skipped}"
        return (f"{self.backend}/{self.dtype} on {self.device} vs float32 reference, {self.sample} "
                f"({self.texts} texts): cosine min {self.min_cosine:.6f} mean {self.mean_cosine:.6f} "
                f"(need >= {MIN_COSINE}); NDCG@{NDCG_K} {self.ndcg_candidate:.4f} vs {self.ndcg_reference:.4f} "
                f"(delta {self.ndcg_delta:+.4f}, need >= -{MAX_NDCG_DROP}) -> {'pass' if self.passed else 'FAIL'}")

    def as_dict(self) -> dict:
        out = asdict(self)
        out["ndcg_delta"] = self.ndcg_delta
        return out


class ParityFailed(BackendUnavailable):
    """A backend/precision embeds too differently from the float32 reference; `report` has the figures."""

    def __init__(self, report: ParityReport) -> None:
        super().__init__(f"refused by the parity gate: {report.summary()}; {'; '.join(report.reasons)}")
        self.report = report


def measure_parity(candidate: np.ndarray, reference: np.ndarray, sample: ParitySample, *,
                   backend: str = "?", dtype: str = "?", device: str = "?",
                   min_cosine: float = MIN_COSINE, max_ndcg_drop: float = MAX_NDCG_DROP) -> ParityReport:
    """Compare embeddings of `sample.texts` (candidate vs reference rows) and decide."""
    candidate = np.asarray(candidate, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if candidate.shape != reference.shape:
        raise ValueError(f"candidate embeddings {candidate.shape} vs reference {reference.shape}")
    finite = bool(np.isfinite(candidate).all())
    c = candidate / np.maximum(np.linalg.norm(candidate, axis=1, keepdims=True), 1e-12)
    r = reference / np.maximum(np.linalg.norm(reference, axis=1, keepdims=True), 1e-12)
    cos = np.nan_to_num((c * r).sum(axis=1), nan=-1.0)
    nq = len(sample.queries)
    ndcg_ref = mean_ndcg(r[:nq], r[nq:], sample)
    ndcg_cand = mean_ndcg(np.nan_to_num(c[:nq]), np.nan_to_num(c[nq:]), sample)
    reasons = []
    if not finite:
        reasons.append("non-finite embeddings")
    if float(cos.min()) < min_cosine:
        worst = int(cos.argmin())
        reasons.append(f"cosine {float(cos.min()):.6f} < {min_cosine} (text {worst}; "
                       f"{int((cos < min_cosine).sum())} of {len(cos)} texts below)")
    if ndcg_cand < ndcg_ref - max_ndcg_drop:
        reasons.append(f"NDCG@{NDCG_K} drop {ndcg_ref - ndcg_cand:.4f} > {max_ndcg_drop}")
    return ParityReport(backend=backend, dtype=dtype, device=device, sample=sample.name, texts=len(cos),
                        min_cosine=float(cos.min()), mean_cosine=float(cos.mean()), ndcg_reference=ndcg_ref,
                        ndcg_candidate=ndcg_cand, passed=not reasons, reasons=reasons)


# -- samples -----------------------------------------------------------------------------------

def _dev_key_digest(term: str) -> int:
    return int(hashlib.md5(term.strip().lower().encode("utf-8")).hexdigest(), 16)


def homedepot_sample(path: Optional[str | Path] = None, n_queries: int = SAMPLE_QUERIES) -> Optional[ParitySample]:
    """The fixed Home Depot DEV sample (see module docstring); None when the data is absent."""
    import pandas as pd

    from inference_server.catalog.homedepot import default_homedepot_dir

    data_dir = Path(path).expanduser() if path else default_homedepot_dir()
    pairs = data_dir / "train.csv"
    if not pairs.is_file():
        return None
    frame = pd.read_csv(pairs, encoding="latin-1", dtype=str, keep_default_na=False,
                        usecols=["product_uid", "product_title", "search_term", "relevance"])
    by_key: dict[str, dict[str, float]] = {}
    text_of_key: dict[str, str] = {}
    titles: dict[str, str] = {}
    for uid, title, term, rel in zip(frame["product_uid"], frame["product_title"], frame["search_term"],
                                     frame["relevance"]):
        digest = _dev_key_digest(term)
        if digest % 10 != 1:
            continue
        key = term.strip().lower()
        text_of_key.setdefault(key, term.strip())
        by_key.setdefault(key, {})[uid.strip()] = float(rel)
        titles.setdefault(uid.strip(), " ".join(title.split()))
    keys = sorted(by_key, key=lambda k: (_dev_key_digest(k), k))[:n_queries]
    docs: list[str] = []
    doc_index: dict[str, int] = {}
    candidates, gains = [], []
    for key in keys:
        row_c, row_g = [], []
        for uid, rel in sorted(by_key[key].items()):
            if uid not in doc_index:
                doc_index[uid] = len(docs)
                docs.append(titles[uid])
            row_c.append(doc_index[uid])
            row_g.append(max(0.0, rel - 1.0))   # raters: 1 irrelevant .. 3 perfect -> gain 0..2
        candidates.append(tuple(row_c))
        gains.append(tuple(row_g))
    return ParitySample(f"homedepot-dev-{len(keys)}q", tuple(text_of_key[k] for k in keys), tuple(docs),
                        tuple(candidates), tuple(gains))


def synthetic_sample(n_queries: int = SAMPLE_QUERIES, num_products: int = 600, seed: int = 7) -> ParitySample:
    """The synthetic catalog's judged queries, each ranking the whole catalog (no data files needed)."""
    from inference_server.catalog.synthetic import generate_synthetic

    bundle = generate_synthetic(seed=seed, num_products=num_products, num_queries=n_queries)
    products = list(bundle.catalog.products)
    index = {p.id: i for i, p in enumerate(products)}
    everything = tuple(range(len(products)))
    gains = []
    for query in bundle.queries:
        row = [0.0] * len(products)
        for pid, grade in query.judgments.items():
            if pid in index:
                row[index[pid]] = float(grade)
        gains.append(tuple(row))
    return ParitySample(f"synthetic-seed{seed}-{len(products)}p-{len(bundle.queries)}q",
                        tuple(q.text for q in bundle.queries), tuple(p.text() for p in products),
                        tuple(everything for _ in bundle.queries), tuple(gains))


@functools.lru_cache(maxsize=2)
def default_sample(n_queries: int = SAMPLE_QUERIES) -> ParitySample:
    """Home Depot DEV sample when the data is present, else the synthetic one (logged)."""
    sample = homedepot_sample(n_queries=n_queries)
    if sample is None:
        log.info("parity gate: Home Depot data not found; using the synthetic catalog's judged queries")
        sample = synthetic_sample(n_queries)
    return sample


# -- the gate ----------------------------------------------------------------------------------

def is_reference(backend: EncoderBackend) -> bool:
    """The PyTorch float32 encoder is the reference itself."""
    return backend.backend_name == "torch" and backend.dtype == "float32"


def _encode_all(backend: EncoderBackend, texts: Sequence[str], batch: int = 64) -> np.ndarray:
    tokens = backend.tokenize(texts)
    order = sorted(range(len(texts)), key=lambda i: tokens.lengths[i])
    out = np.empty((len(texts), backend.dim), dtype=np.float32)
    for start in range(0, len(order), batch):
        rows = order[start:start + batch]
        out[rows] = backend.encode_tokens(tokens.select(rows))
    return out


_MEASURED: dict[tuple, ParityReport] = {}
_MEASURED_LOCK = threading.Lock()

ReferenceFactory = Callable[[ModelSpec], EncoderBackend]


def reference_vectors(spec: ModelSpec, weights_dir: Path, sample: ParitySample, *,
                      cache_dir: Optional[Path] = None, factory: Optional[ReferenceFactory] = None) -> np.ndarray:
    """float32 PyTorch embeddings of `sample.texts` on `weights_dir` (cached on disk per weights+sample)."""
    from inference_server.models.fingerprint import model_fingerprint

    key = model_fingerprint(weights_dir, {"reference": "torch-float32", "max_seq_length": spec.max_seq_length})
    path = (cache_dir or default_cache_dir(spec)) / "parity" / f"{key[:16]}-{sample.digest[:16]}.npy"
    if path.is_file():
        try:
            cached = np.load(path)
            if cached.shape[0] == len(sample.texts):
                return cached
        except (OSError, ValueError):
            pass
    if factory is None:
        from inference_server.models.torch_backend import TorchEncoderBackend as factory  # noqa: N813
    ref = factory(ModelSpec(name=spec.name, version=spec.version, backend="torch", weights=str(weights_dir),
                            device="cpu", dtype="float32", max_seq_length=spec.max_seq_length, parity_gate=False,
                            torch_graph="eager"))   # the module as written: what a traced graph is held to
    try:
        vectors = _encode_all(ref, sample.texts)
    finally:
        ref.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".tmp-{path.name}")
    with open(tmp, "wb") as handle:
        np.save(handle, vectors)
    tmp.replace(path)
    return vectors


def check_parity(backend: EncoderBackend, *, sample: Optional[ParitySample] = None,
                 reference: Optional[np.ndarray] = None, cache_dir: Optional[Path] = None,
                 factory: Optional[ReferenceFactory] = None) -> ParityReport:
    """Measure `backend` against the float32 reference (skipped for the reference itself and for
    backends without weights on disk, e.g. test doubles). A wrapper such as `DegradedBackend` is
    measured as it is: callers that gate the model rather than a drill pass the inner backend."""
    inner = backend
    base = dict(backend=inner.backend_name, dtype=inner.dtype, device=inner.device)
    if reference is None and is_reference(inner):
        return ParityReport(**base, sample="-", texts=0, min_cosine=1.0, mean_cosine=1.0, ndcg_reference=0.0,
                            ndcg_candidate=0.0, passed=True, skipped="the float32 PyTorch reference itself")
    weights_dir = getattr(inner, "weights_dir", None)
    if reference is None and weights_dir is None:
        return ParityReport(**base, sample="-", texts=0, min_cosine=1.0, mean_cosine=1.0, ndcg_reference=0.0,
                            ndcg_candidate=0.0, passed=True, skipped="backend has no weights directory to compare")
    started = time.perf_counter()
    sample = sample or default_sample()
    # Same weights, backend, precision and device in this process embed the same: measured once.
    memo_key = (inner.fingerprint(), inner.backend_name, inner.dtype, inner.device, sample.digest)
    if reference is None and memo_key in _MEASURED:
        return _MEASURED[memo_key]
    if reference is None:
        reference = reference_vectors(inner.spec, Path(weights_dir), sample, cache_dir=cache_dir, factory=factory)
    candidate = _encode_all(inner, sample.texts)
    report = measure_parity(candidate, reference, sample, **base)
    report.seconds = time.perf_counter() - started
    with _MEASURED_LOCK:
        _MEASURED[memo_key] = report
    return report


def run_gate(backend: EncoderBackend, **kwargs) -> ParityReport:
    """`check_parity` unless the spec turns the gate off (`model.parity_gate: false`); never raises on failure."""
    if not getattr(backend.spec, "parity_gate", True):
        inner = backend
        return ParityReport(backend=inner.backend_name, dtype=inner.dtype, device=inner.device, sample="-",
                            texts=0, min_cosine=1.0, mean_cosine=1.0, ndcg_reference=0.0, ndcg_candidate=0.0,
                            passed=True, skipped="model.parity_gate is false")
    report = check_parity(backend, **kwargs)
    if not report.passed:
        log.error("%s", report.summary())
    elif not report.skipped:
        log.info("%s (%.1f s)", report.summary(), report.seconds)
    return report


def enforce_parity(backend: EncoderBackend, **kwargs) -> ParityReport:
    """`run_gate`, raising `ParityFailed` with the figures when the backend fails."""
    report = run_gate(backend, **kwargs)
    if not report.passed:
        raise ParityFailed(report)
    return report


def main(argv: Optional[Sequence[str]] = None) -> int:
    """`python -m inference_server.models.parity [backend:dtype[:quantization] ...]`: print the gate's figures."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m inference_server.models.parity", description=main.__doc__)
    parser.add_argument("backends", nargs="*",
                        default=["torch:bfloat16", "onnxruntime:float32", "onnxruntime:float32:int8", "torch:float32"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    from inference_server.models.registry import create_backend

    failed = 0
    print(f"sample: {default_sample().name} ({len(default_sample().texts)} texts)")
    for item in args.backends:
        parts = item.split(":")
        spec = ModelSpec(backend=parts[0], dtype=parts[1] if len(parts) > 1 else "auto",
                         quantization=parts[2] if len(parts) > 2 else "none", device=args.device)
        try:
            backend = create_backend(spec)
        except BackendUnavailable as exc:
            print(f"{item}: unavailable: {exc}")
            continue
        try:
            report = check_parity(backend) if not is_reference(backend) else check_parity(
                backend, reference=reference_vectors(spec, backend.weights_dir, default_sample()))
        finally:
            backend.close()
        failed += not report.passed
        print(f"{item}: {report.summary()}{'; ' + '; '.join(report.reasons) if report.reasons else ''}", flush=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
