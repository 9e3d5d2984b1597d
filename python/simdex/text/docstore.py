"""The document store: texts, sources, metadata and the chunk -> document mapping, in SQLite beside the index file.

A vector id is a chunk id. A document has one chunk per vector (one when texts are not chunked). The store never
commits on its own: `Index.save` writes the index file, then commits the store (through the texts' companion,
`simdex.text.texts.Texts`; one transaction per save, holding the ingest progress too). A crash between the two
leaves the index one save ahead; the index metadata names the ids of that save (``metadata["docstore"]["pending"]``)
and loading removes them again, so the two always agree. The file's name: `simdex.text.persist.docs_path`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    id INTEGER PRIMARY KEY, key TEXT UNIQUE, text TEXT NOT NULL, source TEXT, metadata TEXT);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY, doc INTEGER NOT NULL, start_char INTEGER NOT NULL, end_char INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS chunks_doc ON chunks (doc);
CREATE TABLE IF NOT EXISTS state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
# The keyword index: an external-content FTS5 table over each chunk's text (a view: the text is a slice of its
# document's), kept in step by triggers, so every write to chunks updates it in the same transaction.
# `simdex.text.hybrid.KeywordIndex.from_store` searches it. The 'delete' rows need the text as it was indexed:
# documents are only ever inserted, never changed, while chunks point at them.
_FTS_SCHEMA = """
CREATE VIEW IF NOT EXISTS chunk_texts AS
    SELECT c.id AS id, substr(d.text, c.start_char + 1, c.end_char - c.start_char) AS text
    FROM chunks c JOIN documents d ON d.id = c.doc;
CREATE VIRTUAL TABLE IF NOT EXISTS chunks_fts USING fts5(
    text, content='chunk_texts', content_rowid='id', tokenize='unicode61');
CREATE TRIGGER IF NOT EXISTS chunks_fts_insert AFTER INSERT ON chunks BEGIN
    INSERT INTO chunks_fts (rowid, text) SELECT new.id, substr(d.text, new.start_char + 1,
        new.end_char - new.start_char) FROM documents d WHERE d.id = new.doc;
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_delete AFTER DELETE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) SELECT 'delete', old.id, substr(d.text, old.start_char + 1,
        old.end_char - old.start_char) FROM documents d WHERE d.id = old.doc;
END;
CREATE TRIGGER IF NOT EXISTS chunks_fts_update AFTER UPDATE ON chunks BEGIN
    INSERT INTO chunks_fts (chunks_fts, rowid, text) SELECT 'delete', old.id, substr(d.text, old.start_char + 1,
        old.end_char - old.start_char) FROM documents d WHERE d.id = old.doc;
    INSERT INTO chunks_fts (rowid, text) SELECT new.id, substr(d.text, new.start_char + 1,
        new.end_char - new.start_char) FROM documents d WHERE d.id = new.doc;
END;
"""
_WHERE_VIEW = """CREATE TEMP VIEW IF NOT EXISTS docs AS
    SELECT c.id AS id, d.key AS doc, d.source AS source, d.metadata AS metadata
    FROM chunks c JOIN documents d ON d.id = c.doc"""
#: `PRAGMA user_version` of a store file with the keyword index (0: a file from before it, migrated on open).
SCHEMA_VERSION = 1
_IN_CHUNK = 500  # ids per "IN (...)" query, below SQLite's parameter limit


@dataclass(frozen=True)
class Document:
    """A stored document and the chunk of it that a vector stands for.

    Attributes:
        id: the document's id from its source (a JSONL id field, an (id, text) pair, a file's relative path), or
            None when the source gave none.
        text: the whole document text.
        source: where it came from (``"path:line"``, a file path), or None.
        metadata: the other fields of its JSONL record or dict.
        span: (start, end) character offsets of the chunk within `text`.
    """

    id: Any
    text: str
    source: str | None
    metadata: dict = field(default_factory=dict)
    span: tuple = (0, 0)

    @property
    def chunk(self) -> str:
        """The text of the chunk the vector was computed from."""
        return self.text[self.span[0]:self.span[1]]


@dataclass(frozen=True)
class Hit:
    """One `Index.search_text` result: the vector (chunk) `id`, its `score` and its `document` (None for a vector
    stored without text)."""

    id: int
    score: float
    document: Document | None

    @property
    def doc_id(self) -> Any:
        """The document's id from its source, or None."""
        return None if self.document is None else self.document.id

    @property
    def text(self) -> str | None:
        """The document's text, or None."""
        return None if self.document is None else self.document.text

    @property
    def chunk(self) -> str | None:
        """The text of the matching chunk, or None."""
        return None if self.document is None else self.document.chunk


