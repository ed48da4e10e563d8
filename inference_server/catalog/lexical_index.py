"""Lexical (BM25) index over normalised product text, cached on disk like the embedding cache.

Product-search queries and titles write the same thing many ways ("36 in.", "36 inch", '36"';
"2x4" and "2 x 4"; "faucets" and "faucet"). `normalise` maps them to one form and `tokenize` is used
for both the catalog text and the queries, so they meet; query terms the catalog never uses are
spell-corrected against its vocabulary (`query_spelling.py`). Scoring is `bm25s` (Lucene BM25, k1 0.5,
b 0.5): a sparse (documents x terms) matrix of precomputed term weights; one query costs a sum over
the columns of its terms.

The index is cached in `cache_dir` as `lexical-<catalog_fp[:16]>-<normaliser_fp[:16]>/` (bm25s's own
files plus `meta.json` with the full fingerprints, ids, document lengths and document frequencies),
written to a temporary directory and renamed into place; anything that does not match is rebuilt.

Catalog changes: BM25's idf and average length depend on every document, so a changed catalog is
applied by `LexicalIndex.apply(catalog)`, which rebuilds for the new catalog (a few seconds for
55k products) and caches it under the new catalog fingerprint; the old index keeps serving until the
new one replaces it in one assignment.
"""
from __future__ import annotations

import hashlib
import html
import json
import logging
import math
import os
import re
import time
from pathlib import Path
from typing import Collection, Optional, Sequence

import numpy as np
from tqdm import tqdm

from inference_server.catalog.atomic_dir import atomic_directory
from inference_server.catalog.query_spelling import SPELLER_RULES, QuerySpeller
from inference_server.catalog.types import Catalog

__all__ = ["LexicalIndex", "NORMALISER_VERSION", "normalise", "normaliser_fingerprint", "tokenize"]

log = logging.getLogger(__name__)

NORMALISER_VERSION = 2   # bump whenever the rules below change: it is part of the cache key
# Short product titles saturate term frequency early: k1 0.5, b 0.5 had the best hybrid NDCG@10 on
# Home Depot's DEV split of the grid k1 in {0.5, 0.7, 0.9, 1.2, 1.5, 2.0} x b in {0.2 ... 0.9}.
K1, B = 0.5, 0.5

# Units written several ways -> one token. Applied after lowercasing; order matters (longest first).
_UNIT_RULES: tuple[tuple[re.Pattern, str], ...] = (
    (re.compile(r"(?<=\d)\s*(?:\"|''|”|inches|inch|in\.)(?=\W|$)"), " in "),
    (re.compile(r"\b(?:inches|inch)\b"), " in "),
    (re.compile(r"(?<=\d)\s*(?:'|feet|foot|ft\.)(?=\W|$)"), " ft "),
    (re.compile(r"\b(?:feet|foot)\b"), " ft "),
    (re.compile(r"(?<=\d)\s*(?:pounds|pound|lbs\.?|lb\.)(?=\W|$)"), " lb "),
    (re.compile(r"(?<=\d)\s*(?:gallons|gallon|gal\.)(?=\W|$)"), " gal "),
    (re.compile(r"(?<=\d)\s*(?:square|sq\.)\s*(?:ft|feet|foot)\b"), " sq ft "),
    (re.compile(r"(?<=\d)\s*(?:volts|volt)\b"), " v "),
    (re.compile(r"(?<=\d)\s*(?:watts|watt)\b"), " w "),
    (re.compile(r"(?<=\d)\s*(?:amps|amp)\b"), " a "),
)
_DIMENSION = re.compile(r"(?<=\d)\s*(?:x|\*|by)\s*(?=\d)")            # 2x4, 2 * 4, 2 by 4 -> "2 x 4"
_NUMBER_UNIT = re.compile(r"(?<=\d)(?=[a-z])|(?<=[a-z])(?=\d)")         # 12v -> 12 v, r19 -> r 19
_TOKEN = re.compile(r"[a-z]+|\d+(?:\.\d+)?(?:/\d+)?")
_STOPWORDS = frozenset("a an and are as at be by for from in of on or the to with".split()) - {"in"}


