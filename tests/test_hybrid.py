import math
import threading
import time
import zlib

import numpy as np
import pytest

import simdex
from simdex.text import hybrid
from simdex.text.hybrid import KeywordIndex, fts_query
from simdex.text.texts import texts_of


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
    only = index.search_text("sending email", 3, encoder=minilm, where="source LIKE '%.md'")
    assert [h.text[:4] for h in only] == ["fork"]
    kw = index.search_text("how do I put items in order", 3, encoder=minilm, keywords="sorted")
    assert [h.text[:4] for h in kw] == ["List"]
    kw = index.search_text("anything", 3, encoder=minilm, keywords="smtplib")
    assert [h.text[:3] for h in kw] == ["Use"]
    with pytest.raises(ValueError, match="where"):
        index.search_text("x", 3, encoder=minilm, where="no_such_column = 1")


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


class _HashEncoder:
    """Not a model: a text's hash as a unit vector, with the methods Index.add_texts and search_text call."""

    dim = 8
    fingerprint = {"model": "hash-stand-in", "weights_sha256": "none", "dim": 8, "pooling": None,
                   "normalize": True, "max_seq_length": 64}

    def embed_batch(self, texts, *, batch_size=None, show_progress_bar=None):
        return np.stack([self.embed_query(t) for t in texts])

    def embed_query(self, text):
        v = np.random.default_rng(zlib.crc32(text.encode())).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)


def test_search_text_where_is_bounded_too(monkeypatch):
    index = simdex.Index(8)
    index.add_texts(["send mail", "sort a list", "fork a process"], encoder=_HashEncoder())
    monkeypatch.setattr(hybrid, "WHERE_TIMEOUT", 0.3, raising=False)
    err, seconds = timed(lambda: index.search_text("mail", 2, encoder=_HashEncoder(), where=RECURSIVE_CTE), 10,
                         lambda: texts_of(index)._keywords[1].conn.interrupt())
    assert isinstance(err, ValueError) and "deadline" in str(err), err
    assert seconds < 2
    with pytest.raises(ValueError, match="';'"):
        index.search_text("mail", 2, encoder=_HashEncoder(), where="1; SELECT 1")
    assert len(index.search_text("mail", 3, encoder=_HashEncoder(), where="doc IS NULL")) == 3


def test_search_text_passes_its_where_timeout_on():
    index = simdex.Index(8)
    index.add_texts(["send mail", "sort a list"], encoder=_HashEncoder())
    err, seconds = timed(lambda: index.search_text("mail", 2, encoder=_HashEncoder(), where=RECURSIVE_CTE,
                                                   where_timeout=0.2), 10,
                         lambda: texts_of(index)._keywords[1].conn.interrupt())
    assert isinstance(err, ValueError) and "deadline" in str(err), err
    assert seconds < 1.5  # the module default is 3 s
