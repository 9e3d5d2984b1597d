import math
import threading
import time

import numpy as np
import pytest

import simdex
from simdex.text import hybrid
from simdex.text.hybrid import KeywordIndex, fts_query
from simdex.text.texts import texts_of
from standin_encoder import HashEncoder


@pytest.fixture
def kw():
    texts = ["send mail with smtplib", "parse json documents", "the smtp protocol and mail servers",
             "create a child process", 'a "quoted" OR tricky NEAR text']
    meta = [{"source": "pylib"}, {"source": "pylib"}, {"source": "man"}, {"source": "man"}, {"source": "pyfaq"}]
    return KeywordIndex.from_records([10, 11, 12, 13, 14], texts, meta)


def test_bm25_ranks_keyword_matches(kw):
    ids, scores = kw.bm25("how do I send mail", limit=10)
    assert set(ids.tolist()) == {10, 12}
    assert ids[0] == 10 and scores[0] >= scores[1]  # "send" and "mail" both match doc 10
    assert kw.allow_list("nothing matches here zzz") is None
    assert kw.bm25("")[0].size == 0


def test_user_text_cannot_inject_fts_syntax(kw):
    assert fts_query('a "b" OR c*') == '"a" OR "b" OR "or" OR "c"'
    ids, _ = kw.bm25('"quoted" NEAR(')
    assert ids.tolist() == [14]


def test_where_filters_metadata(kw):
    assert sorted(kw.where("source LIKE 'man%'").tolist()) == [12, 13]
    assert kw.where("source = ?", ["pyfaq"]).tolist() == [14]
    with pytest.raises(ValueError, match="where"):
        kw.where("nosuchcolumn = 1")
    with pytest.raises(ValueError, match="where"):
        kw.where("1; DELETE FROM docs")


def test_allow_list_drives_the_index_filter(kw, rng):
    index = simdex.Index(8)
    vecs = rng.standard_normal((5, 8)).astype(np.float32)
    index.add(vecs, ids=[10, 11, 12, 13, 14])
    _, ids = index.search(vecs[1], 5, filter=kw.allow_list("mail"))
    assert set(ids[0][ids[0] >= 0].tolist()) == {10, 12}


@pytest.mark.encoder
def test_search_text_keywords_and_where_over_the_document_store(tmp_path, minilm):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "mail.txt").write_text("Use smtplib to send email messages from a Python program.")
    (folder / "sort.txt").write_text("Lists are sorted in place with list.sort or copied with sorted.")
    (folder / "proc.md").write_text("fork creates a child process that runs the same program.")
    path = tmp_path / "docs.simdex"
    simdex.ingest(str(folder), path, encoder=minilm)
    index = simdex.load(path)
    assert [h.text for h in index.search_text("sending email", 3, encoder=minilm)][0].startswith("Use smtplib")
    only = index.search_text("sending email", 3, encoder=minilm, unsafe_sql="source LIKE '%.md'")
    assert [h.text[:4] for h in only] == ["fork"]
    kw = index.search_text("how do I put items in order", 3, encoder=minilm, keywords="sorted")
    assert [h.text[:4] for h in kw] == ["List"]
    kw = index.search_text("anything", 3, encoder=minilm, keywords="smtplib")
    assert [h.text[:3] for h in kw] == ["Use"]
    with pytest.raises(ValueError, match="where"):
        index.search_text("x", 3, encoder=minilm, unsafe_sql="no_such_column = 1")


# -- hostile where= conditions: one expression, a deadline, a length limit ---------------------------------------
RECURSIVE_CTE = ("id IN (WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) "
                 "SELECT x FROM r WHERE x < 0)")  # counts forever: never yields a row
DOUBLING_CTE = ("length((WITH RECURSIVE r(s, n) AS (SELECT 'x', 0 UNION ALL SELECT s || s, n + 1 FROM r "
                "WHERE n < 40) SELECT max(length(s)) FROM r)) > 0")


def timed(call, wait, interrupt):
    """(call's result or exception, seconds), run in a thread; a call still running after `wait` seconds is
    stopped with interrupt() and the test fails (so unbounded code fails here instead of hanging the suite)."""
    out = {}

    def run():
        t = time.monotonic()
        try:
            out["value"] = call()
        except Exception as e:  # noqa: BLE001 - handed to the test
            out["value"] = e
        out["seconds"] = time.monotonic() - t

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(wait)
    if thread.is_alive():
        interrupt()
        thread.join(30)
        pytest.fail(f"still running after {wait} s")
    return out["value"], out["seconds"]


