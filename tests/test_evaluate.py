"""Ranking metrics on hand-computed cases, the data loaders, variants, and the harness end to end."""

import inspect
import json
import logging
import math
import os
import zlib

import numpy as np
import pytest

from simdex.quality.evaluate import Variant, evaluate, load_queries, mrr_at_k, ndcg_at_k, recall_at_k


def test_metrics_single_relevant():
    ranked = ["a", "b", "c", "d"]
    assert recall_at_k(ranked, ["c"], 2) == 0 and recall_at_k(ranked, ["c"], 3) == 1
    assert mrr_at_k(ranked, ["c"], 10) == pytest.approx(1 / 3)
    assert ndcg_at_k(ranked, ["c"], 10) == pytest.approx(1 / math.log2(4))


def test_metrics_several_relevant():
    ranked = ["x", "a", "y", "b", "z"]
    rel = ["a", "b", "c"]
    assert recall_at_k(ranked, rel, 5) == pytest.approx(2 / 3)
    assert mrr_at_k(ranked, rel, 5) == pytest.approx(1 / 2)
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert ndcg_at_k(ranked, rel, 5) == pytest.approx(dcg / idcg)


def test_metrics_no_hit_and_short_rankings():
    assert recall_at_k(["a"], ["b"], 10) == 0 and mrr_at_k([], ["b"], 10) == 0 and ndcg_at_k([], ["b"], 10) == 0
    with pytest.raises(ValueError, match="relevant"):
        recall_at_k(["a"], [], 10)


def test_metrics_follow_the_given_order_for_ties():
    # The index breaks score ties by id; the metrics take the ranking as given.
    assert mrr_at_k(["d1", "d2"], ["d2"], 10) == 0.5


def test_load_queries_merges_repeated_queries():
    texts, rel = load_queries([{"query": "q1", "doc_id": "a"}, {"query": "q2", "doc_id": "b"},
                               {"query": "q1", "doc_id": "c"}, {"query": "q3", "doc_ids": ["d", "e"]}])
    assert texts == ["q1", "q2", "q3"] and rel == [["a", "c"], ["b"], ["d", "e"]]
    with pytest.raises(ValueError, match="doc_id"):
        load_queries([{"text": "q"}])


@pytest.mark.parametrize("name,expect", [
    ("float32", Variant("float32")), ("int8", Variant("int8", "int8")),
    ("int8+rescore", Variant("int8+rescore", "int8", rescore=4)),
    ("int8+rescore8", Variant("int8+rescore8", "int8", rescore=8)),
    ("pca256", Variant("pca256", "float32", "pca", 256)), ("rp192+int8", Variant("rp192+int8", "int8", "rp", 192)),
    ("float32+bm25", Variant("float32+bm25", keyword_limit=200)),
    ("int8+rescore+bm25100", Variant("int8+rescore+bm25100", "int8", rescore=4, keyword_limit=100)),
    ("float32+rrf", Variant("float32+rrf", rrf_k=60.0)),
    ("int8+rescore+rrf30", Variant("int8+rescore+rrf30", "int8", rescore=4, rrf_k=30.0)),
    ("float32+rrf0", Variant("float32+rrf0", rrf_k=0.0)),
    ("ivf64+int8", Variant("ivf64+int8", "int8", partitions=64)),
    ("pca64+ivf16n4", Variant("pca64+ivf16n4", "float32", "pca", 64, partitions=16, nprobe=4)),
])
def test_variant_names(name, expect):
    assert Variant.parse(name) == expect


@pytest.mark.parametrize("bad", ["", "float16", "float32+rescore", "pca", "float32+bm25+rrf", "float32+rrfx",
                                 "float32+rrf+bm25"])
def test_bad_variant_names(bad):
    with pytest.raises(ValueError, match="variant"):
        Variant.parse(bad)


class LookupEncoder:
    """A stand-in encoder for harness tests: fixed vectors per text, no model."""

    def __init__(self, table):
        self.table = table
        self.fingerprint = {"model": "lookup"}

    def embed_batch(self, texts):
        return np.stack([self.table[t] for t in texts])

    def embed_query(self, text):
        return self.table[text]


