"""Keyword and metadata pre-filters for hybrid search, on SQLite FTS5.

Both turn into an id allow-list for :meth:`simdex.Index.search`'s ``filter``, which the core applies inside its
scan: the vector search then ranks only documents that contain the query's words (BM25 top-N) or whose
metadata match a SQL condition.

    kw = KeywordIndex.from_records(ids, texts, metadata=[{"source": ...}, ...])   # in memory, built once
    kw = KeywordIndex.from_store(store)   # the FTS5 table a DocStore keeps up to date with every write
    index.search(q, 10, filter=kw.allow_list("send mail smtp", limit=200))
    index.search(q, 10, filter=kw.where("source LIKE 'man%'"))

The BM25 ranking can also be fused with the vector ranking instead of filtering it: `simdex.text.fusion`
(``search_text(..., mode="rrf")``).

A ``where`` condition is SQL text, so it is treated as untrusted: it must be one expression (no ``;``, no comments,
no parenthesis that closes the surrounding ``WHERE (...)``), it runs on a read-only connection under a deadline
(`WHERE_TIMEOUT` seconds, or ``timeout=``), and no string or blob it makes may exceed `WHERE_MAX_LENGTH` bytes, so a
recursive CTE or ``randomblob(1e9)`` ends in a ValueError within about the deadline instead of hanging the call.
"""

from __future__ import annotations

import json
import math
import numbers
import re
import sqlite3
import threading
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

_WORD = re.compile(r"\w+", re.UNICODE)

#: Seconds a `KeywordIndex.where` condition may run before it is stopped (``timeout=`` overrides it per call).
WHERE_TIMEOUT = 3.0
#: Bytes of the longest string or blob a where condition may make (raised to the longest stored value, if longer).
WHERE_MAX_LENGTH = 1_000_000
#: Characters of the longest where condition accepted (values belong in ``params``).
WHERE_MAX_CONDITION = 100_000
_PROGRESS_STEPS = 1000  # SQLite VM instructions between two deadline checks
_HAS_SETLIMIT = hasattr(sqlite3.Connection, "setlimit")  # Python 3.11+
# Without setlimit (Python < 3.11) a single function call that makes a huge blob cannot be bounded: refuse these.
_BLOB_MAKERS = re.compile(r"\b(zeroblob|randomblob)\s*\(", re.IGNORECASE)


def fts_query(text: str) -> str:
    """Any-word FTS5 query for free text: every word quoted (so FTS syntax in user text is inert), OR-ed."""
    words = dict.fromkeys(w.lower() for w in _WORD.findall(text))
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def _shown(condition: str) -> str:
    """The condition for an error message: repr, cut to 200 characters."""
    return repr(condition) if len(condition) <= 200 else repr(condition[:200]) + f"... ({len(condition):,} characters)"


def check_condition(condition: str) -> str:
    """Returns `condition` when it is a single SQL expression that cannot escape ``WHERE (...)``, else raises.

    Outside string literals and quoted identifiers it refuses ``;`` (a second statement), ``--`` and ``/*``
    (a comment could hide the closing parenthesis) and any ``)`` that closes more than the condition opened.
    Subqueries are expressions and stay allowed; the deadline in `KeywordIndex.where` bounds them.
    """
    if not isinstance(condition, str):
        raise TypeError(f"where: expected a SQL condition as str, got {type(condition).__name__}")
    if not condition.strip():
        raise ValueError("where: expected a SQL condition, got an empty string")
    if len(condition) > WHERE_MAX_CONDITION:
        raise ValueError(f"where: the condition is {len(condition):,} characters, over the {WHERE_MAX_CONDITION:,} "
                         "allowed; pass long values as params (?) instead")
    depth, i, n = 0, 0, len(condition)
    closing = {"'": "'", '"': '"', "`": "`", "[": "]"}
    code = []  # the condition with string literals blanked and identifiers unquoted ("zeroblob"(1) is a call)
    while i < n:
        c = condition[i]
        if c in closing:
            end = condition.find(closing[c], i + 1)
            if end < 0:
                raise ValueError(f"where: unterminated {c}...{closing[c]} in {_shown(condition)}")
            code.append(" '' " if c == "'" else f" {condition[i + 1:end]} ")
            i = end + 1  # a doubled quote ('') reads as two adjacent literals: the same tokens for this check
            continue
        if c == ";":
            raise ValueError(f"where: expected one SQL expression, got ';' (a second statement) in {_shown(condition)}")
        if condition.startswith("--", i) or condition.startswith("/*", i):
            raise ValueError(f"where: comments are not allowed in a condition: {_shown(condition)}")
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth < 0:
                raise ValueError(f"where: unbalanced ')' in {_shown(condition)}: a condition must be one expression")
        code.append(c)
        i += 1
    if depth:
        raise ValueError(f"where: unbalanced '(' in {_shown(condition)}: a condition must be one expression")
    if not _HAS_SETLIMIT and _BLOB_MAKERS.search("".join(code)):
        raise ValueError(f"where: zeroblob() and randomblob() are not allowed in a condition: {_shown(condition)}")
    return condition


def _as_timeout(timeout: object) -> float:
    if timeout is None:
        timeout = WHERE_TIMEOUT
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        raise TypeError(f"timeout: expected seconds as a real number, got {type(timeout).__name__}")
    value = float(timeout)
    if math.isnan(value) or value <= 0:
        raise ValueError(f"timeout: expected a positive number of seconds (inf for none), got {timeout!r}")
    return value


