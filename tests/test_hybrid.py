import numpy as np
import pytest

import simdex
from simdex.hybrid import KeywordIndex, fts_query


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
