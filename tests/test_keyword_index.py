"""The document store's own keyword index (``chunks_fts``): kept up to date by every write, never rebuilt."""

import sqlite3
import threading

import numpy as np
import pytest

import simdex
from simdex.text import docstore as docstore_module
from simdex.text import hybrid
from simdex.text.docstore import SCHEMA_VERSION, DocStore
from simdex.text.hybrid import KeywordIndex
from simdex.text.texts import docstore, keyword_index, texts_of
from standin_encoder import HashEncoder

CORPUS = ["send mail with smtplib", "parse json documents", "the smtp protocol and mail servers",
          "create a child process", "sort a list in place", "mail merge in a word processor",
          "read a file line by line", "kill a process by its id", "mail mail mail", "a process of mail"]
QUERIES = ["mail", "process", "a process", "mail smtp", "read line file", "zzz", "a", 'quoted "OR" NEAR']
RECURSIVE_CTE = ("id IN (WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r) "
                 "SELECT x FROM r WHERE x < 0)")
# Documents made of several chunks (by character span), and the chunk texts they give.
DOCS = [("a", "mail smtp relay. zebra crossing", "man/a", {"lang": "en"}), ("b", "grape process", "faq/b", None),
        ("c", "kill mail process now", None, None)]
CHUNKS = [(0, 0, 0, 16), (1, 0, 17, 31), (2, 1, 0, 13), (3, 2, 0, 9), (4, 2, 10, 21)]


def chunk_texts(docs, chunks):
    return [docs[d][1][s:e] for _, d, s, e in chunks]


def fts_rows(store):
    """Rows in the FTS index itself (not the content view it reads texts from)."""
    return store._db.execute("SELECT COUNT(*) FROM chunks_fts_docsize").fetchone()[0]


def same_bm25(a, b, query, limit=100, allow=None):
    (ia, sa), (ib, sb) = a.bm25(query, limit, allow=allow), b.bm25(query, limit, allow=allow)
    assert ia.tolist() == ib.tolist(), query
    np.testing.assert_array_equal(sa, sb)


