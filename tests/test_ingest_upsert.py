"""simdex.ingest upserts: an id stored by an earlier run is replaced when its text changed, left alone (metadata
updated) when it did not; an edited file is read again; a crash between the index file and the store commit of
a replacing save leaves them in agreement."""

import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest
import simdex
from simdex.text.docstore import DocStore
from simdex.text.persist import docs_path
from simdex.text.texts import docstore

TESTS = Path(__file__).resolve().parent
sys.path.insert(0, str(TESTS))
from test_ingest import SimulatedCrash, _standin, die_at_commit  # noqa: E402 - the tests' own helpers


def _write(path, docs):
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


def _state(index):
    """{key: (text, source, metadata)} over the stored documents, after checking every vector has exactly one
    chunk row and every chunk row its vector, and that each vector is its chunk's embedding."""
    store = docstore(index)
    ids = index.ids()
    stored = store.get(ids)
    assert sorted(stored) == sorted(ids.tolist())
    assert store.count()[1] == len(ids)
    if len(ids):
        enc = _standin()
        want = enc.compute(enc.prepare([stored[int(c)][1].chunk for c in ids]))
        np.testing.assert_allclose(index.reconstruct(ids), want, atol=1e-5)
    return {doc.id: (doc.text, doc.source, doc.metadata) for _, doc in stored.values()}


def test_a_changed_text_replaces_its_document_and_nothing_else_is_embedded(tmp_path):
    corpus, path = tmp_path / "c.jsonl", tmp_path / "c.simdex"
    docs = [{"id": f"d{i}", "text": f"note {i} about subject {i % 7}", "tag": i % 3} for i in range(50)]
    _write(corpus, docs)
    enc = _standin()
    first = simdex.ingest(corpus, path, encoder=enc)
    assert (first.documents, first.replaced, first.unchanged, enc.computed) == (50, 0, 0, 50)

    # a second source (a batch of edits): one text changed, one metadata-only change, one same, one new
    enc.computed = 0
    edits = [("d3", "note 3 rewritten entirely"), {"id": "d4", "text": docs[4]["text"], "tag": 99},
             ("d5", docs[5]["text"]), ("new", "a brand new note")]
    report = simdex.ingest(edits, path, encoder=enc, source_name="edits")
    assert (report.documents, report.replaced, report.unchanged, report.chunks) == (2, 1, 2, 2)
    assert enc.computed == 2  # the changed text and the new one, nothing else
    index = simdex.load(path)
    state = _state(index)
    assert len(state) == len(index) == 51
    assert state["d3"][0] == "note 3 rewritten entirely" and state["d4"][2] == {"tag": 99}
    assert state["d5"] == (docs[5]["text"], None, {})  # an unchanged text: its source and metadata follow the item
    assert state["d6"] == (docs[6]["text"], f"{corpus}:7", {"tag": 0})
    query = enc.compute(enc.prepare(["note 3 rewritten entirely"]))
    _, ids = index.search(query, 1)
    assert docstore(index).get(ids[0])[int(ids[0][0])][1].id == "d3"


def test_an_edited_file_is_read_again_and_only_its_changes_are_embedded(tmp_path):
    corpus, path = tmp_path / "c.jsonl", tmp_path / "c.simdex"
    docs = [{"id": f"d{i}", "text": f"note {i} about subject {i % 7}"} for i in range(40)]
    _write(corpus, docs)
    enc = _standin()
    simdex.ingest(corpus, path, encoder=enc)
    again = simdex.ingest(corpus, path, encoder=enc)  # unchanged: nothing read again
    assert (again.resumed_after, again.items, enc.computed) == (40, 40, 40)

    docs[10]["text"] = "note 10 was edited in place"
    del docs[20]
    docs.append({"id": "d40", "text": "an appended note"})
    _write(corpus, docs)
    enc.computed = 0
    report = simdex.ingest(corpus, path, encoder=enc)
    assert report.resumed_after == 0 and report.items == 40  # read again from the start
    assert (report.replaced, report.unchanged, report.documents, enc.computed) == (1, 38, 2, 2)
    state = _state(simdex.load(path))
    assert state["d10"][0] == "note 10 was edited in place" and "d40" in state
    assert "d20" in state  # a document gone from the source stays: ingest adds and replaces, it never deletes
    assert len(state) == 41

    enc.computed = 0
    quiet = simdex.ingest(corpus, path, encoder=enc)  # and now it is unchanged again
    assert (quiet.resumed_after, enc.computed) == (40, 0)


def test_keyless_lines_of_an_edited_text_file_are_stored_again(tmp_path):
    lines, path = tmp_path / "notes.txt", tmp_path / "n.simdex"
    lines.write_text("first line\nsecond line\nthird line\n")
    simdex.ingest(lines, path, encoder=_standin())
    lines.write_text("first line\nsecond line, edited\nthird line\n")
    report = simdex.ingest(lines, path, encoder=_standin())
    assert (report.resumed_after, report.documents) == (0, 3)
    index = simdex.load(path)
    _state(index)  # the checks
    texts = sorted(doc.text for _, doc in docstore(index).get(index.ids()).values())
    assert texts == ["first line", "second line, edited", "third line"]


def test_upserts_into_an_index_in_memory_and_repeats_within_a_run_stay_duplicates(tmp_path):
    index = simdex.Index(_standin().dim)
    enc = _standin()
    simdex.ingest([("a", "alpha text"), ("b", "beta text")], index, encoder=enc)
    report = simdex.ingest([("a", "alpha changed"), ("a", "alpha again"), ("b", "beta text")], index, encoder=enc)
    assert (report.replaced, report.unchanged, report.skipped_duplicate) == (1, 1, 1)
    assert {k: v[0] for k, v in _state(index).items()} == {"a": "alpha changed", "b": "beta text"}
    assert "1 replaced, 1 unchanged" in str(report)


def test_a_lost_store_commit_after_a_replacing_save_leaves_index_and_store_in_agreement(tmp_path, monkeypatch):
    path = tmp_path / "c.simdex"
    enc = _standin()
    old = [(f"d{i}", f"old note {i}") for i in range(10_000)]
    simdex.ingest(old, path, encoder=enc)
    new = [(f"d{i}", f"new note {i}" if i % 2 else f"old note {i}") for i in range(10_000)]
    real_commit = die_at_commit(monkeypatch, 2)  # the second save: index file written, store commit lost
    with pytest.raises(SimulatedCrash):
        simdex.ingest(new, path, encoder=enc, source_name="v2", checkpoint_every=1)
    monkeypatch.setattr(DocStore, "commit", real_commit)
    state = _state(simdex.load(path))  # agreement: the documents whose vectors that save replaced are gone
    assert len(state) == 10_000 - 2048  # the odd keys of the second unit of 4,096
    with sqlite3.connect(docs_path(path)) as db:
        progress = json.loads(db.execute("SELECT value FROM state WHERE key = 'progress:v2'").fetchone()[0])
    assert not progress["complete"]
    report = simdex.ingest(new, path, encoder=enc, source_name="v2", checkpoint_every=1)
    assert report.resumed_after == progress["items"] > 0
    assert {k: v[0] for k, v in _state(simdex.load(path)).items()} == dict(new)