def test_harness_against_numpy_reference(tmp_path, rng):
    docs = [f"doc {i}" for i in range(300)]
    vecs = rng.standard_normal((300, 16)).astype(np.float32)
    table = dict(zip(docs, vecs))
    queries = []
    for j in range(60):
        text = f"query number {j}"
        target = rng.integers(300)
        table[text] = vecs[target] + 0.9 * rng.standard_normal(16).astype(np.float32)
        queries.append({"query": text, "doc_id": str(target)})
    corpus = [{"id": str(i), "text": t} for i, t in enumerate(docs)]
    res = evaluate(corpus, queries, models=[LookupEncoder(table)], variants=["float32"], k=10)
    row = res.rows[0]
    # Independent reference: NumPy brute force over normalized vectors.
    d = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    hits, rr = [], []
    for q in queries:
        v = table[q["query"]] / np.linalg.norm(table[q["query"]])
        order = np.argsort(-(d @ v), kind="stable")[:10]
        pos = np.flatnonzero(order == int(q["doc_id"]))
        hits.append(len(pos) > 0)
        rr.append(1 / (pos[0] + 1) if len(pos) else 0)
    assert row["recall@10"] == pytest.approx(np.mean(hits), abs=1e-9)
    assert row["mrr@10"] == pytest.approx(np.mean(rr), abs=1e-9)
    assert row["dim"] == 16 and row["queries"] == 60 and row["bytes/vec"] >= 64
    table_text = res.table()
    assert "recall@10" in table_text and "lookup" in table_text
    assert json.loads(res.to_json(tmp_path / "r.json"))["rows"][0]["variant"] == "float32"
    pytest.importorskip("matplotlib")
    png = res.plot(tmp_path / "r.png")
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.filterwarnings("ignore:training 8 partitions")
def test_ivf_variants(rng):
    """Partitioned variants: probing every partition ranks exactly as float32; one partition of eight can only
    lose recall."""
    docs = [f"doc {i}" for i in range(400)]
    vecs = rng.standard_normal((400, 16)).astype(np.float32)
    table = dict(zip(docs, vecs))
    queries = []
    for j in range(30):
        target = int(rng.integers(400))
        table[f"q{j}"] = vecs[target] + 0.8 * rng.standard_normal(16).astype(np.float32)
        queries.append({"query": f"q{j}", "doc_id": str(target)})
    corpus = [{"id": str(i), "text": t} for i, t in enumerate(docs)]
    res = evaluate(corpus, queries, models=[LookupEncoder(table)], variants=["float32", "ivf8n8", "ivf8n1"], k=10)
    by = {r["variant"]: r for r in res.rows}
    assert by["ivf8n8"]["recall@10"] == by["float32"]["recall@10"]
    assert by["ivf8n8"]["mrr@10"] == by["float32"]["mrr@10"]
    assert by["ivf8n1"]["recall@10"] <= by["float32"]["recall@10"]


def test_rrf_variant_against_a_reference(rng):
    """The +rrf rows: dense top-200 (NumPy) and BM25 top-200 fused by the RRF formula written out here."""
    from simdex.text.hybrid import KeywordIndex

    words = ["alpha", "beta", "gamma", "delta", "kernel", "socket", "thread", "queue", "mail", "json", "file", "pipe"]
    docs = [" ".join(rng.choice(words, 4)) + f" doc{i}" for i in range(300)]
    vecs = rng.standard_normal((300, 16)).astype(np.float32)
    table = dict(zip(docs, vecs))
    queries = []
    for j in range(40):
        target = int(rng.integers(300))
        text = " ".join(docs[target].split()[:2]) + f" q{j}"  # shares two words with its document
        table[text] = vecs[target] + 1.5 * rng.standard_normal(16).astype(np.float32)
        queries.append({"query": text, "doc_id": str(target)})
    corpus = [{"id": str(i), "text": t} for i, t in enumerate(docs)]
    res = evaluate(corpus, queries, models=[LookupEncoder(table)],
                   variants=["float32", "float32+bm25", "float32+rrf", "float32+rrf5"], k=10)
    by = {r["variant"]: r for r in res.rows}
    assert list(by) == ["float32", "float32+bm25", "float32+rrf", "float32+rrf5"]
    d = vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
    kw = KeywordIndex.from_records(range(300), docs)
    for variant, rrf_k in (("float32+rrf", 60), ("float32+rrf5", 5)):
        hits, rr = [], []
        for q in queries:
            v = table[q["query"]] / np.linalg.norm(table[q["query"]])
            dense = np.argsort(-(d @ v), kind="stable")[:200].tolist()
            score = {}
            for ranking in (dense, kw.bm25(q["query"], 200)[0].tolist()):
                for rank, i in enumerate(ranking, start=1):
                    score[i] = score.get(i, 0.0) + 1 / (rrf_k + rank)
            top = sorted(score, key=lambda i: (-score[i], i))[:10]
            pos = [r for r, i in enumerate(top, start=1) if i == int(q["doc_id"])]
            hits.append(bool(pos))
            rr.append(1 / pos[0] if pos else 0.0)
        assert by[variant]["recall@10"] == pytest.approx(np.mean(hits), abs=1e-9), variant
        assert by[variant]["mrr@10"] == pytest.approx(np.mean(rr), abs=1e-9), variant
    # The words matter here, so fusion must beat the noisy vectors alone (a sanity check of the set-up).
    assert by["float32+rrf"]["mrr@10"] > by["float32"]["mrr@10"]
    table_text = res.table()
    assert "float32+rrf " in table_text and "float32+rrf5" in table_text


def test_unknown_relevant_document_is_reported():
    enc = LookupEncoder({"a": np.ones(4, np.float32), "q": np.ones(4, np.float32)})
    with pytest.raises(ValueError, match="not in the corpus"):
        evaluate([("a", "a")], [{"query": "q", "doc_id": "zzz"}], models=[enc], variants=["float32"])


DEV = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data",
                   "dev-pydocs-linuxman")