def timed_where(kw, condition, wait=20.0, **kwargs):
    return timed(lambda: kw.where(condition, **kwargs), wait, kw.conn.interrupt)


def test_where_recursive_cte_stops_at_the_deadline(kw, monkeypatch):
    monkeypatch.setattr(hybrid, "WHERE_TIMEOUT", 0.3, raising=False)
    err, seconds = timed_where(kw, RECURSIVE_CTE, wait=10)
    assert isinstance(err, ValueError), err
    assert "deadline" in str(err) and "timeout=" in str(err) and "WHERE_TIMEOUT" in str(err)
    assert 0.3 <= seconds < 1.5
    # The connection is left as it was: no deadline, no length limit, later queries unaffected.
    time.sleep(0.35)
    assert kw.conn.execute("SELECT count(*) FROM (WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r "
                           "WHERE x < 300000) SELECT x FROM r)").fetchone() == (300000,)
    assert kw.conn.execute("SELECT length(randomblob(3000000))").fetchone() == (3000000,)
    assert sorted(kw.where("source LIKE 'man%'").tolist()) == [12, 13]
    assert set(kw.bm25("mail")[0].tolist()) == {10, 12}


def test_where_timeout_keyword_overrides_the_module_constant(kw, monkeypatch):
    monkeypatch.setattr(hybrid, "WHERE_TIMEOUT", 30.0, raising=False)
    err, seconds = timed_where(kw, RECURSIVE_CTE, wait=10, timeout=0.2)
    assert isinstance(err, ValueError) and "0.2 s deadline" in str(err)
    assert seconds < 1.2


@pytest.mark.parametrize("condition", [
    "length(zeroblob(2e9)) > 0", "zeroblob(2e9) IS NOT NULL", "length(randomblob(1e9)) > 0",
    "hex(zeroblob(4.9e8)) != ''", "length(hex(randomblob(4.9e8))) > 0", "upper(zeroblob(9e8)) IS NOT NULL",
    DOUBLING_CTE,
])
def test_where_huge_values_are_refused_at_once(kw, condition, monkeypatch):
    monkeypatch.setattr(hybrid, "WHERE_TIMEOUT", 60.0, raising=False)  # the length limit must stop these
    err, seconds = timed_where(kw, condition)
    assert isinstance(err, ValueError) and "WHERE_MAX_LENGTH" in str(err), err
    assert seconds < 1.0


def test_where_length_limit_admits_long_stored_values():
    long = "m" * (hybrid.WHERE_MAX_LENGTH + 5000)
    kw = KeywordIndex.from_records([1, 2], ["a", "b"], [{"source": long}, {"source": "short"}])
    assert kw.where("length(source) > 10").tolist() == [1]
    assert kw.where("source = ?", [long]).tolist() == [1]


@pytest.mark.parametrize("condition,match", [
    ("1; DELETE FROM docs", "';'"), ("1;", "';'"),
    ("1) UNION SELECT rowid FROM docs_fts WHERE (1", r"unbalanced '\)'"),
    ("source = 'man') OR (1", r"unbalanced '\)'"), ("(source = 'man'", r"unbalanced '\('"),
    ("1 -- a comment", "comments"), ("1 /* a comment */", "comments"), ("1 /* unterminated", "comments"),
    ("source = 'unterminated", "unterminated"), ('"source = 1', "unterminated"), ("", "empty"), ("   ", "empty"),
    ("source = ?" + " " * 10**6, "characters"),
])
def test_where_refuses_anything_but_one_expression(kw, condition, match):
    with pytest.raises(ValueError, match=match):
        kw.where(condition, ["man"] if "?" in condition else ())


def test_where_accepts_expressions_with_tricky_literals_and_subqueries(kw):
    assert kw.where("source = ';' OR source = ')' OR source = '--' OR source = '/*'").tolist() == []
    assert sorted(kw.where("source LIKE '%)%' OR \"source\" = 'man' OR [source] = 'it''s'").tolist()) == [12, 13]
    assert sorted(kw.where("id IN (SELECT id FROM docs WHERE source = 'man')").tolist()) == [12, 13]
    assert kw.where("(SELECT count(*) FROM docs) = 5 AND id = 14").tolist() == [14]
    with pytest.raises(TypeError, match="str"):
        kw.where(b"1")


@pytest.mark.parametrize("timeout,error", [(0, ValueError), (-1, ValueError), (float("nan"), ValueError),
                                           ("1", TypeError), (True, TypeError)])
def test_where_timeout_must_be_a_positive_number(kw, timeout, error):
    with pytest.raises(error, match="timeout"):
        kw.where("1", timeout=timeout)
    assert len(kw.where("1", timeout=np.float32(2))) == 5 and len(kw.where("1", timeout=math.inf)) == 5


