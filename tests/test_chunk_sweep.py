"""Chunk size as a swept hyperparameter of `evaluate`, on a hand-built corpus where the answer is known: each long
document hides a 4-word key phrase among 196 filler words, and a short distractor repeats half of it. Whole
documents dilute the phrase (the distractor wins); 8-word chunks keep it (the long document wins)."""

import json

import numpy as np
import pytest

from simdex.quality.chunks import QUERY_BUCKETS, chunk_settings, search_depth
from simdex.quality.evaluate import evaluate

from quality_standin import WordEncoder

N = 20
FILLER = [f"filler{j}" for j in range(40)]


def corpus():
    rng = np.random.default_rng(7)
    docs = []
    for i in range(N):
        words = list(rng.choice(FILLER, 196))
        at = int(rng.integers(0, 190))
        words[at:at] = [f"alpha{i}", f"beta{i}", f"gamma{i}", f"delta{i}"]
        docs.append({"id": f"long{i}", "text": " ".join(words)})
        docs.append({"id": f"short{i}", "text": f"alpha{i} beta{i} other{i} thing{i}"})
    queries = [{"query": f"alpha{i} beta{i} gamma{i} delta{i}", "doc_id": f"long{i}"} for i in range(N)]
    return docs, queries


def test_small_chunks_find_what_whole_documents_dilute():
    docs, queries = corpus()
    enc = WordEncoder()
    res = evaluate(docs, queries, models=[enc], variants=["float32"], chunk_tokens=[None, 8], overlap=4)
    whole, chunked = res.rows
    assert (whole["chunk tokens"], chunked["chunk tokens"]) == (None, 8)
    assert whole["recall@1"] == 0.0 and chunked["recall@1"] == 1.0  # the distractor wins unless chunked
    # Index size per setting, by hand: a 200-word document in 8-word windows every 4 words: ceil(196 / 4) = 49
    # chunks; a 4-word one: 1.
    assert whole["vectors"] == 2 * N and chunked["vectors"] == N * 49 + N
    assert chunked["index MB"] > whole["index MB"] * 20
    table = res.table()
    assert "chunk tokens" in table and "vectors" in table and "recall@10 by query words" in table


def test_documents_rank_by_their_best_chunk_exactly():
    docs, queries = corpus()
    enc = WordEncoder()
    res = evaluate(docs, queries, models=[enc], variants=["float32"], chunk_tokens=8, overlap=4, k=10)
    # Brute force: every chunk scored, each document's score its best chunk's.
    spans = enc.token_spans([d["text"] for d in docs], 8, 4)
    best = np.full((len(queries), len(docs)), -np.inf)
    for d, (doc, sp) in enumerate(zip(docs, spans)):
        vecs = enc.embed_batch([doc["text"][s:e] for s, e in sp])
        q = enc.embed_batch([x["query"] for x in queries])
        best[:, d] = (q @ vecs.T).max(axis=1)
    expected = -np.sort(-best, axis=1)[:, :10]
    np.testing.assert_allclose(res.hits[0].scores, expected, atol=1e-5)
    # A document counts once however many of its chunks are hit.
    assert (res.hits[0].relevant.sum(axis=1) <= 1).all() and res.rows[0]["recall@10"] == 1.0


def test_length_breakdown_by_query_and_document_words():
    docs, queries = corpus()
    queries = queries + [{"query": f"gamma{i}", "doc_id": f"long{i}"} for i in range(N)]
    res = evaluate(docs, queries, models=[WordEncoder()], variants=["float32"], chunk_tokens=[8], overlap=4)
    lengths = res.rows[0]["lengths"]
    assert set(lengths["query words"]) == {"1-3", "4-7"}
    assert lengths["query words"]["1-3"]["n"] == N and lengths["query words"]["4-7"]["n"] == N
    assert lengths["document words"] == {"128-255": {"recall": res.rows[0]["recall@10"], "n": 2 * N}}
    assert [b[0] for b in QUERY_BUCKETS] == ["1-3", "4-7", "8-15", "16+"]
    json.loads(res.to_json())  # the breakdown travels in the JSON rows


def test_the_plot_has_the_sweep(tmp_path):
    docs, queries = corpus()
    res = evaluate(docs, queries, models=[WordEncoder()], variants=["float32"], chunk_tokens=[8, 16], overlap=4)
    assert open(res.plot(tmp_path / "s.png"), "rb").read(4) == b"\x89PNG"


def test_search_depth_covers_k_documents():
    owner = np.array([0, 0, 0, 1, 2, 2])
    assert search_depth(2, owner) == 6 and search_depth(1, owner) == 3 and search_depth(1, np.arange(5)) == 1


@pytest.mark.parametrize("chunk_tokens,overlap,match", [
    ([0], 0, "positive"), ([8, 8], 0, "twice"), ([8, 16], 8, "smallest"), (None, 4, "only used"),
    ([8], -1, "overlap"), (["8"], 0, "positive"), ([], 0, "at least one"),
])
def test_bad_settings_are_refused(chunk_tokens, overlap, match):
    with pytest.raises(ValueError, match=match):
        chunk_settings(chunk_tokens, overlap)


def test_an_encoder_without_a_chunker_is_a_clear_error():
    class NoChunker(WordEncoder):
        token_spans = None

    docs, queries = corpus()
    with pytest.raises(ValueError, match="token_spans"):
        evaluate(docs, queries, models=[NoChunker()], variants=["float32"], chunk_tokens=[8])


def test_cli_sweeps_chunk_sizes(tmp_path, capsys, monkeypatch):
    from simdex import cli
    from simdex.quality import evaluate as ev

    docs, queries = corpus()
    c, q = tmp_path / "c.jsonl", tmp_path / "q.jsonl"
    c.write_text("\n".join(json.dumps(d) for d in docs))
    q.write_text("\n".join(json.dumps(x) for x in queries))
    monkeypatch.setattr(ev, "_encoder", lambda model: WordEncoder())
    assert cli.main(["eval", "--corpus", str(c), "--queries", str(q), "--variants", "float32",
                     "--chunk-tokens", "full,8", "--overlap", "4", "--json", str(tmp_path / "r.json")]) == 0
    rows = json.loads((tmp_path / "r.json").read_text())["rows"]
    assert [r["chunk tokens"] for r in rows] == [None, 8] and rows[1]["recall@1"] == 1.0
    assert "by document words" in capsys.readouterr().out