def normalise(text: str) -> str:
    """Lowercased text with units, dimensions and number-letter runs written one way."""
    text = html.unescape(text).lower() if "&" in text else text.lower()
    text = text.replace("-", " ")
    text = _DIMENSION.sub(" x ", text)
    for pattern, replacement in _UNIT_RULES:
        text = pattern.sub(replacement, text)
    text = _NUMBER_UNIT.sub(" ", text)
    return text


def _singular(token: str) -> str:
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    """BM25 terms of a query or a product text: normalised, stop words dropped, plurals singular."""
    return [_singular(t) for t in _TOKEN.findall(normalise(text)) if t not in _STOPWORDS]


def normaliser_fingerprint() -> str:
    """sha256 over the normaliser's version and rules (the lexical cache key's second half)."""
    parts = [str(NORMALISER_VERSION), str(K1), str(B), SPELLER_RULES, *(p.pattern + r for p, r in _UNIT_RULES),
             _DIMENSION.pattern, _NUMBER_UNIT.pattern, _TOKEN.pattern, " ".join(sorted(_STOPWORDS))]
    return hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()


class LexicalIndex:
    """BM25 over a catalog's normalised product texts; rows in catalog order (like `VectorIndex`)."""

    def __init__(self, ids: Sequence[str], retriever, doc_lengths: np.ndarray, document_frequency: dict[str, int],
                 *, catalog_fingerprint: str, build_seconds: float = 0.0, from_cache: bool = False) -> None:
        self.ids = list(ids)
        self._row = {pid: i for i, pid in enumerate(self.ids)}
        self.retriever = retriever
        self.doc_lengths = doc_lengths
        self.document_frequency = document_frequency
        self.avg_length = float(doc_lengths.mean()) if len(doc_lengths) else 1.0
        self.catalog_fingerprint = catalog_fingerprint
        self.build_seconds = build_seconds
        self.from_cache = from_cache
        self.speller = QuerySpeller(document_frequency)

    def __len__(self) -> int:
        return len(self.ids)

    def row(self, product_id: str) -> Optional[int]:
        return self._row.get(product_id)

    # ---- building and caching ------------------------------------------------------------------
    @staticmethod
    def cache_path(cache_dir: str | Path, catalog_fingerprint: str) -> Path:
        return Path(cache_dir) / f"lexical-{catalog_fingerprint[:16]}-{normaliser_fingerprint()[:16]}"

    @classmethod
    def build(cls, catalog: Catalog, cache_dir: Optional[str | Path] = None, *, progress: bool = False) -> "LexicalIndex":
        """Load the cached index of this catalog and normaliser, or tokenise and index (then cache)."""
        import bm25s

        started = time.perf_counter()
        fingerprint = catalog.fingerprint()
        path = cls.cache_path(cache_dir, fingerprint) if cache_dir is not None else None
        ids = catalog.ids()
        if path is not None and (path / "meta.json").is_file():
            try:
                meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
                if (meta.get("catalog_fingerprint") == fingerprint and meta.get("ids") == ids
                        and meta.get("normaliser_fingerprint") == normaliser_fingerprint()):
                    retriever = bm25s.BM25.load(str(path), show_progress=False, verbosity=0)
                    return cls(ids, retriever, np.asarray(meta["doc_lengths"], dtype=np.float32),
                               meta["document_frequency"], catalog_fingerprint=fingerprint,
                               build_seconds=time.perf_counter() - started, from_cache=True)
                log.warning("lexical index cache %s does not match the catalog; rebuilding", path)
            except (OSError, ValueError, KeyError) as exc:
                log.warning("lexical index cache %s unreadable (%s); rebuilding", path, exc)
        corpus = [tokenize(p.text()) for p in tqdm(catalog.products, desc="lexical index: tokenising", unit="product",
                                                   disable=not progress, dynamic_ncols=True, mininterval=2.0)]
        # bm25s drops empty documents' rows otherwise; an impossible token keeps row alignment
        corpus = [tokens or ["\u2400"] for tokens in corpus]
        retriever = bm25s.BM25(k1=K1, b=B, method="lucene")
        retriever.index(corpus, show_progress=progress)
        lengths = np.asarray([len(t) for t in corpus], dtype=np.float32)
        df: dict[str, int] = {}
        for tokens in corpus:
            for token in set(tokens):
                df[token] = df.get(token, 0) + 1
        index = cls(ids, retriever, lengths, df, catalog_fingerprint=fingerprint)
        if path is not None:
            index._save(path)
        index.build_seconds = time.perf_counter() - started
        return index

    def apply(self, catalog: Catalog, cache_dir: Optional[str | Path] = None, *, progress: bool = False) -> "LexicalIndex":
        """The index for a changed catalog (idf and lengths depend on every product: a rebuild);
        `self` when the catalog is unchanged. The caller swaps the returned index in."""
        if catalog.fingerprint() == self.catalog_fingerprint:
            return self
        return type(self).build(catalog, cache_dir, progress=progress)

    def _save(self, path: Path) -> None:
        with atomic_directory(path) as tmp:
            self.retriever.save(str(tmp), show_progress=False)
            meta = {"catalog_fingerprint": self.catalog_fingerprint, "normaliser_fingerprint": normaliser_fingerprint(),
                    "ids": self.ids, "doc_lengths": self.doc_lengths.tolist(),
                    "document_frequency": self.document_frequency}
            (tmp / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
            os.chmod(tmp, 0o755)

    # ---- scoring -------------------------------------------------------------------------------
    def query_terms(self, query: str) -> list[str]:
        """The query's BM25 terms: tokenised like the catalog, misspellings corrected, unknown terms dropped."""
        return [t for t in self.speller.correct(tokenize(query)) if t in self.document_frequency]

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every product for `query` (float32, catalog order; 0 = no term in common)."""
        tokens = self.query_terms(query)
        if not tokens:
            return np.zeros(len(self.ids), dtype=np.float32)
        return np.asarray(self.retriever.get_scores(tokens), dtype=np.float32)

    def search(self, query: str, k: int, exclude: Collection[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, rows) for `query`, best first, ties by row; `exclude` rows never returned."""
        return self.top(self.scores(query), k, exclude)

    @staticmethod
    def top(scores: np.ndarray, k: int, exclude: Collection[int] = ()) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (scores, rows) of a score vector from `scores`, best first, ties by row."""
        if exclude:
            scores = scores.copy()
            scores[list(exclude)] = -np.inf
        k = min(k, len(scores))
        if k <= 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        top = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.lexsort((top, -scores[top]))]
        return scores[top], top.astype(np.int64)

    def score_texts(self, query: str, texts: Sequence[str]) -> np.ndarray:
        """BM25 of arbitrary texts (e.g. items a /v1/rank request titles) with this catalog's idf and
        average length: the same formula as the index (Lucene BM25)."""
        terms = dict.fromkeys(self.query_terms(query))
        n = len(self.ids)
        out = np.zeros(len(texts), dtype=np.float32)
        if not terms:
            return out
        idf = {t: math.log(1.0 + (n - self.document_frequency[t] + 0.5) / (self.document_frequency[t] + 0.5))
               for t in terms}
        for i, text in enumerate(texts):
            tokens = tokenize(text)
            norm = K1 * (1.0 - B + B * len(tokens) / max(self.avg_length, 1e-9))
            counts: dict[str, int] = {}
            for token in tokens:
                if token in terms:
                    counts[token] = counts.get(token, 0) + 1
            out[i] = sum(idf[t] * tf / (tf + norm) for t, tf in counts.items())
        return out

    def score_rows(self, query: str, rows: Sequence[int], catalog: Catalog) -> np.ndarray:
        """BM25 of catalog rows by the same formula as `score_texts` (so rank items mix freely)."""
        return self.score_texts(query, [catalog.products[r].text() for r in rows])
