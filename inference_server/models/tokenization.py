"""Tokenise once: token ids of a window of texts, padded per batch.

The batcher needs token lengths (to group texts of similar length) and the backend needs token
ids; `Tokenized` carries both, so a window is tokenised once and each batch of it is padded only to
its own longest text (`Tokenized.select(...).padded()`).

`FastTokenizer` wraps the `tokenizers` library's Rust tokenizer read from the model's
`tokenizer.json` directly. Its truncation is set once at load and never changed, and padding is
done here in numpy, so concurrent `encode_batch` calls from several model instances need no lock
(the transformers wrapper mutates padding state per call and must be serialised).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

__all__ = ["FastTokenizer", "Tokenized"]


@dataclass
class Tokenized:
    """Texts with their token ids (`ids[i]`: int64 array incl. special tokens, already truncated).

    `ids` is None when the backend does not tokenise in the server (it then encodes `texts`).
    """

    texts: list[str]
    lengths: list[int]
    ids: Optional[list[np.ndarray]] = None
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    def select(self, rows: Sequence[int]) -> "Tokenized":
        """The texts at `rows`, in that order (no copy of the id arrays)."""
        return Tokenized(
            texts=[self.texts[i] for i in rows],
            lengths=[self.lengths[i] for i in rows],
            ids=None if self.ids is None else [self.ids[i] for i in rows],
            pad_id=self.pad_id,
        )

    def padded(self, pad_to: Optional[int] = None) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, attention_mask), int64 [n, L] with L = the longest text here (or `pad_to`)."""
        if self.ids is None:
            raise ValueError("these texts were not tokenised in the server (ids is None)")
        n = len(self.ids)
        width = max(self.lengths, default=0) if pad_to is None else pad_to
        input_ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        for row, ids in enumerate(self.ids):
            input_ids[row, :len(ids)] = ids
            mask[row, :len(ids)] = 1
        return input_ids, mask


# Up to this many texts (a serving window) are encoded one by one, holding the GIL: `encode_batch`
# lets go of it to run on rayon's pool and must take it back, which waits while the event loop holds
# it (a 10-text call ran 5,600 times/s alone and 180 times/s beside a busy Python thread; the loop,
# 5,900 and 2,960). More texts (embedding a catalog) are worth the pool.
SERIAL_UP_TO = 128


class FastTokenizer:
    """The model's `tokenizer.json`, truncating to `max_length`, no padding (see module docstring)."""

    def __init__(self, weights_dir: str | Path, max_length: int) -> None:
        from tokenizers import Tokenizer

        path = Path(weights_dir) / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist (a fast tokenizer is needed)")
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_length=max_length)
        self.max_length = max_length
        pad = self._tokenizer.token_to_id("[PAD]")
        self.pad_id = int(pad) if pad is not None else 0

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        texts = list(texts)
        if not texts:
            return Tokenized([], [], [], self.pad_id)
        if len(texts) <= SERIAL_UP_TO:
            encodings = [self._tokenizer.encode(text, add_special_tokens=True) for text in texts]
        else:
            encodings = self._tokenizer.encode_batch(texts, add_special_tokens=True)
        ids = [np.asarray(e.ids, dtype=np.int64) for e in encodings]
        return Tokenized(texts, [len(i) for i in ids], ids, self.pad_id)


class FastTokenizerMixin:
    """`token_lengths`, `tokenize` and `encode` for a backend that holds a `FastTokenizer` as
    `fast_tokenizer` and implements `encode_tokens`: tokenise once, then run the model."""

    fast_tokenizer: FastTokenizer

    def token_lengths(self, texts: Sequence[str]) -> list[int]:
        return self.fast_tokenizer.tokenize(texts).lengths

    def tokenize(self, texts: Sequence[str]) -> Tokenized:
        return self.fast_tokenizer.tokenize(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self.encode_tokens(self.fast_tokenizer.tokenize(texts))