@pytest.fixture
def no_rebuild(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("KeywordIndex.from_records ran: the keyword index was rebuilt")

    monkeypatch.setattr(KeywordIndex, "from_records", refuse)


def test_bm25_over_the_store_equals_the_in_memory_index():
    store = DocStore(None)
    store.add(DOCS, CHUNKS)
    kw = KeywordIndex.from_store(store)
    ref = KeywordIndex.from_records([c[0] for c in CHUNKS], chunk_texts(DOCS, CHUNKS),
                                    [{"source": s, "doc": None if k is None else f'"{k}"'}
                                     for k, _, s, _ in (DOCS[c[1]] for c in CHUNKS)])
    for q in QUERIES:
        same_bm25(kw, ref, q)
        same_bm25(kw, ref, q, limit=2)
        same_bm25(kw, ref, q, allow=[1, 3, 4])
    assert kw.where("source LIKE 'man%'").tolist() == ref.where("source LIKE 'man%'").tolist() == [0, 1]
    assert kw.where("doc = '\"c\"'").tolist() == [3, 4]
    assert kw.allow_list("zzz") is None


def test_search_text_finds_added_documents_without_a_rebuild(no_rebuild):
    enc = HashEncoder()
    index = simdex.Index(8)
    index.add_texts(CORPUS[:6], encoder=enc)
    before = index.search_text("mail", 10, encoder=enc, keywords="mail")
    assert set(before.ids.tolist()) == {0, 2, 5}
    kw = keyword_index(index)
    new = index.add_texts(CORPUS[6:], encoder=enc)
    store = texts_of(index).store
    assert fts_rows(store) == store.count()[1] == len(CORPUS)
    got = index.search_text("mail", 10, encoder=enc, keywords="mail")
    assert set(got.ids.tolist()) == {0, 2, 5, int(new[2]), int(new[3])}
    assert keyword_index(index) is kw  # the same index over the same table, only updated
    assert index.search_text("kill", 3, encoder=enc, keywords="kill").ids.tolist() == [7]
    # The ranking is the one a fresh in-memory index of all the texts gives.
    ref = hybrid.KeywordIndex.__new__(hybrid.KeywordIndex)  # from_records is refused here: build it by hand
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE docs_fts USING fts5(text, content='', tokenize='unicode61')")
    conn.executemany("INSERT INTO docs_fts (rowid, text) VALUES (?, ?)", enumerate(CORPUS))
    ref.__init__(conn)
    for q in QUERIES:
        same_bm25(kw, ref, q)


def test_removed_vectors_keep_their_texts_and_keywords():
    # As before: Index.remove leaves the texts in the store, so they stay in the keyword index, and the searches
    # drop the ids the index no longer has.
    enc = HashEncoder()
    index = simdex.Index(8)
    index.add_texts(CORPUS, encoder=enc)
    kw = keyword_index(index)
    index.remove([0, 2])
    store = texts_of(index).store
    assert fts_rows(store) == store.count()[1] == len(CORPUS)
    assert {0, 2} <= set(kw.bm25("mail")[0].tolist())
    for mode in ("prefilter", "rrf"):
        got = index.search_text("mail", 10, encoder=enc, keywords="mail", mode=mode).ids.tolist()
        assert 0 not in got and 2 not in got and 5 in got


def test_rollback_and_replaced_chunks_keep_the_index_in_step(tmp_path):
    path = str(tmp_path / "docs.sqlite")
    store = DocStore(path)
    store.add(DOCS, CHUNKS)
    store.commit(1)
    store.add([(None, "brand new words", None, None)], [(9, 0, 0, 15)])
    kw = KeywordIndex.from_store(store)
    assert kw.bm25("brand")[0].tolist() == [9]  # uncommitted rows are searched too
    store.rollback()  # one transaction: the keyword index goes back with the rows
    assert kw.bm25("brand")[0].tolist() == [] and fts_rows(store) == 5
    # A chunk id written again (INSERT OR REPLACE) replaces its old text in the index.
    store.add([(None, "zebra only", None, None)], [(2, 0, 0, 10)])
    assert 2 not in kw.bm25("grape process")[0].tolist() and kw.bm25("zebra")[0].tolist() == [1, 2]
    assert fts_rows(store) == 5
    store.commit(2)
    store.close()
    reopened = DocStore(path)
    kw = KeywordIndex.from_store(reopened)
    assert kw.bm25("zebra")[0].tolist() == [1, 2] and fts_rows(reopened) == 5
    reopened._db.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('integrity-check')")
    reopened.close()


def old_store(path, docs, chunks):
    """A store file as written before the keyword index: the three tables, no FTS table, user_version 0."""
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE documents (id INTEGER PRIMARY KEY, key TEXT UNIQUE, text TEXT NOT NULL, source TEXT,
                                metadata TEXT);
        CREATE TABLE chunks (id INTEGER PRIMARY KEY, doc INTEGER NOT NULL, start_char INTEGER NOT NULL,
                             end_char INTEGER NOT NULL);
        CREATE INDEX chunks_doc ON chunks (doc);
        CREATE TABLE state (key TEXT PRIMARY KEY, value TEXT NOT NULL);""")
    db.executemany("INSERT INTO documents VALUES (?, ?, ?, ?, ?)",
                   [(i + 1, None if k is None else f'"{k}"', t, s, None) for i, (k, t, s, _) in enumerate(docs)])
    db.executemany("INSERT INTO chunks VALUES (?, ?, ?, ?)", [(c, d + 1, s, e) for c, d, s, e in chunks])
    db.execute("INSERT INTO state VALUES ('seq', '3')")
    db.commit()
    db.close()


def test_a_store_from_before_is_migrated_on_open(tmp_path):
    path = str(tmp_path / "old.sqlite")
    old_store(path, DOCS, CHUNKS)
    store = DocStore(path)
    assert store.has_fts and store.seq == 3 and store.pending is None
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert fts_rows(store) == 5
    ref = KeywordIndex.from_records([c[0] for c in CHUNKS], chunk_texts(DOCS, CHUNKS))
    kw = KeywordIndex.from_store(store)
    for q in QUERIES:
        same_bm25(kw, ref, q)
    store.close()
    # Committed: the next open finds it and does not fill it again.
    again = DocStore(path)
    assert fts_rows(again) == 5
    again.close()


def test_a_saved_index_with_an_old_store_is_migrated_on_load(tmp_path, no_rebuild):
    enc = HashEncoder()
    index = simdex.Index(8)
    index.add_texts(CORPUS, encoder=enc)
    path = str(tmp_path / "ix.sdx")
    index.save(path)
    target = texts_of(index).store.path
    texts_of(index).store.close()
    db = sqlite3.connect(target)  # back to the old schema
    db.executescript("DROP TRIGGER chunks_fts_insert; DROP TRIGGER chunks_fts_delete; DROP TRIGGER chunks_fts_update; "
                     "DROP TABLE chunks_fts; DROP VIEW chunk_texts; PRAGMA user_version = 0;")
    db.close()
    loaded = simdex.load(path)
    got = loaded.search_text("mail", 10, encoder=enc, keywords="mail", chunks=True)
    assert set(got.ids.tolist()) == {0, 2, 5, 8, 9}
    store = texts_of(loaded).store
    assert fts_rows(store) == store.count()[1] == len(CORPUS)
    loaded.add_texts(["more mail"], encoder=enc)
    assert 10 in loaded.search_text("mail", 10, encoder=enc, keywords="mail", chunks=True).ids.tolist()


def test_a_read_only_old_store_falls_back_to_an_in_memory_index(tmp_path, monkeypatch):
    path = str(tmp_path / "old.sqlite")
    old_store(path, DOCS, CHUNKS)
    connect = sqlite3.connect
    monkeypatch.setattr(docstore_module.sqlite3, "connect",
                        lambda p, **kw: connect(f"file:{p}?mode=ro", uri=True, **kw))
    store = DocStore(path)
    assert not store.has_fts
    with pytest.raises(ValueError, match="no keyword index"):
        KeywordIndex.from_store(store)
    monkeypatch.setattr(docstore_module.sqlite3, "connect", connect)
    enc = HashEncoder()
    index = simdex.Index(8)
    index.add(enc.embed_batch(chunk_texts(DOCS, CHUNKS)), [c[0] for c in CHUNKS], fingerprint=enc.fingerprint)
    texts_of(index).store = store
    assert index.search_text("mail", 5, encoder=enc, keywords="mail", chunks=True).ids.tolist() != []
    assert set(keyword_index(index).bm25("mail")[0].tolist()) == {0, 3}
    assert keyword_index(index).where("source = 'faq/b'").tolist() == [2]


def test_save_as_writes_the_keyword_index_into_the_new_file(tmp_path, no_rebuild):
    enc = HashEncoder()
    index = simdex.Index(8)
    index.add_texts(CORPUS, encoder=enc)  # an in-memory store: saving copies it to a file
    path = str(tmp_path / "ix.sdx")
    index.save(path)
    loaded = simdex.load(path)
    store = texts_of(loaded).store
    assert store.path is not None and fts_rows(store) == len(CORPUS)
    assert store._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert loaded.search_text("kill", 1, encoder=enc, keywords="kill").ids.tolist() == [7]


def test_where_over_the_store_is_read_only_and_loses_nothing_at_its_deadline():
    enc = HashEncoder()
    index = simdex.Index(8)
    index.add_texts(CORPUS, encoder=enc)  # not committed: the store never commits on its own
    kw = keyword_index(index)
    out = {}
    thread = threading.Thread(target=lambda: out.setdefault("err", _raises(lambda: kw.where(RECURSIVE_CTE,
                                                                                           timeout=0.2))))
    thread.start()
    thread.join(10)
    if thread.is_alive():
        kw.conn.interrupt()
        thread.join(30)
        pytest.fail("where ran past its deadline")
    assert isinstance(out["err"], ValueError) and "deadline" in str(out["err"])
    with pytest.raises(ValueError, match="too big|over the"):
        kw.where("length(randomblob(2000000000)) > 0")
    # The uncommitted texts are still there, and the store still writes.
    store = texts_of(index).store
    assert store.count() == (len(CORPUS), len(CORPUS)) and fts_rows(store) == len(CORPUS)
    assert kw.conn.execute("PRAGMA query_only").fetchone() == (0,)
    index.add_texts(["mail again"], encoder=enc)
    assert len(kw.where("doc IS NULL")) == len(CORPUS) + 1
    assert 10 in kw.bm25("mail")[0].tolist()


def test_where_length_limit_follows_added_values():
    enc = HashEncoder()
    index = simdex.Index(8)
    index.add_texts(["short"], encoder=enc)
    assert len(keyword_index(index).where("1")) == 1
    long = "m" * (hybrid.WHERE_MAX_LENGTH + 10)
    store = docstore(index)
    vec = enc.embed_batch(["long"])
    index.add(vec, [5], fingerprint=enc.fingerprint)
    store.add([(None, "long", long, None)], [(5, 0, 0, 4)])
    assert keyword_index(index).where("source = ?", [long]).tolist() == [5]


def _raises(fn):
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - returned for the test to check
        return e
    return None