def test_where_without_setlimit_refuses_blob_makers(kw, monkeypatch):
    monkeypatch.setattr(hybrid, "_HAS_SETLIMIT", False)  # Python < 3.11: no sqlite3 Connection.setlimit
    with pytest.raises(ValueError, match="zeroblob"):
        kw.where("length(ZeroBlob (2e9)) > 0")
    with pytest.raises(ValueError, match="randomblob"):
        kw.where("length(\"randomblob\"(1e9)) > 0")
    assert kw.where("source = 'zeroblob(1)'").tolist() == []  # inside a literal it is only text
    assert len(kw.where("1")) == 5




def test_search_text_where_is_bounded_too(monkeypatch):
    index = simdex.Index(8)
    index.add_texts(["send mail", "sort a list", "fork a process"], encoder=HashEncoder())
    monkeypatch.setattr(hybrid, "WHERE_TIMEOUT", 0.3, raising=False)
    err, seconds = timed(lambda: index.search_text("mail", 2, encoder=HashEncoder(), unsafe_sql=RECURSIVE_CTE), 10,
                         lambda: texts_of(index)._keywords[1].conn.interrupt())
    assert isinstance(err, ValueError) and "deadline" in str(err), err
    assert seconds < 2
    with pytest.raises(ValueError, match="';'"):
        index.search_text("mail", 2, encoder=HashEncoder(), unsafe_sql="1; SELECT 1")
    assert len(index.search_text("mail", 3, encoder=HashEncoder(), unsafe_sql="doc IS NULL")) == 3


def test_search_text_passes_its_where_timeout_on():
    index = simdex.Index(8)
    index.add_texts(["send mail", "sort a list"], encoder=HashEncoder())
    err, seconds = timed(lambda: index.search_text("mail", 2, encoder=HashEncoder(), unsafe_sql=RECURSIVE_CTE,
                                                   where_timeout=0.2), 10,
                         lambda: texts_of(index)._keywords[1].conn.interrupt())
    assert isinstance(err, ValueError) and "deadline" in str(err), err
    assert seconds < 1.5  # the module default is 3 s


# -- search_text(mode="rrf"): reciprocal rank fusion of the vector ranking and BM25 ------------------------------
CORPUS = ["send mail with smtplib", "parse json documents", "the smtp protocol and mail servers",
          "create a child process", "sort a list in place", "mail merge in a word processor",
          "read a file line by line", "kill a process by its id"]


def _rrf_reference(index, query, words, k, rrf_k=60.0, allowed=None):
    """Chunk ids in fused order, computed apart from search_text: NumPy cosine ranking, BM25 ranks from a fresh
    KeywordIndex, and the RRF formula by hand (ties to the lower id)."""
    enc = HashEncoder()
    ids = [i for i in range(len(CORPUS)) if allowed is None or i in allowed]
    vecs = enc.embed_batch([CORPUS[i] for i in ids])
    dense = [ids[j] for j in np.argsort(-(vecs @ enc.embed_query(query)), kind="stable")]
    bm25 = [i for i in KeywordIndex.from_records(range(len(CORPUS)), CORPUS).bm25(words, 100)[0].tolist()
            if i in ids]
    score = {}
    for ranking in (dense, bm25):
        for rank, i in enumerate(ranking, start=1):
            score[i] = score.get(i, 0.0) + 1.0 / (rrf_k + rank)
    return sorted(score, key=lambda i: (-score[i], i))[:k], score


@pytest.fixture
def texts_index():
    index = simdex.Index(8)
    index.add_texts(CORPUS, encoder=HashEncoder())
    return index


@pytest.mark.parametrize("query,keywords,rrf_k", [("mail", None, None), ("a process", None, 5),
                                                  ("how do I send mail", None, 0), ("anything", "process kill", None)])
@pytest.mark.parametrize("chunks", [False, True])
def test_search_text_rrf_returns_the_fused_order(texts_index, query, keywords, rrf_k, chunks):
    got = texts_index.search_text(query, 5, encoder=HashEncoder(), mode="rrf", rrf_k=rrf_k, keywords=keywords,
                                  chunks=chunks)
    want, score = _rrf_reference(texts_index, query, keywords or query, 5, 60.0 if rrf_k is None else rrf_k)
    assert got.ids.tolist() == want
    assert got.scores.dtype == np.float32 and got.scores.tolist() == pytest.approx([score[i] for i in want])
    assert [h.text for h in got] == [CORPUS[i] for i in want]
    # The BM25 side matters: "mail" documents rank higher fused than by the vector search alone.
    dense = texts_index.search_text(query, len(CORPUS), encoder=HashEncoder()).ids.tolist()
    if keywords is None and query == "mail":
        assert dense.index(5) > got.ids.tolist().index(5)


