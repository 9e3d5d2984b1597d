"""A collection's transform (PCA, RandomProjection, Truncate) kept in its SQLite file, in the index file's own
section format (`simdex._transform_file`): the transform as given ("template", refitted after a reembed) and, once
fitted, the fitted one, written in the same transaction as the first vectors it projected."""

from __future__ import annotations

import json
from typing import Any, Optional

from .._transform_file import from_sections, to_sections

SCHEMA = """CREATE TABLE IF NOT EXISTS transform_sections (
    kind TEXT NOT NULL, name TEXT NOT NULL, dtype TEXT NOT NULL, rows INTEGER NOT NULL, cols INTEGER NOT NULL,
    required INTEGER NOT NULL, data BLOB NOT NULL, PRIMARY KEY (kind, name))"""


def save(db: Any, kind: str, transform: Any, dim: int, metric: str) -> None:
    """Replaces the `kind` ("template" or "fitted") sections (not committed)."""
    db.execute("DELETE FROM transform_sections WHERE kind = ?", (kind,))
    db.executemany("INSERT INTO transform_sections VALUES (?, ?, ?, ?, ?, ?, ?)",
                   ((kind, name, dtype, rows, cols, int(required), data)
                    for name, dtype, rows, cols, required, data in to_sections(transform, dim, metric)))


def drop(db: Any, kind: str) -> None:
    db.execute("DELETE FROM transform_sections WHERE kind = ?", (kind,))


def load(db: Any, kind: str, source: str) -> Optional[Any]:
    """The `kind` transform, or None when none is stored."""
    rows = db.execute("SELECT name, dtype, rows, cols, required, data FROM transform_sections WHERE kind = ?",
                      (kind,)).fetchall()
    if not rows:
        return None
    sections = {r[0]: (r[0], r[1], int(r[2]), int(r[3]), bool(r[4]), bytes(r[5])) for r in rows}
    out_dim = int(json.loads(sections["transform"][5].decode())["out_dim"])  # checked again by from_sections
    return from_sections(sections, out_dim, source)[0]