class KeywordIndex:
    """BM25 keyword search and metadata filters over documents, returning the ids the vector index uses."""

    def __init__(self, conn: sqlite3.Connection, *, fts: str = "docs_fts", lock: Optional[Any] = None,
                 writable: bool = False) -> None:
        self.conn = conn
        self._fts = fts  # the FTS5 table (rowid: the vector id); where() reads the "docs" table or view
        # where() changes connection-wide settings for the length of one query (a store's writes take this lock)
        self._lock = threading.Lock() if lock is None else lock
        self._writable = writable  # the connection also writes (a store's): where() makes it read-only meanwhile
        self._value_limit: Optional[int] = None

    @classmethod
    def from_store(cls, store: Any) -> "KeywordIndex":
        """The keyword index a `simdex.text.docstore.DocStore` keeps (``chunks_fts``, updated with every write to
        the store, uncommitted ones included), searched in place: nothing is copied or rebuilt. ``where``
        conditions see the same columns as with `from_records`: ``id`` (the chunk), ``source`` and ``doc`` (the
        document's key, JSON)."""
        if not store.has_fts:
            raise ValueError(f"{store.path}: this document store has no keyword index (a read-only file from before "
                             "it); use KeywordIndex.from_records")
        return cls(store._db, fts="chunks_fts", lock=store.lock, writable=True)

    def refresh(self) -> None:
        """Forgets what was measured of the stored values (the length limit of `where`): call after writes."""
        self._value_limit = None

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

    def bm25(self, query: str, limit: int = 100, allow: Optional[Sequence[int]] = None
             ) -> Tuple[np.ndarray, np.ndarray]:
        """(ids, BM25 scores) of the best keyword matches, best first (higher is better; ties to the lower id).

        ``allow``: when given, only these ids can match (the caller's filter / where, as in the vector search).
        """
        match = fts_query(query)
        empty = np.empty(0, np.int64), np.empty(0, np.float32)
        if not match:
            return empty
        fts = self._fts
        sql, params = f"SELECT rowid, -bm25({fts}) AS s FROM {fts} WHERE {fts} MATCH ?", [match]
        if allow is not None:
            allowed = np.asarray(allow, np.int64).reshape(-1)
            if not len(allowed):
                return empty
            sql += " AND rowid IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(allowed.tolist()))
        with self._lock:
            rows = self.conn.execute(sql + " ORDER BY s DESC, rowid LIMIT ?", (*params, int(limit))).fetchall()
        return np.array([r[0] for r in rows], np.int64), np.array([r[1] for r in rows], np.float32)

    def allow_list(self, query: str, limit: int = 200) -> Optional[np.ndarray]:
        """Ids of the top BM25 matches, or None (no filter) when no document shares a word with the query."""
        ids, _ = self.bm25(query, limit)
        return ids if len(ids) else None

    def _length_limit(self) -> int:
        """WHERE_MAX_LENGTH, or the longest value stored in docs when longer (SQLite refuses to read past it)."""
        if self._value_limit is None:
            columns = ['"' + r[1].replace('"', '""') + '"' for r in self.conn.execute("PRAGMA table_info(docs)")]
            longest = ", ".join([f"coalesce(max(length(CAST({c} AS BLOB))), 0)" for c in columns] + ["0"])
            try:
                self._value_limit = int(self.conn.execute(f"SELECT max({longest}) FROM docs").fetchone()[0])
            except sqlite3.Error:  # no docs table: where() itself will say so
                self._value_limit = 0
        return max(WHERE_MAX_LENGTH, self._value_limit)

    def where(self, condition: str, params: Sequence[object] = (), *, timeout: Optional[float] = None) -> np.ndarray:
        """Ids of the documents whose metadata satisfy a SQL condition, e.g. ``"source LIKE 'man%'"``.

        Args:
            condition: one SQL expression over the metadata columns (see `check_condition`).
            params: values for its ``?`` placeholders.
            timeout: seconds it may run (default `WHERE_TIMEOUT`; ``math.inf`` for no limit).

        Raises:
            ValueError: not a single valid expression, over the deadline, or a value over `WHERE_MAX_LENGTH` bytes.
        """
        check_condition(condition)
        seconds = _as_timeout(timeout)
        sql = f"SELECT id FROM docs WHERE ({condition})"
        with self._lock:
            limit = self._length_limit()
            deadline = time.monotonic() + seconds
            expired = []

            def past_deadline() -> int:
                if time.monotonic() > deadline:
                    expired.append(True)
                    return 1
                return 0

            old_length = self.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, limit) if _HAS_SETLIMIT else None
            if self._writable:
                self.conn.execute("PRAGMA query_only = ON")  # it may read, never write
            self.conn.set_progress_handler(past_deadline, _PROGRESS_STEPS)
            try:
                rows: List[tuple] = self.conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as e:
                if expired:
                    raise ValueError(
                        f"where: the condition ran past its {seconds:g} s deadline and was stopped: "
                        f"{_shown(condition)}; allow more with KeywordIndex.where(..., timeout=SECONDS) or by "
                        "setting simdex.text.hybrid.WHERE_TIMEOUT") from None
                if "too big" in str(e):
                    raise ValueError(f"where: the condition (or a param) made a string or blob over the {limit:,}-byte "
                                     f"limit (simdex.text.hybrid.WHERE_MAX_LENGTH): {_shown(condition)}") from None
                raise ValueError(f"where: not a valid condition on the document metadata ({e}): {_shown(condition)}") \
                    from None
            finally:
                self.conn.set_progress_handler(None, 0)
                if self._writable:
                    self.conn.execute("PRAGMA query_only = OFF")
                if old_length is not None:
                    self.conn.setlimit(sqlite3.SQLITE_LIMIT_LENGTH, old_length)
        return np.array([r[0] for r in rows], np.int64)