def test_search_text_rrf_without_shared_words_is_the_vector_ranking(texts_index):
    dense = texts_index.search_text("zzz qqq", 4, encoder=HashEncoder())
    fused = texts_index.search_text("zzz qqq", 4, encoder=HashEncoder(), mode="rrf")
    assert fused.ids.tolist() == dense.ids.tolist()
    assert fused.scores.tolist() == pytest.approx([1 / 61, 1 / 62, 1 / 63, 1 / 64])


def test_search_text_rrf_honours_filter_and_where(texts_index):
    allowed = {1, 3, 5, 7}
    got = texts_index.search_text("mail process", 8, encoder=HashEncoder(), mode="rrf", filter=sorted(allowed))
    want, _ = _rrf_reference(texts_index, "mail process", "mail process", 8, allowed=allowed)
    assert got.ids.tolist() == want and set(want) == allowed  # 0 and 2 match "mail" by BM25 but are filtered out
    store = texts_of(texts_index).store
    store._db.execute("UPDATE documents SET source = 'man' WHERE id IN (SELECT doc FROM chunks WHERE id IN (3, 7))")
    texts_of(texts_index)._keywords = None  # the keyword index reads source when built
    got = texts_index.search_text("mail process", 8, encoder=HashEncoder(), mode="rrf", unsafe_sql="source = 'man'")
    assert got.ids.tolist() == _rrf_reference(texts_index, "mail process", "mail process", 8, allowed={3, 7})[0]
    both = texts_index.search_text("mail process", 8, encoder=HashEncoder(), mode="rrf", unsafe_sql="source = 'man'",
                                   filter=[0, 2, 7])
    assert both.ids.tolist() == [7]
    assert len(texts_index.search_text("mail", 3, encoder=HashEncoder(), mode="rrf", filter=[])) == 0


def test_search_text_rrf_skips_removed_vectors(texts_index):
    texts_index.remove([0, 2])  # their texts stay in the store (and so in the keyword index)
    got = texts_index.search_text("mail", 8, encoder=HashEncoder(), mode="rrf")
    assert 0 not in got.ids.tolist() and 2 not in got.ids.tolist() and len(got) == 6
    assert got.ids.tolist().index(5) == 0 or got.scores[0] >= 1 / 61 + 1 / 62 - 1e-6  # 5 still fused with BM25


def test_search_text_rrf_fuses_documents_not_chunks():
    from simdex.text.texts import docstore

    enc = HashEncoder()
    index = simdex.Index(8)
    # Document A: chunks 0 ("mail smtp relay") and 1 ("zebra"), document B: chunk 2, document C: chunk 3.
    a = "mail smtp relay. zebra"
    docs = [("A", a, None, None), ("B", "grape", None, None), ("C", "mail", None, None)]
    chunks = [(0, 0, 0, 16), (1, 0, 17, 22), (2, 1, 0, 5), (3, 2, 0, 4)]
    texts = ["mail smtp relay.", "zebra", "grape", "mail"]
    index.add(enc.embed_batch(texts), [0, 1, 2, 3], fingerprint=enc.fingerprint)
    docstore(index).add(docs, chunks)
    per_doc = index.search_text("zebra", 3, encoder=enc, mode="rrf")
    # Vector ranking of "zebra": chunk 1 first (same text), so document A ranks first there, named by chunk 1.
    assert per_doc.ids.tolist()[0] == 1 and per_doc[0].doc_id == "A" and per_doc[0].chunk == "zebra"
    assert sorted(h.doc_id for h in per_doc) == ["A", "B", "C"]
    per_chunk = index.search_text("zebra", 4, encoder=enc, mode="rrf", chunks=True)
    assert sorted(per_chunk.ids.tolist()) == [0, 1, 2, 3]
    # BM25 over "mail" ranks chunk 3 (document C) first and chunk 0 (document A) second. Per document, A's
    # vector rank is its best chunk's rank among documents, and it gets each ranking's term once.
    dense = index.search_text("mail", 3, encoder=enc)  # the vector ranking of documents, each by its best chunk
    dense_rank = {h.doc_id: r for r, h in enumerate(dense, start=1)}
    bm25_rank = {"C": 1, "A": 2}
    want = {d: 1 / (60 + dense_rank[d]) + (1 / (60 + bm25_rank[d]) if d in bm25_rank else 0) for d in "ABC"}
    fused = index.search_text("mail", 3, encoder=enc, mode="rrf")
    assert [h.doc_id for h in fused] == sorted(want, key=lambda d: -want[d])
    assert fused.scores.tolist() == pytest.approx([want[h.doc_id] for h in fused])
    # A is shown by its best chunk in the vector ranking (the same chunk the default mode shows).
    assert next(h.id for h in fused if h.doc_id == "A") == next(h.id for h in dense if h.doc_id == "A")


