"""simdex.Collection: upsert re-embeds only what changed, delete, get, search with filters, reembed, reopen."""

from __future__ import annotations

import threading
import zlib

import numpy as np
import pytest
import simdex
from simdex.text.collection import Collection
from standin_encoder import HashEncoder


class CountingEncoder(HashEncoder):
    """HashEncoder that counts the texts it embeds (queries apart)."""

    def __init__(self) -> None:
        self.embedded: list = []

    def embed_batch(self, texts, *, batch_size=None, show_progress_bar=None):
        self.embedded += list(texts)
        return super().embed_batch(texts)


class OtherModel(HashEncoder):
    """Another 'model': a different fingerprint and dim, so reembed has something to move to."""

    dim = 12
    fingerprint = {**HashEncoder.fingerprint, "model": "hash-stand-in-12", "dim": 12}

    def embed_query(self, text):
        v = np.random.default_rng(zlib.crc32(text.encode()) + 1).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)


DOCS = [{"id": f"d{i}", "text": f"document number {i} about {'cats' if i % 2 else 'dogs'}",
         "lang": ["en", "de", "fr"][i % 3], "year": 2015 + i % 10} for i in range(30)]


@pytest.fixture
def col(tmp_path):
    c = Collection(tmp_path / "kb", CountingEncoder())
    c.upsert(DOCS)
    c._encoder.embedded.clear()
    yield c
    c.close()


def test_upsert_reembeds_only_changed_documents_and_keeps_ids(col):
    before = dict(zip(col.index.ids().tolist(), col.index.reconstruct(col.index.ids())))
    changed = [dict(d) for d in DOCS]
    changed[3]["text"] = "an edited text"
    changed[7]["lang"] = "it"  # metadata only
    report = col.upsert(changed + [{"id": "new", "text": "a new document"}])
    assert (report.added, report.updated, report.metadata_only, report.unchanged) == (1, 1, 1, 28)
    assert sorted(col._encoder.embedded) == ["a new document", "an edited text"]
    after = set(col.index.ids().tolist())
    assert len(after) == 31 and len(after & set(before)) == 29  # only d3's chunk was replaced
    assert col.get(["d3", "d7", "new", "nope"])[0].text == "an edited text"
    assert col.get(["d7"])[0].metadata["lang"] == "it"
    assert col.get(["nope"]) == [None]
    hit = col.search("an edited text", 1, mode="dense")[0]
    assert hit.doc_id == "d3" and hit.score == pytest.approx(1.0, abs=1e-5)
    assert col.check() == dict.fromkeys(col.check(), 0)


def test_changed_document_keeps_ids_of_unchanged_chunks(tmp_path):
    class Chunking(CountingEncoder):
        def token_spans(self, texts, chunk_tokens, overlap):  # one chunk per line
            out = []
            for t in texts:
                spans, start = [], 0
                for line in t.split("\n"):
                    spans.append((start, start + len(line)))
                    start += len(line) + 1
                out.append(spans)
            return out

    c = Collection(tmp_path / "c", Chunking(), chunk_tokens=16)
    c.upsert([("k", "alpha\nbeta\ngamma")])
    ids = c.index.ids().tolist()
    c._encoder.embedded.clear()
    report = c.upsert([("k", "alpha\nBETA\ngamma")])
    assert (report.embedded, report.kept, report.removed) == (1, 2, 1)
    assert c._encoder.embedded == ["BETA"]
    assert set(c.index.ids().tolist()) == {ids[0], ids[2], max(ids) + 1}
    assert c.check() == dict.fromkeys(c.check(), 0)
    with pytest.raises(ValueError, match="chunk_tokens"):
        Collection(tmp_path / "c", Chunking(), chunk_tokens=8)


def test_delete_removes_vectors_texts_and_keywords(col):
    assert col.delete(["d1", "d2", "missing"]) == 2
    assert col.count() == 28 and len(col.index) == 28
    assert col.delete([]) == 0
    hits = col.search("document number 1 about cats", 30, mode="prefilter")
    assert {"d1", "d2"}.isdisjoint(h.doc_id for h in hits)
    assert col.check() == dict.fromkeys(col.check(), 0)


def test_where_filters_against_python_ground_truth(col):
    col.index_field("year")
    flt = {"lang": {"$in": ["en", "fr"]}, "year": {"$gte": 2018, "$lt": 2022}}
    want = {d["id"] for d in DOCS if d["lang"] in ("en", "fr") and 2018 <= d["year"] < 2022}
    for mode in ("dense", "rrf", "prefilter"):
        got = {h.doc_id for h in col.search("document about dogs", 30, where=flt, mode=mode)}
        assert got <= want and (mode == "prefilter" or got == want), mode
    assert col.search("x", 5, where={"lang": "xx"}).documents == []
    with pytest.raises(TypeError, match=r"\$gte.*expected a str, int"):
        col.search("x", where={"year": {"$gte": [1]}})
    with pytest.raises(TypeError, match="unsafe_sql"):
        col.search("x", where="lang = 'en'")