@pytest.mark.encoder
@pytest.mark.skipif(not os.path.exists(os.path.join(DEV, "corpus.jsonl")), reason="../shared/data not present")
def test_dev_set_matches_numpy_brute_force(minilm):
    docs = [json.loads(line) for line in open(os.path.join(DEV, "corpus.jsonl"))]
    queries = [json.loads(line) for line in open(os.path.join(DEV, "queries.jsonl"))]
    texts = [d["text"] for d in docs]
    # Embed once; the harness and the reference then search the same vectors independently.
    table = dict(zip(texts, minilm.embed_batch(texts)))
    table.update(zip([q["query"] for q in queries], minilm.embed_batch([q["query"] for q in queries])))
    enc = LookupEncoder(table)
    res = evaluate(docs, queries, models=[enc], variants=["float32", "int8", "int8+rescore"], k=10)
    by = {r["variant"]: r for r in res.rows}
    d = np.stack([table[t] for t in texts]).astype(np.float64)
    index_of = {doc["id"]: i for i, doc in enumerate(docs)}
    hits, rr = [], []
    for q in queries:
        s = d @ np.asarray(table[q["query"]], np.float64)
        top = np.argsort(-s, kind="stable")[:10]
        pos = np.flatnonzero(top == index_of[q["doc_id"]])
        hits.append(len(pos) > 0)
        rr.append(1 / (pos[0] + 1) if len(pos) else 0.0)
    assert abs(by["float32"]["recall@10"] - np.mean(hits)) <= 0.005
    assert abs(by["float32"]["mrr@10"] - np.mean(rr)) <= 0.005
    assert abs(by["int8"]["recall@10"] - by["float32"]["recall@10"]) <= 0.01
    assert abs(by["int8+rescore"]["recall@10"] - by["float32"]["recall@10"]) <= 0.002
    assert abs(by["int8+rescore"]["mrr@10"] - by["float32"]["mrr@10"]) <= 0.002
    print({v: (round(r["recall@10"], 4), round(r["mrr@10"], 4)) for v, r in by.items()},
          "numpy", round(float(np.mean(hits)), 4), round(float(np.mean(rr)), 4))


# -- progress bars: evaluate(progress=True), `simdex eval` and `simdex demo` show one while embedding ------------
class ProgressEncoder:
    """Hash vectors (no model) behind the real `simdex.Encoder.embed_batch` signature and progress bar: keyword-only
    ``batch_size`` and ``show_progress_bar``, which defaults to the "simdex" logger being at INFO or below."""

    def __init__(self, model="progress-stand-in", device=None):
        self.fingerprint = {"model": model}

    def embed_batch(self, texts, *, batch_size=None, show_progress_bar=None):
        from tqdm.auto import tqdm

        if show_progress_bar is None:
            show_progress_bar = logging.getLogger("simdex").getEffectiveLevel() <= logging.INFO
        out = []
        with tqdm(total=len(texts), unit="text", desc="embed", disable=not show_progress_bar) as bar:
            for t in texts:
                out.append(self.embed_query(t))
                bar.update(1)
        return np.stack(out)

    def embed_query(self, text):
        return np.random.default_rng(zlib.crc32(text.encode())).standard_normal(8).astype(np.float32)


CORPUS = [(f"d{i}", f"document number {i}") for i in range(40)]
QUERIES = [{"query": "number 3", "doc_id": "d3"}, {"query": "number 7", "doc_id": "d7"}]


def test_encoder_embed_batch_takes_the_progress_keyword_evaluate_passes():
    import simdex
    from simdex.quality.evaluate import _progress_keyword

    assert _progress_keyword(simdex.Encoder.embed_batch) == "show_progress_bar"
    assert "show_progress_bar" in inspect.signature(simdex.Encoder.embed_batch).parameters


def test_evaluate_progress_shows_the_embedding_bar(capsys):
    evaluate(CORPUS, QUERIES, models=[ProgressEncoder()], variants=["float32"], progress=True)
    err = capsys.readouterr().err
    assert "embed" in err and "40/40" in err, err


def test_evaluate_without_progress_shows_no_bar_even_at_info(capsys, monkeypatch):
    monkeypatch.setattr(logging.getLogger("simdex"), "level", logging.INFO)
    evaluate(CORPUS, QUERIES, models=[ProgressEncoder()], variants=["float32"], progress=False)
    assert "embed" not in capsys.readouterr().err


def test_cli_eval_shows_the_embedding_bar(tmp_path, capsys, monkeypatch):
    import simdex
    from simdex.cli import main

    corpus, queries = tmp_path / "c.jsonl", tmp_path / "q.jsonl"
    corpus.write_text("\n".join(json.dumps({"id": i, "text": t}) for i, t in CORPUS))
    queries.write_text("\n".join(json.dumps(q) for q in QUERIES))
    monkeypatch.setattr(simdex, "Encoder", ProgressEncoder)  # `simdex eval` makes simdex.Encoder(model)
    assert main(["eval", "--corpus", str(corpus), "--queries", str(queries), "--variants", "float32"]) == 0
    captured = capsys.readouterr()
    assert "embed" in captured.err and "40/40" in captured.err, captured.err
    assert "recall@10" in captured.out
