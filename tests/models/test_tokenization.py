"""Tokenise once: the server's tokenizer matches transformers' and pads per batch."""

from __future__ import annotations

import numpy as np

from inference_server.models.tokenization import Tokenized

TEXTS = ["oak", "cordless drill with two batteries", "", "word " * 300, "Ñandú café 12\" x 3/4 in."]


def test_fast_tokenizer_matches_transformers(encoder_backend):
    ours = encoder_backend.tokenize(TEXTS)
    theirs = encoder_backend.tokenizer(TEXTS, truncation=True, max_length=128, padding=False)["input_ids"]
    assert [list(ids) for ids in ours.ids] == [list(ids) for ids in theirs]
    assert ours.lengths == [len(ids) for ids in theirs] == encoder_backend.token_lengths(TEXTS)
    assert max(ours.lengths) == 128


def test_serial_and_batched_tokenisation_agree(encoder_backend):
    """Serving windows are encoded text by text (holding the GIL), larger lists by encode_batch: the
    same ids either way, truncation included."""
    from inference_server.models.tokenization import SERIAL_UP_TO

    many = (TEXTS * (SERIAL_UP_TO // len(TEXTS) + 1))[:SERIAL_UP_TO + 1]
    batched = encoder_backend.tokenize(many)          # one more than the serial limit: encode_batch
    serial = encoder_backend.tokenize(many[:-1])      # at the limit: one by one
    assert [list(ids) for ids in serial.ids] == [list(ids) for ids in batched.ids[:-1]]
    assert serial.lengths == batched.lengths[:-1] and max(serial.lengths) == 128


def test_select_pads_to_the_batch_longest_only(encoder_backend):
    tokens = encoder_backend.tokenize(TEXTS)
    short = tokens.select([0, 2])
    ids, mask = short.padded()
    assert ids.shape == (2, 3) and ids.dtype == np.int64
    assert mask.sum(axis=1).tolist() == [3, 2]
    assert short.texts == ["oak", ""]


def test_encode_tokens_equals_encode(encoder_backend):
    tokens = encoder_backend.tokenize(TEXTS)
    rows = [1, 4, 0]
    np.testing.assert_allclose(encoder_backend.encode_tokens(tokens.select(rows)),
                               encoder_backend.encode([TEXTS[i] for i in rows]), atol=1e-6)


def test_default_tokenize_keeps_texts_for_backends_that_tokenise_themselves():
    from inference_server.models.backend import EncoderBackend

    class Plain(EncoderBackend):
        backend_name, device, dtype, dim = "plain", "cpu", "float32", 2
        spec = None

        def token_lengths(self, texts):
            return [len(t) for t in texts]

        def encode(self, texts):
            return np.ones((len(texts), 2), dtype=np.float32) / np.sqrt(2)

        def fingerprint(self):
            return "x"

    tokens = Plain().tokenize(["ab", "c"])
    assert isinstance(tokens, Tokenized) and tokens.ids is None and tokens.lengths == [2, 1]
    assert Plain().encode_tokens(tokens.select([1])).shape == (1, 2)


def test_batcher_window_tokenises_once_and_pads_per_batch(encoder_backend):
    from inference_server.serving.batching import _encode_window

    class Counting:
        def __init__(self, inner):
            self.inner, self.dim = inner, inner.dim
            self.tokenized, self.widths = 0, []

        def tokenize(self, texts):
            self.tokenized += 1
            return self.inner.tokenize(texts)

        def encode_tokens(self, batch):
            self.widths.append(batch.padded()[0].shape[1])
            return self.inner.encode_tokens(batch)

        def token_lengths(self, texts):
            raise AssertionError("the window must not tokenise twice")

        encode = token_lengths

    texts = ["oak", "a much longer product title with many words in it", "drill", "queen sheets white cotton"]
    counting = Counting(encoder_backend)
    lengths, batches = _encode_window(counting, texts, [None] * 4, 2, None)
    assert counting.tokenized == 1 and len(batches) == 2
    # Sorted by length, batches of 2: each padded to its own longest text only.
    assert counting.widths == sorted(counting.widths) and counting.widths[0] < counting.widths[1] == max(lengths)
    for members, vectors, _, error, _ in batches:
        assert error is None
        np.testing.assert_allclose(vectors, encoder_backend.encode([texts[i] for i in members]), atol=1e-5)
