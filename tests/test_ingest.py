"""simdex.ingest: sources, chunks -> documents, bad texts, the document store with save/load, crash and resume,
bounded memory."""

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import simdex
from simdex.text.docstore import DocStore
from simdex.text.persist import docs_path
from simdex.text.texts import docstore
from simdex.text.encoder import PREFETCH, WINDOW_BATCHES
from simdex.text.ingest import _open_source

TESTS = Path(__file__).resolve().parent


class SimulatedCrash(BaseException):
    """Stands for the process dying at that point."""


def _parsed(source, **fields):
    _, raw, parse, _ = _open_source(source, fields.get("text_field", "text"), fields.get("id_field", "id"))
    return [parse(item) for item in raw]


# -- sources (no model needed) -----------------------------------------------------------------------------------
def test_sources_jsonl_text_folder_and_iterables(tmp_path):
    jsonl = tmp_path / "c.jsonl"
    jsonl.write_bytes(b'{"doc": "a1", "body": "first", "lang": "en"}\n\n[1]\n{"doc": "a2", "body": 5}\n'
                      b'{"doc": "a3", "body": "caf\xc3\xa9", "source": "s.html"}\n{"doc": "a4", "body": "\xff"}\n{bad\n')
    assert _parsed(jsonl, text_field="body", id_field="doc") == [
        ("a1", "first", f"{jsonl}:1", {"lang": "en"}), "empty", "malformed", "malformed",
        ("a3", "café", "s.html", {}), "invalid_utf8", "malformed"]
    gz = tmp_path / "c.jsonl.gz"
    gz.write_bytes(gzip.compress(b'{"id": 7, "text": "seven"}\n'))
    assert _parsed(gz) == [(7, "seven", f"{gz}:1", {})]

    lines = tmp_path / "lines.txt"
    lines.write_bytes(b"one\r\ntwo \xfe\nthree")
    assert _parsed(lines) == [(None, "one", f"{lines}:1", None), "invalid_utf8", (None, "three", f"{lines}:3", None)]

    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.md").write_text("# B")
    (folder / "sub" / "a.txt").write_text("A")
    (folder / "skip.json").write_text("{}")
    assert [p[:2] for p in _parsed(folder)] == [("b.md", "# B"), ("sub/a.txt", "A")]

    items = ["plain", ("k1", "pair"), (2, b"bytes"), b"\xc3", {"id": "k3", "text": "rec"}, 3.5, ("a", "b", "c")]
    assert _parsed(items) == [(None, "plain", None, None), ("k1", "pair", None, None), (2, "bytes", None, None),
                              "invalid_utf8", ("k3", "rec", None, {}), "malformed", "malformed"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _open_source(tmp_path / "missing.jsonl", "text", "id")
    with pytest.raises(TypeError, match="iterable"):
        _open_source(42, "text", "id")


# -- the document store and Index.save / load (no model needed) --------------------------------------------------
def test_save_load_keeps_documents_and_undoes_a_save_whose_commit_was_lost(tmp_path):
    index = simdex.Index(4)
    index.add(np.eye(4, dtype=np.float32)[:2], [0, 1])
    docstore(index).add([("d0", "zero", None, None), ("d1", "one", "src", {"m": 1})], [(0, 0, 0, 4), (1, 1, 0, 3)])
    path = tmp_path / "i.simdex"
    index.save(path)  # "save as" from memory
    loaded = simdex.load(path)
    got = docstore(loaded).get([0, 1])
    assert got[1][1] == simdex.Document("d1", "one", "src", {"m": 1}, (0, 3))

    # a save whose store commit never happened (a crash between the two writes): load removes its ids again
    loaded.add(np.eye(4, dtype=np.float32)[2:], [2, 3])
    docstore(loaded).add([("d2", "two", None, None), ("d3", "three", None, None)], [(2, 0, 0, 3), (3, 1, 0, 5)])
    docstore(loaded).commit = lambda seq: None
    loaded.save(path)
    docstore(loaded)._db.rollback()
    again = simdex.load(path)
    assert sorted(again.ids().tolist()) == [0, 1] and docstore(again).count() == (2, 2)

    # an index saved without texts over one that had them drops the stale store
    simdex.Index(4).save(path)
    assert not os.path.exists(docs_path(path))


def test_ingest_into_a_path_without_its_index_file_is_refused(tmp_path):
    path = tmp_path / "lost.simdex"
    store = DocStore(docs_path(path))
    store.commit(3)
    store.close()
    with pytest.raises(ValueError, match="index file .* is missing"):
        simdex.ingest(["a"], path, encoder=_standin())


def _standin():
    sys.path.insert(0, str(TESTS))
    from standin_encoder import TinyStandInEncoder

    return TinyStandInEncoder()


# -- with the model -----------------------------------------------------------------------------------------------
@pytest.mark.encoder
def test_ingest_jsonl_then_search_text_returns_documents(minilm, tmp_path):
    corpus = tmp_path / "c.jsonl"
    docs = {"fork": "The fork system call creates a new child process by duplicating the calling process.",
            "mail": "Use the smtplib module to send mail from a Python script.",
            "sort": "The sorted function returns a new sorted list from the items in an iterable."}
    corpus.write_text("".join(json.dumps({"id": k, "text": v, "kind": "doc"}) + "\n" for k, v in docs.items()))
    path = tmp_path / "c.simdex"
    report = simdex.ingest(corpus, path, encoder=minilm)
    assert (report.documents, report.chunks, report.skipped) == (3, 3, 0)
    index = simdex.load(path)
    assert index.fingerprint == minilm.fingerprint
    hit = index.search_text("how to send an email with python", k=2, encoder=minilm)
    assert hit.documents[0].id == "mail" and hit.documents[0].text == docs["mail"]
    assert hit.documents[0].metadata == {"kind": "doc"} and hit.documents[0].source == f"{corpus}:2"
    assert hit.ids.dtype == np.int64 and hit.scores.dtype == np.float32 and len(hit.ids) == 2
    np.testing.assert_allclose(hit.scores[0], minilm.embed_query("how to send an email with python")
                               @ minilm.embed_query(docs["mail"]), atol=1e-5)
    again = simdex.ingest(corpus, path, encoder=minilm)  # the same source again: nothing new
    assert (again.documents, again.resumed_after, len(simdex.load(path))) == (3, 3, 3)


@pytest.mark.encoder
def test_chunks_map_to_their_documents(minilm):
    long_doc = " ".join(f"Sentence {i} talks about topic {i % 5} in some detail." for i in range(40))
    index = simdex.Index(384)
    report = simdex.ingest([("long", long_doc), ("short", "A short note about kernel modules.")], index,
                           encoder=minilm, chunk_tokens=48, overlap=8)
    assert report.documents == 2 and report.chunks == len(index) > 3 and report.truncated_tokens == 0
    stored = docstore(index).get(index.ids())
    spans = sorted(doc.span for _, doc in stored.values() if doc.id == "long")
    assert len(spans) == report.chunks - 1 and spans[0][0] == 0 and spans[-1][1] == len(long_doc)
    assert all(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # overlapping neighbours
    for cid, (_, doc) in stored.items():  # each vector is the embedding of its chunk
        np.testing.assert_allclose(index.reconstruct(cid)[0], minilm.embed_query(doc.chunk), atol=1e-4)

    target = [doc for _, doc in stored.values() if doc.id == "long"][3]
    best = index.search_text(target.chunk, k=3, encoder=minilm, chunks=True)
    assert best.documents[0].span == target.span and best.documents[0].id == "long"
    assert [d.id for d in best.documents].count("long") >= 2  # chunks mode: several chunks of one document
    per_doc = index.search_text(target.chunk, k=3, encoder=minilm)
    assert [d.id for d in per_doc.documents] == ["long", "short"]  # one result per document, best chunk first
    assert per_doc.documents[0].span == target.span


@pytest.mark.encoder
def test_bad_texts_are_skipped_counted_and_never_stop_the_run(minilm, tmp_path):
    source = ["good one", "", "   \n", b"\xff\xfeinvalid", "lone \udc80 surrogate", 12, ("k", "keyed text"),
              ("k", "same id again"), "ab " * 2000, "good two"]
    report = simdex.ingest(source, tmp_path / "b.simdex", encoder=minilm, max_chars=1000)
    assert (report.skipped_empty, report.skipped_invalid_utf8, report.skipped_malformed,
            report.skipped_duplicate) == (2, 2, 1, 1)
    assert (report.documents, report.truncated_chars, report.items) == (4, 1, 10)
    assert report.truncated_tokens == 1  # 1000 characters of "ab ab ..." are more than 256 tokens
    assert "skipped 6" in str(report)
    index = simdex.load(tmp_path / "b.simdex")
    texts = sorted(doc.text for _, doc in docstore(index).get(index.ids()).values())
    assert texts == [("ab " * 2000)[:1000], "good one", "good two", "keyed text"]


@pytest.mark.encoder
def test_add_texts_keeps_texts_through_save_and_load(minilm, tmp_path):
    index = simdex.Index(384)
    ids = index.add_texts(["the cat sat on the mat", "stock markets fell sharply"], ids=[10, 20], encoder=minilm)
    assert ids.tolist() == [10, 20]
    with pytest.raises(ValueError, match=r"texts\[1\]: expected a non-empty text"):
        index.add_texts(["fine", " "], encoder=minilm)
    with pytest.raises(ValueError, match="not valid UTF-8"):
        index.add_texts(["bad \ud800"], encoder=minilm)
    assert len(index) == 2
    index.save(tmp_path / "t.simdex")
    loaded = simdex.load(tmp_path / "t.simdex")
    hit = loaded.search_text("a kitten on a rug", k=5, encoder=minilm)
    assert hit.ids.tolist()[0] == 10 and hit.documents[0].text == "the cat sat on the mat" and len(hit.ids) == 2
    loaded.add_texts(["a third text"], encoder=minilm)
    loaded.save(tmp_path / "t.simdex")
    assert docstore(simdex.load(tmp_path / "t.simdex")).count() == (3, 3)


@pytest.mark.encoder
def test_ingest_into_an_index_of_another_model_is_refused(minilm, tmp_path):
    path = tmp_path / "x.simdex"
    simdex.ingest(["alpha", "beta"], path, encoder=_standin())
    with pytest.raises(simdex.FingerprintMismatch, match="tiny-stand-in"):
        simdex.ingest(["gamma"], path, encoder=minilm, source_name="second")
    assert len(simdex.load(path)) == 2


def _check_complete(index, texts, encoder):
    """Every text stored exactly once, each with one vector, and that vector is the text's embedding."""
    stored = docstore(index).get(index.ids())
    assert len(stored) == len(index) == len(texts)
    keys = sorted(doc.id for _, doc in stored.values())
    assert keys == sorted(k for k, _ in texts)
    sample = sorted(stored)[:: max(1, len(stored) // 20)]
    got = index.reconstruct(sample)
    want = encoder.compute(encoder.prepare([stored[c][1].text for c in sample]))
    np.testing.assert_allclose(got, want, atol=1e-4)


def die_at_commit(monkeypatch, n):
    """Makes the n-th store commit "die": the index file of that save is written, the store never commits.
    Returns the real DocStore.commit, to put back."""
    real_commit, calls = DocStore.commit, []

    def dying_commit(self, seq):
        calls.append(seq)
        if len(calls) == n:
            self._db.rollback()
            self._db.close()
            raise SimulatedCrash
        real_commit(self, seq)

    monkeypatch.setattr(DocStore, "commit", dying_commit)
    return real_commit


def test_crash_between_index_save_and_store_commit_resumes_exactly(tmp_path, monkeypatch):
    texts = [(f"d{i}", f"note {i} on subject {i % 9}") for i in range(20_000)]
    standin = _standin()  # units of 256 * WINDOW_BATCHES texts
    path = tmp_path / "c.simdex"
    real_commit = die_at_commit(monkeypatch, 3)
    with pytest.raises(SimulatedCrash):
        simdex.ingest(texts, path, encoder=standin, checkpoint_every=1)
    monkeypatch.setattr(DocStore, "commit", real_commit)
    with sqlite3.connect(docs_path(path)) as db:
        done = json.loads(db.execute("SELECT value FROM state WHERE key = 'progress:iterable'").fetchone()[0])
    assert simdex.load(path).metadata["docstore"]["seq"] == 3 and len(simdex.load(path)) == done["chunks"]
    report = simdex.ingest(texts, path, encoder=standin, checkpoint_every=1)
    assert report.resumed_after == done["items"] > 0 and report.documents == 20_000 and report.skipped == 0
    _check_complete(simdex.load(path), texts, standin)


@pytest.mark.encoder
def test_resume_after_kill_9(minilm, tmp_path):
    n = 200
    path = tmp_path / "k.simdex"
    script = textwrap.dedent(f"""
        import simdex
        texts = [(f"d{{i}}", f"item {{i}}: a short line about subject {{i % 13}}") for i in range({n})]
        simdex.ingest(texts, {str(path)!r}, encoder=simdex.Encoder(device="cpu"), batch_size=4, checkpoint_every=1)
    """)
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "HF_HUB_OFFLINE": "1"})
    done = 0
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and child.poll() is None and not done:  # until a checkpoint is in
            time.sleep(0.05)
            if os.path.exists(docs_path(path)):
                try:
                    with sqlite3.connect(f"file:{docs_path(path)}?mode=ro", uri=True, timeout=1) as db:
                        row = db.execute("SELECT value FROM state WHERE key = 'progress:iterable'").fetchone()
                    done = json.loads(row[0])["items"] if row else 0
                except sqlite3.OperationalError:
                    pass
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert child.returncode == -signal.SIGKILL, "the ingest ended before it could be killed"
    assert 0 < done < n
    texts = [(f"d{i}", f"item {i}: a short line about subject {i % 13}") for i in range(n)]
    report = simdex.ingest(texts, path, encoder=minilm, batch_size=4, checkpoint_every=1)
    assert report.resumed_after >= done and report.documents == n and report.skipped_duplicate == 0
    _check_complete(simdex.load(path), texts, minilm)


# -- bounded memory (a stand-in minilm: the model would take an hour for 200K texts on a CPU) ---------------------
@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads peak RSS from /proc (Linux)")
def test_bounded_memory_over_200k_texts(tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(TESTS)!r})
        import simdex
        from standin_encoder import TinyStandInEncoder
        enc, read = TinyStandInEncoder(dim=384), [0]  # the real model's width
        def texts():
            for i in range(200_000):
                read[0] += 1
                yield f"short text number {{i}} about {{i % 101}}"
        ahead = []
        compute = enc.compute
        def watched(prepared):
            ahead.append(read[0] - enc.computed)
            return compute(prepared)
        enc.compute = watched
        def status(field):  # VmRSS now, VmHWM peak; ru_maxrss would count the forking parent's pages
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
        before = status("VmRSS:")
        report = simdex.ingest(texts(), {str(tmp_path / "m.simdex")!r}, encoder=enc, checkpoint_every=100)
        peak = status("VmHWM:")
        print(json.dumps({{"growth": peak - before, "index": report.index.memory_usage(), "ahead": max(ahead),
                          "documents": report.documents}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], check=False, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["documents"] == 200_000
    window = 256 * WINDOW_BATCHES
    assert got["ahead"] <= (PREFETCH + 3) * window  # a few windows in flight, not the corpus
    rows = 200_000 * 384 * 4  # the vectors alone; memory_usage() also counts reserved, untouched capacity
    assert got["growth"] <= rows + 300 * 2**20, got
