"""TinyStandInEncoder: NOT a language model. A hash of each text as a 16-d vector, with the interface
`simdex.ingest` uses (dim, fingerprint, batch_size, prepare, compute), for tests of the ingest machinery where
the model's cost would only slow them down (bounded memory over 200K texts)."""

from __future__ import annotations

import hashlib
import zlib

import numpy as np
from simdex.text.encoder import Prepared


class TinyStandInEncoder:
    """A stand-in for `simdex.Encoder`: deterministic hash vectors, no model, no torch."""

    batch_size = 256
    max_seq_length = 128

    def __init__(self, dim: int = 16) -> None:
        self.dim = dim
        self.computed = 0  # texts turned into vectors so far

    @property
    def fingerprint(self) -> dict:
        return {"model": "tiny-stand-in (hash, not a model)", "weights_sha256": "none", "dim": self.dim,
                "pooling": None, "normalize": True, "max_seq_length": self.max_seq_length}

    def prepare(self, texts, batch_size=None) -> Prepared:
        return Prepared(len(texts), [(np.arange(len(texts)), list(texts))])

    def compute(self, prepared: Prepared) -> np.ndarray:
        out = np.empty((prepared.n, self.dim), dtype=np.float32)
        for rows, texts in prepared.batches:
            raw = b"".join(hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts)
            codes = np.frombuffer(raw, dtype=np.uint8).reshape(-1, 16).astype(np.float32) - 127.5
            out[rows] = np.tile(codes, (1, -(-self.dim // 16)))[:, :self.dim]
        self.computed += prepared.n
        return out / np.linalg.norm(out, axis=1, keepdims=True)


class HashEncoder:
    """Not a model: a text's hash as an 8-d unit vector, with the methods add_texts and search_text call."""

    dim = 8
    fingerprint = {"model": "hash-stand-in", "weights_sha256": "none", "dim": 8, "pooling": None,
                   "normalize": True, "max_seq_length": 64}

    def embed_batch(self, texts, *, batch_size=None, show_progress_bar=None):
        return np.stack([self.embed_query(t) for t in texts])

    def embed_query(self, text):
        v = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)