def test_unsafe_sql_keeps_the_guards(col):
    got = {h.doc_id for h in col.search("document", 30, mode="dense",
                                        unsafe_sql="json_extract(metadata, '$.lang') = 'de'")}
    assert got == {d["id"] for d in DOCS if d["lang"] == "de"}
    with pytest.raises(ValueError, match="one SQL expression"):
        col.search("x", unsafe_sql="1; DELETE FROM documents")


def test_reopen_uses_snapshot_or_rebuilds(tmp_path, col):
    path = col.path
    col.close()
    c = Collection(path, CountingEncoder())
    assert c.count() == 30 and (c.index.metadata.get("collection") or {}).get("seq") == c._store.seq
    c.upsert([("d0", "changed without saving the snapshot")])
    c._store.close()  # as a crash would: no snapshot written
    c._closed = True
    c = Collection(path)  # encoder from the stored fingerprint is made only when needed
    assert c.count() == 30 and len(c.index) == 30 and c.check()["chunks_not_in_index"] == 0
    with pytest.raises(simdex.FingerprintMismatch):
        Collection(path, OtherModel())
    with pytest.raises(ValueError, match="metric"):
        Collection(path, metric="ip")


def test_reembed_moves_to_another_model_and_resumes(col):
    new = OtherModel()
    calls = {"n": 0}
    real = new.embed_batch

    def failing(texts, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("model crashed")
        return real(texts, **kw)

    new.embed_batch = failing
    with pytest.raises(RuntimeError, match="model crashed"):
        col.reembed(new, batch_size=8)
    assert col.index.dim == 8 and col.search("document", 3, mode="dense")  # still the old model
    assert col.reembed(new, batch_size=8) == 22  # resumed: the first 8 were kept
    assert col.index.dim == 12 and col.encoder is new
    hit = col.search(DOCS[5]["text"], 1, mode="dense")[0]
    assert hit.doc_id == "d5" and hit.score == pytest.approx(1.0, abs=1e-5)
    assert col.reembed(new) == 0
    assert col.check() == dict.fromkeys(col.check(), 0)


def test_bad_input_is_refused_before_anything_is_written(col):
    for docs, err, match in [
        ("text", TypeError, "single str"),
        ([{"text": "no id"}], ValueError, r"docs\[0\].*'id'"),
        ([("k", "")], ValueError, "non-empty"),
        ([("k", "t"), ("k", "u")], ValueError, "once per upsert"),
        ([(1.5, "t")], TypeError, "key"),
        ([("k", "t", {"x": object()})], ValueError, "JSON"),
        ([("k", "\ud800")], ValueError, "UTF-8"),
    ]:
        with pytest.raises(err, match=match):
            col.upsert(docs)
    assert col.count() == 30 and col._encoder.embedded == []


def test_in_memory_collection_and_lazy_name():
    assert simdex.Collection is Collection
    c = Collection(None, HashEncoder())
    c.upsert([("a", "hello world"), ("b", "goodbye")])
    assert [h.doc_id for h in c.search("hello world", 1, mode="dense")] == ["a"]
    assert "a" in c and "z" not in c and len(c) == 2


def test_concurrent_searches_see_old_or_new_never_a_mix(tmp_path):
    c = Collection(tmp_path / "c", HashEncoder())
    c.upsert([{"id": f"x{i}", "text": f"version A of document {i}", "v": "A"} for i in range(20)])
    stop, bad = threading.Event(), []

    def searcher():
        while not stop.is_set():
            for hit in c.search("version of document", 20, mode="rrf"):
                doc = hit.document
                if doc is None or doc.text.split()[1] != doc.metadata["v"] or doc.chunk != doc.text:
                    bad.append(doc)

    threads = [threading.Thread(target=searcher) for _ in range(2)]
    for t in threads:
        t.start()
    for n in range(30):
        v = "AB"[n % 2]
        c.upsert([{"id": f"x{i}", "text": f"version {v} of document {i} " + "x" * (n % 5), "v": v}
                  for i in range(20)])
    stop.set()
    for t in threads:
        t.join()
    assert bad == [] and c.check() == dict.fromkeys(c.check(), 0)


def test_ingest_into_a_collection_upserts(tmp_path):
    src = tmp_path / "corpus.jsonl"
    lines = [{"id": f"k{i}", "text": f"text number {i}", "lang": "en"} for i in range(10)]
    src.write_text("\n".join(__import__("json").dumps(r) for r in lines) + "\nnot json\n")
    c = Collection(tmp_path / "c", CountingEncoder())
    report = simdex.ingest(str(src), c)
    assert (report.documents, report.chunks, report.skipped_malformed) == (10, 10, 1)
    lines[4]["text"] = "edited"
    src.write_text("\n".join(__import__("json").dumps(r) for r in lines) + "\n")
    c._encoder.embedded.clear()
    report = simdex.ingest(str(src), c)
    assert c._encoder.embedded == ["edited"] and report.documents == 1 and c.count() == 10
    assert c.get(["k4"])[0].metadata == {"lang": "en", "source": f"{src}:5"}
    plain = simdex.ingest(["first", "second"], c)
    assert plain.documents == 2 and c.count() == 12
    with pytest.raises(ValueError, match="chunk_tokens"):
        simdex.ingest(str(src), c, chunk_tokens=10)


@pytest.mark.filterwarnings("ignore:training 4 partitions")
def test_transform_and_partitions_are_kept_and_refitted_after_reembed(tmp_path):
    docs = [(f"k{i}", f"text {i} " + "word " * (i % 7)) for i in range(64)]
    c = Collection(tmp_path / "c", HashEncoder(), transform=simdex.PCA(4))
    c.upsert(docs)
    fitted = c.index.transform
    assert fitted.is_fitted and fitted.out_dim == 4
    want = [h.doc_id for h in c.search(docs[3][1], 5, mode="dense")]
    c._store.close()  # a crash: no snapshot, the index is rebuilt with the stored (not a refitted) transform
    c._closed = True
    c = Collection(tmp_path / "c", HashEncoder())
    assert np.allclose(c.index.transform.components_, fitted.components_)
    assert [h.doc_id for h in c.search(docs[3][1], 5, mode="dense")] == want
    with pytest.raises(ValueError, match="transform"):
        Collection(tmp_path / "c", HashEncoder(), transform=simdex.PCA(2))
    c.reembed(OtherModel())
    assert c.index.dim == 12 and c.index.transform.in_dim == 12 and c.index.transform.out_dim == 4
    ref = simdex.Index(12, transform=simdex.PCA(4))  # the same fit: the same vectors in chunk-id order
    ref.add(OtherModel().embed_batch([t for _, t in docs]))
    q = OtherModel().embed_query(docs[5][1])
    assert [h.doc_id for h in c.search(docs[5][1], 5, mode="dense")] == [f"k{i}" for i in ref.search(q, 5).ids[0]]
    c.close()
    c = Collection(tmp_path / "c", OtherModel())
    assert c.index.transform.in_dim == 12 and c.check() == dict.fromkeys(c.check(), 0)
    p = Collection(tmp_path / "p", HashEncoder(), partitions=4)
    p.upsert(docs)
    assert p.index.partitions == 4 and p.search(docs[9][1], 1, mode="dense")[0].doc_id == "k9"


def test_searches_keep_working_during_reembed(col):
    stop, errors, seen_dims = threading.Event(), [], set()

    def searcher():
        while not stop.is_set():
            try:
                hit = col.search(DOCS[4]["text"], 1, mode="dense")[0]
                seen_dims.add(col.index.dim)
                if hit.doc_id != "d4":
                    errors.append(hit.doc_id)
            except Exception as e:  # noqa: BLE001 -- any failure is the finding
                errors.append(repr(e))

    t = threading.Thread(target=searcher)
    t.start()
    try:
        assert col.reembed(OtherModel(), batch_size=2) == 30
    finally:
        stop.set()
        t.join()
    assert errors == [] and 12 in {col.index.dim} and seen_dims <= {8, 12}


@pytest.mark.filterwarnings("ignore:this first add calibrates")
@pytest.mark.parametrize("keep", [True, "int8"])
def test_binary_collection_keeps_its_rescoring_tier(tmp_path, keep):
    """A binary collection keeps the tier it was made with (float rows or int8 codes) across reopening and a
    rebuild from stored vectors, and search(rescore=R) ranks by it: the results equal a float32 collection's."""
    docs = [{"id": f"d{i}", "text": f"entry {i} on topic {i % 7} with words {i * 13 % 29}"} for i in range(60)]
    exact = Collection(None, HashEncoder())
    exact.upsert(docs)
    col = Collection(tmp_path / "b", HashEncoder(), dtype="binary", keep_originals=keep)
    col.upsert(docs)
    want = [h.doc_id for h in exact.search("topic 3 words", 5, mode="dense")]
    assert [h.doc_id for h in col.search("topic 3 words", 5, mode="dense", rescore=60)] == want
    col.close()
    for rebuild in (False, True):
        if rebuild:  # the snapshot is gone: the index is rebuilt from the stored vectors
            (tmp_path / "b" / "vectors.simdex").unlink()
        c = Collection(tmp_path / "b", HashEncoder())
        assert c.index.dtype == "binary" and c.index.keep_originals == (keep if keep == "int8" else True)
        got = [h.doc_id for h in c.search("topic 3 words", 5, mode="dense", rescore=60)]
        if keep is True:  # float rows rescore exactly; int8 codes rank within their rounding
            assert got == want
        else:
            assert len(set(got) & set(want)) >= 4
        c.close()


@pytest.mark.filterwarnings("ignore:this first add calibrates")
def test_rrf_mode_takes_rescore():
    docs = [{"id": f"d{i}", "text": f"note {i} on subject {i % 5}"} for i in range(40)]
    col = Collection(None, HashEncoder(), dtype="int8", keep_originals=True)
    col.upsert(docs)
    exact = Collection(None, HashEncoder())
    exact.upsert(docs)
    got = col.search("note on subject 2", 5, mode="rrf", rescore=40)
    want = exact.search("note on subject 2", 5, mode="rrf")
    assert [h.doc_id for h in got] == [h.doc_id for h in want]
