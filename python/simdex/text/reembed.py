"""`Collection.reembed`: moving a collection to another model, in bounded memory, resumably, swapped atomically.

The new vectors go to a second table (``vectors_next``), `batch_size` chunks at a time in chunk-id order; each batch
is committed together with how far the run got (the ``reembed`` state entry), so a run killed at any moment resumes
after its last batch when `reembed` is called again with the same model (another model starts over). Upserts may run
meanwhile: their new chunks have higher ids than any done so far, so the run reaches them; chunks they remove leave
rows that the swap drops. The swap is one transaction (the new table becomes ``vectors``, the collection's model
and dim change); until it commits, and until the new index is built from it, searches use the old vectors and the
old model.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validate import as_positive_int

_NEXT = "vectors_next"


def _embed(encoder: Any, texts: list, dim: int) -> np.ndarray:
    vectors = np.asarray(encoder.embed_batch(texts), np.float32)
    if vectors.shape != (len(texts), dim):
        raise ValueError(f"encoder: returned shape {vectors.shape} for {len(texts)} texts, expected "
                         f"({len(texts)}, {dim})")
    return np.ascontiguousarray(vectors)


def _step(col: Any, encoder: Any, state: dict, batch_size: int) -> int:
    """Embeds the next batch of chunks above ``state["done"]`` and commits it with the progress; returns its size."""
    store, db = col._store, col._db
    with store.lock:
        rows = db.execute("SELECT c.id, substr(d.text, c.start_char + 1, c.end_char - c.start_char) FROM chunks c "
                          "JOIN documents d ON d.id = c.doc WHERE c.id > ? ORDER BY c.id LIMIT ?",
                          (state["done"], batch_size)).fetchall()
    if not rows:
        return 0
    vectors = _embed(encoder, [r[1] for r in rows], state["dim"])
    with col._writer, store.lock:
        try:
            db.executemany(f"INSERT OR REPLACE INTO {_NEXT} (id, vec) VALUES (?, ?)",
                           zip((r[0] for r in rows), (v.tobytes() for v in vectors)))
            state["done"] = int(rows[-1][0])
            store.set_state("reembed", state)
            store.commit(store.seq)  # progress only: what searches see has not changed
        except BaseException:
            store.rollback()
            raise
    return len(rows)


def reembed(col: Any, encoder: Any, *, batch_size: int = 256) -> int:
    """Re-embeds every chunk of a `simdex.Collection` with `encoder` and makes it the collection's model.

    Args:
        col: the collection.
        encoder: the new model (any dim; the index keeps its metric and dtype).
        batch_size: chunks embedded (and held in memory) per step.

    Returns:
        Chunks embedded by this call (0 when the collection already uses this model).

    A run stopped at any point (exception, kill -9) resumes where it stopped when called again with the same
    model. Searches keep using the old vectors until the swap.
    """
    batch_size = as_positive_int(batch_size, "batch_size")
    fp, dim = encoder.fingerprint, int(encoder.dim)
    store, db = col._store, col._db
    from .collection import _VECTORS_SCHEMA

    with col._writer:
        if col._conf["fingerprint"] == fp and col._conf["dim"] == dim:
            return 0
        state = store.get_state("reembed")
        if state is None or state.get("fingerprint") != fp or state.get("dim") != dim:
            with store.lock:
                db.commit()
                db.execute(f"DROP TABLE IF EXISTS {_NEXT}")
                db.execute(_VECTORS_SCHEMA.format(table=_NEXT))
                state = {"fingerprint": fp, "dim": dim, "done": -1}
                store.set_state("reembed", state)
                store.commit(store.seq)
    embedded = 0
    while True:  # without the writer lock: upserts go on meanwhile
        n = _step(col, encoder, state, batch_size)
        if not n:
            break
        embedded += n
    with col._writer:
        while True:  # what upserts added meanwhile, with no writer left to add more
            n = _step(col, encoder, state, batch_size)
            if not n:
                break
            embedded += n
        with store.lock:
            try:
                db.execute(f"DELETE FROM {_NEXT} WHERE id NOT IN (SELECT id FROM chunks)")
                missing = db.execute(f"SELECT COUNT(*) FROM chunks WHERE id NOT IN (SELECT id FROM {_NEXT})"
                                     ).fetchone()[0]
                if missing:
                    raise RuntimeError(f"reembed: {missing} chunks have no new vector; call reembed again")
                db.commit()
                db.execute("BEGIN")  # DDL too: one explicit transaction
                db.execute("DROP TABLE vectors")
                db.execute(f"ALTER TABLE {_NEXT} RENAME TO vectors")
                conf = {**col._conf, "dim": dim, "fingerprint": fp}
                store.set_state("collection", conf)
                store.set_state("reembed", None)
                db.execute("DELETE FROM transform_sections WHERE kind = 'fitted'")  # fitted to the old vectors
                store.commit(store.seq + 1)
            except BaseException:
                store.rollback()
                raise
        col._conf, col._transform_saved = conf, False
        index = col._build_index("vectors", dim, fp)
        with col._lock.write():
            col._index, col._encoder = index, encoder
    return embedded
