"""`simdex.Collection`: documents you can upsert, delete, filter and search; the object a retrieval application holds.

    >>> col = simdex.Collection("kb", encoder)                       # a folder; None: in memory
    >>> col.upsert([{"id": "a", "text": "fork a process", "lang": "en", "year": 2021}])
    >>> col.search("create a child process", 5, where={"lang": "en", "year": {"$gte": 2020}})
    >>> col.delete(["a"]); col.reembed(new_encoder)

A collection holds an `Index` (the vectors, in memory) and a `DocStore` (documents, chunks, keyword index, metadata
and every chunk's vector, in one SQLite file, ``<path>/collection.sqlite``). Each `upsert` / `delete` batch is one
SQLite transaction over all of them, so a crash (kill -9) at any moment leaves the file as it was before the batch
or after it; the in-memory index follows the commit. ``<path>/vectors.simdex`` is a snapshot of the index, written
by `save` / `close` and used on open only when it matches the file's commit number (else the index is rebuilt
from the stored vectors). Vector ids are chunk ids: never reused, and kept by chunks whose text did not change.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from .._fingerprint import check_fingerprint
from .._index import Index
from .._load import load_vectors
from . import _collection_transform as transforms
from ._docinput import as_keys, parse_doc, source_of
from .consistency import RWLock
from .docstore import DocStore, Document, TextSearchResult
from .persist import COMPANION
from .texts import Texts, search_text

#: Search modes: "dense" (vectors only), "prefilter" (BM25 top-N filters the vector search), "rrf" (reciprocal
#: rank fusion of both). The default is the best measured on the dev set with all-MiniLM-L6-v2
#: (bench/README_collection.md).
MODES = ("dense", "prefilter", "rrf")
DEFAULT_MODE = "rrf"
STORE_FILE, SNAPSHOT_FILE = "collection.sqlite", "vectors.simdex"
_ROWS = 65536  # stored vectors read per step when the index is rebuilt

_VECTORS_SCHEMA = "CREATE TABLE IF NOT EXISTS {table} (id INTEGER PRIMARY KEY, vec BLOB NOT NULL)"


@dataclass
class UpsertReport:
    """What one `Collection.upsert` did: documents added (new keys), updated (text changed: re-chunked and
    re-embedded), metadata_only (same text, new metadata: nothing embedded), unchanged; chunks embedded, and
    chunks kept (same text as before: same id and vector); chunks removed."""

    added: int = 0
    updated: int = 0
    metadata_only: int = 0
    unchanged: int = 0
    embedded: int = 0
    kept: int = 0
    removed: int = 0


class _Texts(Texts):
    """The collection's store as its index's texts companion (what `search_text` reads). The collection saves its
    own files: saving the index snapshot writes no store beside it."""

    def prepare_save(self, index: Index, path: str) -> None:
        return None


class Collection:
    """Documents with keys, their chunks' vectors, a keyword index and metadata filters, kept consistent.

    Args:
        path: a folder (created if missing) holding ``collection.sqlite`` and the ``vectors.simdex`` snapshot;
            None keeps everything in memory.
        encoder: a `simdex.Encoder` (or an object with ``dim``, ``fingerprint``, ``embed_batch`` and
            ``embed_query``). Default: for an existing collection, one for the model that filled it (made when
            first needed); for a new one, the default model.
        metric, dtype, keep_originals, transform, partitions: as for `Index` (new collections only; an existing one
            keeps its own). A transform is fitted on the first upsert's vectors and stored with them; after a
            `reembed` it is fitted again on the new vectors.
        chunk_tokens, overlap: split documents into chunks of this many tokens (the encoder's tokenizer), as
            `simdex.ingest` does; None (the default): one chunk per document.

    Raises:
        FingerprintMismatch: (a ValueError) the encoder is another model than the one that filled the collection.
        ValueError: options that contradict the existing collection's.

    Thread safety: searches run in parallel; `upsert`, `delete` and `reembed` take turns, and each batch becomes
    visible at once (a search sees a document's old state or its new one, never a mix).
    """

    def __init__(self, path: "str | os.PathLike[str] | None" = None, encoder: Any = None, *,
                 metric: Optional[str] = None, dtype: Optional[str] = None,
                 keep_originals: "bool | str | None" = None, transform: Any = None, partitions: Optional[int] = None, chunk_tokens: Optional[int] = None,
                 overlap: int = 0) -> None:
        self.path = None if path is None else os.fspath(path)
        self._closed = False
        if self.path is not None:
            os.makedirs(self.path, exist_ok=True)
        self._store = DocStore(None if self.path is None else os.path.join(self.path, STORE_FILE))
        self._db = self._store._db
        try:
            self._open(encoder, metric, dtype, keep_originals, transform, partitions, chunk_tokens, overlap)
        except BaseException:
            self._store.close()
            raise

    def _open(self, encoder: Any, metric: Optional[str], dtype: Optional[str], keep_originals: "bool | str | None",
              transform: Any, partitions: Optional[int], chunk_tokens: Optional[int], overlap: int) -> None:
        self._db.execute(_VECTORS_SCHEMA.format(table="vectors"))
        self._db.execute(transforms.SCHEMA)
        self._lock, self._writer = RWLock(), threading.RLock()
        self._encoder = encoder
        asked = {"metric": metric, "dtype": dtype, "keep_originals": keep_originals, "partitions": partitions,
                 "chunk_tokens": chunk_tokens, "overlap": overlap or None}
        conf = self._store.get_state("collection")
        if conf is None:
            enc = self._encoder_now()
            conf = {"dim": int(enc.dim), "metric": metric or "cosine", "dtype": dtype or "float32",
                    "keep_originals": keep_originals or False, "chunk_tokens": chunk_tokens, "overlap": overlap or None,
                    "fingerprint": enc.fingerprint, "next_id": 0, "partitions": partitions,
                    "transform": transform is not None}
            extra = {"partitions": partitions} if partitions else {}
            Index(conf["dim"], conf["metric"], conf["dtype"], conf["keep_originals"], transform=transform,
                  **extra)  # checks the options
            if chunk_tokens is not None:
                enc.token_spans(["x"], chunk_tokens, overlap)
            elif overlap:
                raise ValueError(f"overlap: only used with chunk_tokens, got overlap={overlap} and chunk_tokens=None")
            if transform is not None:
                transforms.save(self._db, "template", transform, conf["dim"], conf["metric"])
            self._store.set_state("collection", conf)
            self._store.commit(self._store.seq)
        else:
            if transform is not None:
                raise ValueError("transform: this collection keeps the transform it was made with; open it without "
                                 "transform")
            for name, value in asked.items():
                if value is not None and value != conf.get(name):
                    raise ValueError(f"{name}: this collection was made with {name}={conf.get(name)!r}, got "
                                     f"{value!r} (open it without {name}, or use another path)")
            if encoder is not None:
                check_fingerprint(conf["fingerprint"], encoder.fingerprint, "encoder")
        self._conf = conf
        self._index = self._open_index()

    # -- opening and saving ------------------------------------------------------------------------------
    def _new_index(self, dim: int) -> Index:
        c = self._conf
        extra: dict = {"partitions": c["partitions"]} if c.get("partitions") else {}
        if c.get("transform"):
            source = f"{self._store.path or '<memory>'}: transform"
            fitted = transforms.load(self._db, "fitted", source)
            extra["transform"] = fitted if fitted is not None and fitted.in_dim == dim else \
                transforms.load(self._db, "template", source)
        index = Index(dim, c["metric"], c["dtype"], c["keep_originals"], **extra)
        index._companions[COMPANION] = _Texts(self._store)
        return index

    def _save_transform(self) -> None:
        """Stores the fitted transform (not committed) when it is not stored yet."""
        t = self._index.transform
        if t is not None and t.is_fitted and not self._transform_saved:
            transforms.save(self._db, "fitted", t, self._index.dim, self._index.metric)

    def _open_index(self) -> Index:
        """The snapshot when it is the stored state's, else the index rebuilt from the stored vectors."""
        seq, n = self._store.seq, self._db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]
        self._transform_saved = bool(self._db.execute(
            "SELECT 1 FROM transform_sections WHERE kind = 'fitted'").fetchone())
        snap = None if self.path is None else os.path.join(self.path, SNAPSHOT_FILE)
        if snap is not None and os.path.exists(snap):
            try:
                index = load_vectors(snap)
            except (OSError, ValueError):
                index = None  # a damaged snapshot is only a slower open
            if index is not None and (index.metadata.get("collection") or {}).get("seq") == seq and len(index) == n:
                index._companions[COMPANION] = _Texts(self._store)
                return index
        return self._build_index("vectors", self._conf["dim"], self._conf["fingerprint"])

    def _build_index(self, table: str, dim: int, fingerprint: dict) -> Index:
        index, last = self._new_index(dim), -1
        while True:
            with self._store.lock:
                rows = self._db.execute(f"SELECT id, vec FROM {table} WHERE id > ? ORDER BY id LIMIT ?",
                                        (last, _ROWS)).fetchall()
            if not rows:
                break
            ids = np.fromiter((r[0] for r in rows), np.int64, len(rows))
            index.add(np.frombuffer(b"".join(r[1] for r in rows), np.float32).reshape(len(rows), dim), ids,
                      fingerprint=fingerprint)
            last = int(ids[-1])
        if not len(index):
            index.metadata = {**index.metadata, "fingerprint": fingerprint}
        t = index.transform
        if table == "vectors" and t is not None and t.is_fitted and not self._transform_saved:
            with self._store.lock:  # fitted again here (after a reembed): store it, or the next open fits anew
                transforms.save(self._db, "fitted", t, index.dim, index.metric)
                self._store.commit(self._store.seq)
                self._transform_saved = True
        return index

    def save(self) -> None:
        """Writes the index snapshot (``vectors.simdex``) so the next open need not rebuild it. Not needed for
        durability: every batch is committed when `upsert` / `delete` return."""
        if self.path is None:
            return
        with self._writer:
            index = self._index
            if (index.metadata.get("collection") or {}).get("seq") == self._store.seq:
                return
            index.metadata = {**index.metadata, "collection": {"seq": self._store.seq}}
            index.save(os.path.join(self.path, SNAPSHOT_FILE))

    def close(self) -> None:
        """Saves the snapshot and closes the store (again: nothing)."""
        if self._closed:
            return
        self.save()
        self._store.close()
        self._closed = True

    def __enter__(self) -> "Collection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the encoder ---------------------------------------------------------------------------------------
    def _encoder_now(self) -> Any:
        if self._encoder is None:
            from .encoder import Encoder

            conf = self._store.get_state("collection")
            model = (conf or {}).get("fingerprint", {}).get("model")
            self._encoder = Encoder(model) if model else Encoder()
            if conf is not None:
                check_fingerprint(conf["fingerprint"], self._encoder.fingerprint, "encoder")
        return self._encoder

    @property
    def encoder(self) -> Any:
        """The encoder of the stored vectors (made from the stored fingerprint when none was given)."""
        return self._encoder_now()

    @property
    def index(self) -> Index:
        """The vectors (chunk ids), for reading: change documents through the collection."""
        return self._index

    # -- reading ---------------------------------------------------------------------------------------------
    def count(self, chunks: bool = False) -> int:
        """Documents stored (or, with ``chunks=True``, their chunks: the vectors)."""
        with self._lock.read():
            return self._store.count()[1 if chunks else 0]

    def __len__(self) -> int:
        return self.count()

    def __contains__(self, key: Any) -> bool:
        return bool(self._store.by_key([key])) if isinstance(key, (str, int)) else False

    def keys(self) -> list:
        """The keys of all stored documents."""
        with self._lock.read():
            return self._store.keys()

    def get(self, keys: Iterable[Any]) -> list:
        """The stored `Document` of each key, in order (None for a key not stored); ``span`` is the whole text."""
        keys = as_keys(keys)
        with self._lock.read():
            found = self._store.by_key(keys)
        out: list[Optional[Document]] = []
        for key in keys:
            if key not in found:
                out.append(None)
                continue
            _, text, source, meta, _ = found[key]
            out.append(Document(key, text, source, json.loads(meta) if meta else {}, (0, len(text))))
        return out

    def search(self, query: str, k: int = 10, *, where: Optional[dict] = None, keywords: Optional[str] = None,
               mode: str = DEFAULT_MODE, chunks: bool = False, min_score: Optional[float] = None,
               rrf_k: Optional[float] = None, keyword_limit: int = 200, unsafe_sql: Optional[str] = None,
               where_timeout: Optional[float] = None, rescore: Optional[int] = None) -> TextSearchResult:
        """The k best documents (or chunks) for a query, with their texts.

        Args:
            query: the query text.
            k: results wanted (fewer when fewer qualify).
            where: a metadata filter (`simdex.text.filters`): ``{"lang": "en", "year": {"$gte": 2020}}``. Its
                matches become the allow-list of the vector scan (and of the BM25 ranking).
            keywords: the words BM25 ranks (modes "prefilter" and "rrf"); default: the query's own words.
            mode: "rrf" (default: reciprocal rank fusion of the vector and BM25 rankings; scores then only order
                the results), "dense" (the vector search alone; scores are similarities) or "prefilter" (the
                vector search ranks only the ``keyword_limit`` best BM25 matches).
            chunks, min_score, rrf_k, keyword_limit, where_timeout, rescore: as for `simdex.text.search_text`
                (rescore: a collection made with dtype "int8" or "binary" and keep_originals).
            unsafe_sql: a raw SQL condition on ``source``, ``doc`` and ``metadata`` (JSON): never from user input.

        Raises:
            TypeError, ValueError (FilterError for a bad ``where``): bad arguments.
        """
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(map(repr, MODES))}, got {mode!r}")
        if not isinstance(query, str):
            raise TypeError(f"query: expected str, got {type(query).__name__}")
        if mode == "dense":
            if keywords is not None:
                raise ValueError("keywords: not with mode='dense' (use mode='prefilter' or 'rrf')")
            mode = "prefilter"
        elif mode == "prefilter" and keywords is None:
            keywords = query
        if where is not None and not isinstance(where, dict):
            raise TypeError(f"where: expected a filter dict such as {{'lang': 'en'}}, got {type(where).__name__} "
                            "(raw SQL goes in unsafe_sql=)")
        with self._lock.read():  # the encoder and the index change together (reembed)
            encoder = self._encoder_now()
            return search_text(self._index, query, k, encoder=encoder, chunks=chunks, min_score=min_score,
                               keywords=keywords, keyword_limit=keyword_limit, where=where, unsafe_sql=unsafe_sql,
                               where_timeout=where_timeout, mode=mode, rrf_k=rrf_k, rescore=rescore)

    def index_field(self, field: str) -> None:
        """Creates an index on a metadata field's value (an SQLite expression index), so filters on it read only
        the matching documents; worth it for fields filtered often and selectively."""
        from .filters import index_sql

        _, sql = index_sql(field)
        with self._writer, self._store.lock:
            self._db.commit()
            self._db.execute(sql)

    # -- writing ---------------------------------------------------------------------------------------------
    def upsert(self, docs: Iterable[Any], *, batch_size: Optional[int] = None) -> UpsertReport:
        """Adds documents, or replaces the stored ones with the same keys; one transaction for the whole batch.

        Args:
            docs: dicts ``{"id": key, "text": str, **metadata}`` (or ``{"id", "text", "metadata": {...}}``), or
                tuples ``(key, text)`` / ``(key, text, metadata)``. Keys are str or int, once each per call.
            batch_size: texts per model call.

        Only documents whose text changed are re-chunked and re-embedded; within them, a chunk whose text is one
        of the document's old chunks keeps that chunk's id and vector. A document whose metadata alone changed
        is updated without embedding anything.

        Raises:
            TypeError, ValueError: a malformed item (named by its position); nothing is written.
        """
        if isinstance(docs, (str, bytes, dict)):
            raise TypeError(f"docs: expected a list of documents, got a single {type(docs).__name__}")
        parsed = [parse_doc(d, i) for i, d in enumerate(docs)]
        seen: dict = {}
        for i, (key, _, _, _) in enumerate(parsed):
            if key in seen:
                raise ValueError(f"docs[{i}]: key {key!r} also at docs[{seen[key]}]; give each key once per upsert")
            seen[key] = i
        report = UpsertReport()
        if not parsed:
            return report
        with self._writer:
            return self._upsert(parsed, report, batch_size)

    def _spans(self, texts: list) -> list:
        tokens = self._conf.get("chunk_tokens")
        if tokens is None:
            return [[(0, len(t))] for t in texts]
        return self._encoder_now().token_spans(texts, tokens, self._conf.get("overlap") or 0)

    def _upsert(self, parsed: list, report: UpsertReport, batch_size: Optional[int]) -> UpsertReport:
        stored = self._store.by_key([p[0] for p in parsed])
        write: list = []
        meta_only: list = []
        gone_rows: list = []
        gone_ids: list = []
        for key, text, meta, encoded in parsed:
            old = stored.get(key)
            if old is None:
                write.append((key, text, meta, {}))
                report.added += 1
            elif old[1] == text:  # same text: the vectors stand
                if old[3] != encoded and (json.loads(old[3]) if old[3] else {}) != meta:
                    meta_only.append((old[0], source_of(meta), meta))
                    report.metadata_only += 1
                else:
                    report.unchanged += 1
            else:
                reusable: dict = {}  # old chunk text -> its ids (a text may repeat in a document)
                for cid, s, e in old[4]:
                    reusable.setdefault(old[1][s:e], []).append(cid)
                write.append((key, text, meta, reusable))
                gone_rows.append(old[0])
                gone_ids += [c[0] for c in old[4]]
                report.updated += 1
        chunks, embed_texts, embed_ids, kept = [], [], [], set()
        next_id = int(self._conf["next_id"])
        for pos, ((key, text, meta, reusable), spans) in enumerate(zip(write, self._spans([w[1] for w in write]))):
            for s, e in spans:
                same = reusable.get(text[s:e])
                if same:
                    cid = same.pop(0)
                    kept.add(cid)
                else:
                    cid, next_id = next_id, next_id + 1
                    embed_texts.append(text[s:e])
                    embed_ids.append(cid)
                chunks.append((cid, pos, s, e))
        enc = self._encoder_now()
        vectors = (np.asarray(enc.embed_batch(embed_texts, batch_size=batch_size), np.float32) if embed_texts
                   else np.empty((0, self._conf["dim"]), np.float32))
        if vectors.shape != (len(embed_texts), self._conf["dim"]):
            raise ValueError(f"encoder: returned shape {vectors.shape} for {len(embed_texts)} texts, expected "
                             f"({len(embed_texts)}, {self._conf['dim']})")
        if not write and not meta_only:
            return report  # nothing changed: no transaction
        dropped = [c for c in gone_ids if c not in kept]
        report.embedded, report.kept, report.removed = len(embed_ids), len(kept), len(dropped)
        self._commit(gone_rows, dropped, [(k, t, source_of(m), m) for k, t, m, _ in write], chunks, meta_only,
                     embed_ids, vectors, next_id)
        return report

    def delete(self, keys: Iterable[Any]) -> int:
        """Removes the documents with these keys (absent keys are ignored); returns how many were removed."""
        keys = as_keys(keys)
        with self._writer:
            stored = self._store.by_key(keys)
            if not stored:
                return 0
            ids = [c[0] for v in stored.values() for c in v[4]]
            self._commit([v[0] for v in stored.values()], ids, [], [], [], [], None, int(self._conf["next_id"]))
            return len(stored)

    def _commit(self, gone_rows: list, dropped: list, docs: list, chunks: list, meta_only: list, new_ids: list,
                vectors: Optional[np.ndarray], next_id: int) -> None:
        """One transaction: documents, chunks (and through triggers the keyword index), metadata, vectors and the
        next id; then the in-memory index, while no search runs."""
        store, db = self._store, self._db
        t = self._index.transform
        with self._lock.write(), store.lock:
            if t is not None and not t.is_fitted and new_ids and vectors is not None:
                self._index.train(vectors)  # as the first add would: fitted now, so it is stored with these vectors
            try:
                self._save_transform()
                store.remove_documents(gone_rows)
                _delete_ids(db, "vectors", dropped)
                if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'vectors_next'").fetchone():
                    _delete_ids(db, "vectors_next", dropped)
                store.add(docs, chunks)
                if new_ids and vectors is not None:
                    db.executemany("INSERT INTO vectors (id, vec) VALUES (?, ?)",
                                   zip(new_ids, (v.tobytes() for v in vectors)))
                store.set_metadata(meta_only)
                conf = {**self._conf, "next_id": next_id}
                store.set_state("collection", conf)
                store.commit(store.seq + 1)
            except BaseException:
                store.rollback()
                raise
            self._conf = conf
            self._transform_saved = self._transform_saved or (t is not None and t.is_fitted)
            try:
                if dropped:
                    self._index.remove(np.asarray(dropped, np.int64))
                if new_ids and vectors is not None:
                    self._index.add(vectors, np.asarray(new_ids, np.int64), fingerprint=self._conf["fingerprint"])
            except BaseException:  # the file is right; make the memory agree with it
                self._index = self._build_index("vectors", self._conf["dim"], self._conf["fingerprint"])
                raise

    # -- consistency -------------------------------------------------------------------------------------------
    def check(self) -> dict:
        """Counts of inconsistencies, all 0 in a sound collection: see `simdex.text.consistency.check`."""
        from .consistency import check

        return check(self)

    def reembed(self, encoder: Any, *, batch_size: int = 256) -> int:
        """Moves the collection to another model: see `simdex.text.reembed.reembed`; returns the chunks embedded
        by this call."""
        from .reembed import reembed

        return reembed(self, encoder, batch_size=batch_size)

    def __repr__(self) -> str:
        return (f"Collection({self.path!r}, documents={self.count()}, chunks={len(self._index)}, "
                f"model={self._conf['fingerprint'].get('model')!r})")


def _delete_ids(db: Any, table: str, ids: list) -> None:
    for s in range(0, len(ids), 500):
        part = [int(i) for i in ids[s:s + 500]]
        db.execute(f"DELETE FROM {table} WHERE id IN ({','.join('?' * len(part))})", part)


__all__ = ["Collection", "UpsertReport", "MODES", "DEFAULT_MODE"]