def test_search_text_rrf_looks_deeper_when_the_best_chunks_hold_few_documents(rng):
    from simdex.text.texts import docstore

    enc = HashEncoder()
    index = simdex.Index(8)
    q = enc.embed_query("zebra")
    a = " ".join(["zebra"] * 6)
    # Document A: 6 chunks, all near the query and all matching "zebra"; B and C: one chunk each, far from it.
    vecs = np.vstack([q + 0.01 * rng.standard_normal((6, 8)), -q + 0.1 * rng.standard_normal((2, 8))])
    index.add(vecs.astype(np.float32), fingerprint=enc.fingerprint)
    docstore(index).add([("A", a, None, None), ("B", "grape", None, None), ("C", "melon", None, None)],
                        [(i, 0, 6 * i, 6 * i + 5) for i in range(6)] + [(6, 1, 0, 5), (7, 2, 0, 5)])
    got = index.search_text("zebra", 3, encoder=enc, mode="rrf", keyword_limit=1)  # 3 chunks each: all of A
    assert [h.doc_id for h in got][0] == "A" and sorted(h.doc_id for h in got) == ["A", "B", "C"]


def test_search_text_rrf_depth_is_keyword_limit(texts_index):
    # keyword_limit is how many candidates each ranking brings, at least k: here max(3, 1) = 3 from each.
    got = texts_index.search_text("mail", 3, encoder=HashEncoder(), mode="rrf", keyword_limit=1, chunks=True)
    dense3 = texts_index.search_text("mail", 3, encoder=HashEncoder(), chunks=True).ids.tolist()
    bm25_3 = KeywordIndex.from_records(range(len(CORPUS)), CORPUS).bm25("mail", 3)[0].tolist()
    score = {}
    for ranking in (dense3, bm25_3):
        for rank, i in enumerate(ranking, start=1):
            score[i] = score.get(i, 0.0) + 1 / (60 + rank)
    assert got.ids.tolist() == sorted(score, key=lambda i: (-score[i], i))[:3]
    deeper = texts_index.search_text("mail", 3, encoder=HashEncoder(), mode="rrf", chunks=True)
    assert deeper.ids.tolist() == _rrf_reference(texts_index, "mail", "mail", 3)[0]


@pytest.mark.parametrize("kwargs,error,match", [
    ({"mode": "fusion"}, ValueError, "mode"), ({"mode": None}, TypeError, "mode"), ({"mode": "RRF"}, ValueError, "mode"),
    ({"mode": "rrf", "rrf_k": -1}, ValueError, "rrf_k"), ({"mode": "rrf", "rrf_k": "60"}, TypeError, "rrf_k"),
    ({"mode": "rrf", "rrf_k": float("nan")}, ValueError, "rrf_k"),
    ({"rrf_k": 60}, ValueError, "only with mode='rrf'"),
    ({"mode": "rrf", "min_score": 0.1}, ValueError, "min_score"),
    ({"mode": "rrf", "keyword_limit": 0}, ValueError, "keyword_limit"),
    ({"keyword_limit": "200"}, TypeError, "keyword_limit"),
])
def test_search_text_refuses_bad_modes(texts_index, kwargs, error, match):
    with pytest.raises(error, match=match):
        texts_index.search_text("mail", 3, encoder=HashEncoder(), **kwargs)


def test_search_text_rrf_needs_the_texts(rng):
    enc = HashEncoder()
    index = simdex.Index(8)
    index.add(rng.standard_normal((3, 8)).astype(np.float32), fingerprint=enc.fingerprint)
    with pytest.raises(ValueError, match="mode='rrf'.*document store"):
        index.search_text("mail", 2, encoder=enc, mode="rrf")
    assert len(index.search_text("mail", 2, encoder=enc)) == 2  # the default mode needs no texts


def test_bm25_allow_restricts_the_matches(kw):
    assert kw.bm25("mail smtp", 10, allow=[12, 13])[0].tolist() == [12]
    assert kw.bm25("mail", 10, allow=np.array([], np.int64))[0].size == 0
    assert kw.bm25("mail", 10, allow=None)[0].tolist() == kw.bm25("mail", 10)[0].tolist()
