"""WordEncoder: NOT a language model. Each word is a fixed random direction and a text the normalized sum of its
words, so texts that share words score high; with `token_spans` over whitespace words, the chunker interface of
`simdex.Encoder`. For the quality wing's tests (calibration, chunk sweeps, drift) without a model."""

from __future__ import annotations

import re
import zlib

import numpy as np


class WordEncoder:
    """Bag of hashed word directions; `salt` gives another "model" (other directions, same fingerprint keys)."""

    def __init__(self, dim: int = 256, salt: int = 0) -> None:
        self.dim, self.salt = dim, salt
        self.fingerprint = {"model": f"word-stand-in-{salt}", "weights_sha256": f"salt{salt}", "dim": dim,
                            "pooling": None, "normalize": True, "max_seq_length": 512}
        self._cache: dict = {}

    def _word(self, word: str) -> np.ndarray:
        if word not in self._cache:
            rng = np.random.default_rng([zlib.crc32(word.lower().encode()), self.salt])
            v = rng.standard_normal(self.dim)
            self._cache[word] = v / np.linalg.norm(v)
        return self._cache[word]

    def embed_query(self, text: str) -> np.ndarray:
        v = np.sum([self._word(w) for w in text.split()] or [np.zeros(self.dim)], axis=0)
        n = np.linalg.norm(v)
        return (v / n if n else v).astype(np.float32)

    def embed_batch(self, texts, *, batch_size=None, show_progress_bar=None) -> np.ndarray:
        return np.stack([self.embed_query(t) for t in texts])

    # The interface simdex.ingest uses.
    batch_size = 64
    max_seq_length = 512

    def prepare(self, texts, batch_size=None):
        from simdex.text.encoder import Prepared

        return Prepared(len(texts), [(np.arange(len(texts)), list(texts))])

    def compute(self, prepared) -> np.ndarray:
        out = np.empty((prepared.n, self.dim), np.float32)
        for rows, texts in prepared.batches:
            out[rows] = self.embed_batch(texts)
        return out

    def token_spans(self, texts, chunk_tokens: int, overlap: int = 0) -> list:
        """Windows of `chunk_tokens` whitespace words, `overlap` shared, as simdex.Encoder.token_spans."""
        step = chunk_tokens - overlap
        out = []
        for text in texts:
            words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
            if not words:
                out.append([(0, len(text))])
                continue
            out.append([(words[s][0], words[min(s + chunk_tokens, len(words)) - 1][1])
                        for s in range(0, max(len(words) - overlap, 1), step)])
        return out
