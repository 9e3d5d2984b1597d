"""Ingest: texts in, vectors in an index out. `simdex.ingest` (into an `Index` in memory, and into an index
file with its SQLite document store) against the plain loop a user would write: encode in batches, then add
to a faiss ``IndexFlatIP`` or stack into a NumPy array. Every run of a group uses the same encoder: the hash
stand-in (384-d, no model: the machinery's own cost), and all-MiniLM-L6-v2 when installed (else skipped)."""

from __future__ import annotations

import functools
import itertools

import numpy as np
import pytest
import simdex
from _bench import record, words

BATCH = 256


def encode_in_batches(encoder, texts, batch=BATCH):
    """What a hand-written loop does: prepare and compute one batch at a time."""
    for i in range(0, len(texts), batch):
        yield encoder.compute(encoder.prepare(texts[i : i + batch]))


def run_ingest(engine, texts, encoder, batch, encode, tmp_path, counter, faiss=None):
    """One ingest of `texts` by `engine`, `batch` texts per encoder call; returns the vectors stored."""
    if engine == "simdex-ingest":
        return simdex.ingest(texts, simdex.Index(encoder.dim, "ip"), encoder=encoder, batch_size=batch).chunks
    if engine == "simdex-ingest-file":
        path = tmp_path / f"run{next(counter)}.simdex"
        return simdex.ingest(texts, path, encoder=encoder, batch_size=batch).chunks
    if engine == "faiss":
        index = faiss.IndexFlatIP(encoder.dim)
        for v in encode(texts):
            index.add(v)
        return index.ntotal
    return len(np.concatenate(list(encode(texts))))  # numpy


ENGINES = ["simdex-ingest", "simdex-ingest-file", "faiss", "numpy"]


@pytest.mark.parametrize("engine", ENGINES)
def test_ingest_standin(benchmark, request, size, tmp_path, engine):
    from standin_encoder import TinyStandInEncoder

    texts = words(size["standin_texts"], seed=7)
    encoder = TinyStandInEncoder(dim=384)
    faiss = request.getfixturevalue("faiss") if engine == "faiss" else None
    record(benchmark, f"ingest stand-in {len(texts)} texts", texts=len(texts), dim=384, batch_size=BATCH)
    encode = functools.partial(encode_in_batches, encoder)
    args = (engine, texts, encoder, BATCH, encode, tmp_path, itertools.count(), faiss)
    stored = benchmark.pedantic(run_ingest, args=args, rounds=3, warmup_rounds=1)
    benchmark.extra_info["texts_per_s"] = round(len(texts) / benchmark.stats.stats.median, 1)
    assert stored == len(texts)


@pytest.mark.encoder
@pytest.mark.parametrize("engine", ENGINES)
def test_ingest_minilm(benchmark, request, size, tmp_path, minilm_model, engine):
    encoder, model = minilm_model
    texts = words(size["texts"], seed=8)
    faiss = request.getfixturevalue("faiss") if engine == "faiss" else None

    def encode(t):  # the model called directly, batch by batch, as the loop a user would write
        for i in range(0, len(t), encoder.batch_size):
            yield model.encode(t[i : i + encoder.batch_size], batch_size=encoder.batch_size,
                               normalize_embeddings=True, convert_to_numpy=True)

    record(benchmark, f"ingest minilm {len(texts)} texts", texts=len(texts), batch_size=encoder.batch_size)
    args = (engine, texts, encoder, encoder.batch_size, encode, tmp_path, itertools.count(), faiss)
    stored = benchmark.pedantic(run_ingest, args=args, rounds=3, warmup_rounds=1)
    benchmark.extra_info["texts_per_s"] = round(len(texts) / benchmark.stats.stats.median, 1)
    assert stored == len(texts)