@dataclass(frozen=True)
class TextSearchResult:
    """`Index.search_text` output, best first: vector (chunk) `ids` int64, `scores` float32, and `documents` (a
    `Document` per result, None for a vector stored without text). Iterating gives a `Hit` per result."""

    ids: np.ndarray
    scores: np.ndarray
    documents: list

    def __len__(self) -> int:
        return len(self.documents)

    def __getitem__(self, i: int) -> Hit:
        return Hit(int(self.ids[i]), float(self.scores[i]), self.documents[i])

    def __iter__(self) -> Iterator[Hit]:
        return (self[i] for i in range(len(self)))


class DocStore:
    """SQLite tables for documents and chunks, and their keyword index; ``path=None`` keeps them in memory.

    Attributes:
        has_fts: whether the store keeps its keyword index (``chunks_fts``). Always, except for a store file from
            before it that could not be migrated because it is read-only (`simdex.text.texts.keyword_index` then
            builds one in memory instead).
        lock: held by writes and by `simdex.text.hybrid.KeywordIndex.where` (which switches the connection to
            read-only for the length of one query).
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.lock = threading.RLock()
        self._db = sqlite3.connect(path if path is not None else ":memory:", check_same_thread=False)
        # An INSERT OR REPLACE of a chunk must fire the delete trigger for the row it replaces.
        self._db.execute("PRAGMA recursive_triggers = ON")
        self._db.executescript(_SCHEMA)
        self._db.commit()
        self.has_fts = self._migrate()
        # What KeywordIndex.where conditions see: one row per chunk, as in KeywordIndex.from_records (temp: never
        # written to the file, and made outside any transaction, so a rollback cannot take it away).
        self._db.execute(_WHERE_VIEW)
        self._reset_pending()

    def _migrate(self) -> bool:
        """Creates the keyword index when the store has none (a file from before it) and fills it once from the
        stored chunks; False when the file is read-only and has none."""
        db = self._db
        if db.execute("SELECT 1 FROM sqlite_master WHERE name = 'chunks_fts'").fetchone():
            return True
        try:  # one transaction: a migration cut short leaves the file as it was, and the next open tries again
            db.executescript(f"BEGIN; {_FTS_SCHEMA} INSERT INTO chunks_fts (chunks_fts) VALUES ('rebuild'); "
                             f"PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        except sqlite3.OperationalError as e:
            db.rollback()
            if "readonly" not in str(e).replace("read-only", "readonly").replace(" ", ""):
                raise
            return False
        return True

    def _reset_pending(self) -> None:
        self._next_doc = (self._db.execute("SELECT MAX(id) FROM documents").fetchone()[0] or 0) + 1
        self._pending: list | None = None  # [lowest, highest + 1] chunk id written since the last commit

    # -- state ------------------------------------------------------------------------------------------
    def get_state(self, key: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM state WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_state(self, key: str, value: Any) -> None:
        """Sets (or with None deletes) a state entry; committed with the next `commit`."""
        if value is None:
            self._db.execute("DELETE FROM state WHERE key = ?", (key,))
        else:
            self._db.execute("INSERT OR REPLACE INTO state (key, value) VALUES (?, ?)", (key, json.dumps(value)))

    @property
    def seq(self) -> int:
        """How many times the store was committed with its index (matches ``metadata["docstore"]["seq"]``)."""
        return int(self.get_state("seq", 0))

    @property
    def pending(self) -> list | None:
        """[lowest, highest + 1] of the chunk ids written since the last commit, or None."""
        return None if self._pending is None else list(self._pending)

    def commit(self, seq: int) -> None:
        with self.lock:
            self.set_state("seq", seq)
            self._db.commit()
            self._pending = None

    def rollback(self) -> None:
        with self.lock:
            self._db.rollback()
            self._reset_pending()

    def close(self) -> None:
        self._db.rollback()
        self._db.close()

    # -- writing ----------------------------------------------------------------------------------------
    def add(self, docs: list, chunks: list) -> None:
        """Adds documents and their chunks (not committed).

        Args:
            docs: (key, text, source, metadata) per document; key may be None.
            chunks: (chunk id, position of its document in `docs`, start, end) per chunk.

        The keyword index (``chunks_fts``) follows in the same transaction, through the triggers on chunks.
        """
        with self.lock:
            self._add(docs, chunks)

    def _add(self, docs: list, chunks: list) -> None:
        first = self._next_doc
        self._db.executemany(
            "INSERT INTO documents (id, key, text, source, metadata) VALUES (?, ?, ?, ?, ?)",
            ((first + i, None if key is None else json.dumps(key), text, source, json.dumps(meta) if meta else None)
             for i, (key, text, source, meta) in enumerate(docs)))
        self._next_doc += len(docs)
        self._db.executemany("INSERT OR REPLACE INTO chunks (id, doc, start_char, end_char) VALUES (?, ?, ?, ?)",
                             ((int(cid), first + d, s, e) for cid, d, s, e in chunks))
        if chunks:
            lo, hi = min(int(c[0]) for c in chunks), max(int(c[0]) for c in chunks) + 1
            self._pending = [lo, hi] if self._pending is None else [min(lo, self._pending[0]),
                                                                    max(hi, self._pending[1])]

    def existing_keys(self, keys: Iterable[Any]) -> set:
        """The keys among `keys` that a stored document already has."""
        encoded = [json.dumps(k) for k in keys if k is not None]
        found = set()
        with self.lock:
            for s in range(0, len(encoded), _IN_CHUNK):
                part = encoded[s:s + _IN_CHUNK]
                rows = self._db.execute(f"SELECT key FROM documents WHERE key IN ({','.join('?' * len(part))})",
                                        part).fetchall()
                found.update(json.loads(r[0]) for r in rows)
        return found

    def copy_to(self, path: str, seq: int) -> None:
        """Writes everything this connection sees (uncommitted rows too) to a new store file at path, atomically."""
        tmp = f"{path}.tmp.{os.getpid()}"
        if os.path.exists(tmp):
            os.remove(tmp)
        dst = sqlite3.connect(tmp)
        try:
            dst.executescript(_SCHEMA + _FTS_SCHEMA)  # the triggers fill the keyword index as the rows go in
            dst.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            for table, cols in (("documents", "id, key, text, source, metadata"),
                                ("chunks", "id, doc, start_char, end_char"), ("state", "key, value")):
                marks = ",".join("?" * (cols.count(",") + 1))
                dst.executemany(f"INSERT OR REPLACE INTO {table} ({cols}) VALUES ({marks})",
                                self._db.execute(f"SELECT {cols} FROM {table}"))
            dst.execute("INSERT OR REPLACE INTO state (key, value) VALUES ('seq', ?)", (json.dumps(seq),))
            dst.commit()
        finally:
            dst.close()
        os.replace(tmp, path)

    # -- reading ----------------------------------------------------------------------------------------
    def get(self, chunk_ids: Iterable[int]) -> dict:
        """{chunk id: (document row, Document)} for the chunk ids that have a stored document."""
        ids = [int(i) for i in chunk_ids]
        out = {}
        for s in range(0, len(ids), _IN_CHUNK):
            part = ids[s:s + _IN_CHUNK]
            with self.lock:  # not while a KeywordIndex.where holds the connection under its deadline
                rows = self._db.execute(
                    "SELECT c.id, c.start_char, c.end_char, d.id, d.key, d.text, d.source, d.metadata FROM chunks c "
                    f"JOIN documents d ON d.id = c.doc WHERE c.id IN ({','.join('?' * len(part))})", part).fetchall()
            for cid, start, end, row, key, text, source, meta in rows:
                out[cid] = (row, Document(None if key is None else json.loads(key), text, source,
                                          json.loads(meta) if meta else {}, (start, end)))
        return out

    def chunk_ids_where(self, condition: str, params: Iterable[Any] = ()) -> np.ndarray:
        """Chunk ids (ascending) of the documents that satisfy a SQL condition on their columns (``metadata``,
        ``source``, ``key``); the condition comes from `simdex.text.filters.compile_filter`, never from a user."""
        with self.lock:
            rows = self._db.execute(f"SELECT c.id FROM documents JOIN chunks c ON c.doc = documents.id "
                                    f"WHERE {condition} ORDER BY c.id", tuple(params)).fetchall()
        return np.array([r[0] for r in rows], np.int64)

    # -- documents by key (simdex.Collection: upsert, delete, get) -------------------------------------------
    def by_key(self, keys: Iterable[Any]) -> dict:
        """{key: (row, text, source, metadata JSON or None, [(chunk id, start, end), ...])} of the stored
        documents among `keys`."""
        wanted = json.dumps([json.dumps(k) for k in keys])  # one parameter however many keys
        out: dict = {}
        with self.lock:
            rows = self._db.execute(
                "SELECT d.id, d.key, d.text, d.source, d.metadata, c.id, c.start_char, c.end_char FROM documents d "
                "LEFT JOIN chunks c ON c.doc = d.id WHERE d.key IN (SELECT value FROM json_each(?)) "
                "ORDER BY d.id, c.id", (wanted,)).fetchall()
        last = None
        for row, key, text, source, meta, cid, start, end in rows:
            if row != last:
                spans: list = []
                out[json.loads(key)] = (row, text, source, meta, spans)
                last = row
            if cid is not None:
                spans.append((cid, start, end))
        return out

    def keys(self) -> list:
        """The keys of the stored documents that have one, in insertion order."""
        with self.lock:
            return [json.loads(r[0]) for r in self._db.execute(
                "SELECT key FROM documents WHERE key IS NOT NULL ORDER BY id")]

    def remove_documents(self, rows: Iterable[int]) -> None:
        """Deletes documents and their chunks (not committed). Chunks go first: the keyword index's delete
        trigger reads the text they were indexed with."""
        rows = [int(r) for r in rows]
        with self.lock:
            for s in range(0, len(rows), _IN_CHUNK):
                part = rows[s:s + _IN_CHUNK]
                marks = ",".join("?" * len(part))
                self._db.execute(f"DELETE FROM chunks WHERE doc IN ({marks})", part)
                self._db.execute(f"DELETE FROM documents WHERE id IN ({marks})", part)

    def keyless_under(self, prefix: str) -> tuple:
        """(document rows, their chunk ids) of the documents without a key whose source starts with prefix (the
        lines `simdex.ingest` read from one file: their source is ``"path:line"``)."""
        with self.lock:
            rows = self._db.execute(
                "SELECT d.id, c.id FROM documents d LEFT JOIN chunks c ON c.doc = d.id "
                "WHERE d.key IS NULL AND substr(d.source, 1, ?) = ?", (len(prefix), prefix)).fetchall()
        return sorted({r for r, _ in rows}), [c for _, c in rows if c is not None]

    def remove_unindexed(self, present: np.ndarray) -> int:
        """Deletes the documents that have a chunk whose id is not in `present` (the index's ids) and commits at
        once; returns how many. `simdex.text.texts.attach` calls it on a store opened after a save whose store
        commit was lost: that save removed the vectors of documents the store still holds, and the index file as
        it was before it is gone, so the deletion holds for every later load (and holds no write lock open)."""
        with self.lock:
            chunks = np.array(self._db.execute("SELECT id, doc FROM chunks").fetchall(), np.int64).reshape(-1, 2)
            gone = np.unique(chunks[~np.isin(chunks[:, 0], present), 1])
            if len(gone):
                self.remove_documents(gone.tolist())
                self._db.commit()
        return len(gone)

    @property
    def next_row(self) -> int:
        """The row the next added document gets: rows at or past a value read before a write are that write's."""
        return self._next_doc

    def set_metadata(self, updates: Iterable[tuple]) -> None:
        """(row, source, metadata dict or None) per document whose text stays (not committed)."""
        with self.lock:
            self._db.executemany("UPDATE documents SET source = ?, metadata = ? WHERE id = ?",
                                 ((source, json.dumps(meta) if meta else None, int(row))
                                  for row, source, meta in updates))

    def count(self) -> tuple:
        """(documents, chunks) stored."""
        return (self._db.execute("SELECT COUNT(*) FROM documents").fetchone()[0],
                self._db.execute("SELECT COUNT(*) FROM chunks").fetchone()[0])
