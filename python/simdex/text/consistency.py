"""What keeps a `simdex.Collection` consistent for its readers, and the check that it is.

Every batch of changes is one SQLite transaction (documents, chunks, the keyword index through its triggers,
metadata and vectors); the in-memory index follows while `RWLock` keeps searches out, so a search sees a batch
entirely or not at all. `check` counts what would break the invariant: every vector id has exactly one chunk row
and every chunk row its vector, in the file and in the index.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


class RWLock:
    """Many searches or one writer: a search sees the collection before a batch or after it, never in between."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = self._waiting = 0
        self._writing = False

    @contextmanager
    def read(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._waiting:  # waiting writers go first: a busy reader stream cannot starve them
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()



def check(col: Any) -> dict:
    """Counts of inconsistencies in a collection (all 0 when sound): chunks without a stored vector, stored
    vectors without a chunk, chunks without a document, index ids without a chunk, chunks missing from the
    index, and 1 under "keyword_index" when the FTS5 table disagrees with the chunks."""
    with col._lock.read(), col._store.lock:
        db = col._db

        def one(sql: str) -> int:
            return int(db.execute(sql).fetchone()[0])

        chunk_ids = np.array([r[0] for r in db.execute("SELECT id FROM chunks")], np.int64)
        index_ids = col._index.ids()
        try:
            db.execute("INSERT INTO chunks_fts (chunks_fts) VALUES ('integrity-check')")
            fts_bad = 0
        except sqlite3.DatabaseError:
            fts_bad = 1
        finally:
            db.rollback()
        return {"chunks_without_vector": one("SELECT COUNT(*) FROM chunks WHERE id NOT IN (SELECT id FROM vectors)"),
                "vectors_without_chunk": one("SELECT COUNT(*) FROM vectors WHERE id NOT IN (SELECT id FROM chunks)"),
                "chunks_without_document": one("SELECT COUNT(*) FROM chunks WHERE doc NOT IN "
                                               "(SELECT id FROM documents)"),
                "index_without_chunk": int(len(np.setdiff1d(index_ids, chunk_ids))),
                "chunks_not_in_index": int(len(np.setdiff1d(chunk_ids, index_ids))),
                "keyword_index": fts_bad}
