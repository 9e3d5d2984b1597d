"""What an ingest into an index does with each document it read: add it, replace a stored one, or leave it; and
the digest that tells a resumed run whether the part of its source an earlier run read is still the same."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional


@dataclass
class Plan:
    """One unit's writes. Attributes: docs, the documents to store; rows, the unit's chunks to embed (positions
    in its spans); chunks, (chunk id, position in docs, start, end) for the store; dropped, positions in the
    unit's docs of repeated keys; metadata, (row, source, metadata) of unchanged texts whose metadata changed;
    gone_rows / gone_ids, the stored documents (and their chunk ids) that changed documents replace."""

    docs: list = field(default_factory=list)
    rows: list = field(default_factory=list)
    chunks: list = field(default_factory=list)
    dropped: list = field(default_factory=list)
    metadata: list = field(default_factory=list)
    gone_rows: list = field(default_factory=list)
    gone_ids: list = field(default_factory=list)
    unchanged: int = 0


def plan(docs: list, spans: list, stored: dict, first_id: int, run_rows: int) -> Plan:
    """The writes for a unit's documents (key, text, source, metadata) and chunk spans (position, start, end).

    `stored` is `DocStore.by_key` of the unit's keys; a stored row at or past `run_rows` was written by this run
    (the key repeats in the source: the later item is dropped). A key stored by an earlier run is upserted: the
    same text leaves its vectors alone (only a changed source or metadata is written); another text replaces
    the document, its chunks and their vectors. New chunk ids count up from first_id.
    """
    out = Plan()
    keep: dict = {}
    seen: set = set()
    for pos, (key, text, source, meta) in enumerate(docs):
        if key is not None:
            old = stored.get(key)
            if key in seen or (old is not None and old[0] >= run_rows):
                out.dropped.append(pos)
                continue
            seen.add(key)
            if old is not None:
                row, old_text, old_source, old_meta, old_spans = old
                if old_text == text:
                    out.unchanged += 1
                    if old_source != source or (json.loads(old_meta) if old_meta else {}) != (meta or {}):
                        out.metadata.append((row, source, meta))
                    continue
                out.gone_rows.append(row)
                out.gone_ids += [c[0] for c in old_spans]
        keep[pos] = len(out.docs)
        out.docs.append((key, text, source, meta))
    for row, (pos, s, e) in enumerate(spans):
        if pos in keep:
            out.chunks.append((first_id + len(out.rows), keep[pos], s, e))
            out.rows.append(row)
    return out


class SourceDigest:
    """A running digest of the items read from a file or folder source (None for iterables): a line's bytes, or a
    folder file's path, size and modification time. A resumed run compares it over the items it skips."""

    def __init__(self, key: str) -> None:
        self.active = key.startswith(("jsonl:", "text:", "folder:"))
        self._hash = hashlib.blake2b(digest_size=16)

    def update(self, item: Any) -> None:
        if not self.active:
            return
        if isinstance(item, Path):
            st = item.stat()
            data = f"{item}\0{st.st_size}\0{st.st_mtime_ns}".encode("utf-8", "surrogateescape")
        else:  # (line number, bytes or a too_long Skip)
            data = item[1] if isinstance(item[1], bytes) else f"\0{item[1]!r}".encode()
        self._hash.update(len(data).to_bytes(8, "little"))
        self._hash.update(data)

    def value(self) -> Optional[str]:
        return self._hash.hexdigest() if self.active else None
