"""Keyword and metadata pre-filters for hybrid search, on SQLite FTS5.

Both turn into an id allow-list for :meth:`simdex.Index.search`'s ``filter``, which the core applies inside its
scan: the vector search then ranks only documents that contain the query's words (BM25 top-N) or whose
metadata match a SQL condition.

    kw = KeywordIndex.from_records(ids, texts, metadata=[{"source": ...}, ...])
    index.search(q, 10, filter=kw.allow_list("send mail smtp", limit=200))
    index.search(q, 10, filter=kw.where("source LIKE 'man%'"))
"""

from __future__ import annotations

import re
import sqlite3
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)


def fts_query(text: str) -> str:
    """Any-word FTS5 query for free text: every word quoted (so FTS syntax in user text is inert), OR-ed."""
    words = dict.fromkeys(w.lower() for w in _WORD.findall(text))
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


class KeywordIndex:
    """BM25 keyword search and metadata filters over documents, returning the ids the vector index uses."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    def from_records(cls, ids: Sequence[int], texts: Sequence[str],
                     metadata: Optional[Sequence[Dict[str, object]]] = None) -> "KeywordIndex":
        """An in-memory index of (int id, text, optional flat metadata dict) records."""
        if len(ids) != len(texts) or (metadata is not None and len(metadata) != len(ids)):
            raise ValueError(f"ids, texts and metadata must have the same length; got {len(ids)}, {len(texts)}"
                             f"{'' if metadata is None else ', ' + str(len(metadata))}")
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        columns = sorted({k for m in metadata or [] for k in m})
        for c in columns:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", c):
                raise ValueError(f"metadata field {c!r}: expected an identifier")
        conn.execute("CREATE TABLE docs (id INTEGER PRIMARY KEY" + "".join(f", {c}" for c in columns) + ")")
        conn.execute("CREATE VIRTUAL TABLE docs_fts USING fts5(text, content='', tokenize='unicode61')")
        rows = [(int(i), *[(m or {}).get(c) for c in columns]) for i, m in zip(ids, metadata or [None] * len(ids))]
        conn.executemany(f"INSERT INTO docs VALUES ({', '.join('?' * (1 + len(columns)))})", rows)
        conn.executemany("INSERT INTO docs_fts (rowid, text) VALUES (?, ?)", zip(map(int, ids), texts))
        conn.commit()
        conn.execute("PRAGMA query_only = ON")  # where() takes SQL text: it may read, never write
        return cls(conn)

    def bm25(self, query: str, limit: int = 100) -> Tuple[np.ndarray, np.ndarray]:
        """(ids, BM25 scores) of the best keyword matches, best first (higher is better)."""
        match = fts_query(query)
        if not match:
            return np.empty(0, np.int64), np.empty(0, np.float32)
        rows = self.conn.execute(
            "SELECT rowid, -bm25(docs_fts) AS s FROM docs_fts WHERE docs_fts MATCH ? ORDER BY s DESC, rowid LIMIT ?",
            (match, int(limit))).fetchall()
        return np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.float32)

    def allow_list(self, query: str, limit: int = 200) -> Optional[np.ndarray]:
        """Ids of the top BM25 matches, or None (no filter) when no document shares a word with the query."""
        ids, _ = self.bm25(query, limit)
        return ids if len(ids) else None

    def where(self, condition: str, params: Sequence[object] = ()) -> np.ndarray:
        """Ids of the documents whose metadata satisfy a SQL condition, e.g. ``"source LIKE 'man%'"``."""
        try:
            rows: List[tuple] = self.conn.execute(f"SELECT id FROM docs WHERE {condition}", tuple(params)).fetchall()
        except sqlite3.Error as e:
            raise ValueError(f"where: not a valid condition on the document metadata ({e}): {condition!r}") from None
        return np.array([r[0] for r in rows], np.int64)
