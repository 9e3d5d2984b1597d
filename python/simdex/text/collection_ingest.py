"""`simdex.ingest(source, collection)`: a corpus read as `simdex.ingest` reads it, upserted into a `Collection`.

The source is opened, parsed and checked by the same code as an ingest into an index file (`simdex.text.ingest`:
JSONL, text files, folders, iterables; bad items skipped, counted and named, never raised), then upserted in
batches, one transaction each. Upsert is idempotent, so this needs no progress of its own: a run cut short and
started again, or a corpus edited and ingested again, embeds only the documents that are missing or changed.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any, Optional

from ._jsonl import Skip
from .ingest import MAX_LINE_BYTES, SKIPPED_KEPT, IngestReport, SkippedItem, _open_source, check_text

logger = logging.getLogger("simdex")

#: Documents per upsert (one transaction, one model call of up to this many chunks).
BATCH_DOCUMENTS = 1024


def ingest_into(col: Any, source: Any, *, encoder: Any = None, chunk_tokens: Optional[int] = None,
                checkpoint_every: Optional[int] = None, source_name: Optional[str] = None,
                batch_size: Optional[int] = None, text_field: str = "text", id_field: str = "id",
                max_chars: int = 100_000, max_line_bytes: int = MAX_LINE_BYTES) -> IngestReport:
    """Upserts every good item of source into the collection; see `simdex.ingest`.

    Items without a key are keyed by their place (``"jsonl:/abs/path.jsonl:LINE"``, ``"text:...:LINE"``,
    ``"iterable:N"``); a record's ``"source"`` (or ``"path:line"``) is kept in its metadata. Returns an
    `IngestReport` whose ``documents`` counts documents added or changed and ``chunks`` the chunks embedded.
    """
    for name, value in (("encoder", encoder), ("chunk_tokens", chunk_tokens), ("checkpoint_every", checkpoint_every),
                        ("source_name", source_name)):
        if value is not None:
            raise ValueError(f"{name}: a Collection has its own (set when it was made); got {name}={value!r}")
    if isinstance(max_chars, bool) or not isinstance(max_chars, int) or max_chars <= 0:
        raise ValueError(f"max_chars: expected a positive integer, got {max_chars!r}")
    origin, raw, parse, _ = _open_source(source, text_field, id_field, max_line_bytes)
    report = IngestReport(index=col)
    counts: Counter = Counter()
    started = time.perf_counter()
    batch: dict = {}  # key -> (key, text, metadata); a key seen again in a batch: the later item wins

    def flush() -> None:
        if batch:
            done = col.upsert(list(batch.values()), batch_size=batch_size)
            report.documents += done.added + done.updated + done.metadata_only
            report.chunks += done.embedded
            batch.clear()

    for position, item in enumerate(raw, 1):
        report.items += 1
        try:
            rec = check_text(parse(item))
        except Exception as e:  # noqa: BLE001 -- no item stops the run
            rec = Skip("malformed", detail=f"{type(e).__name__}: {e}")
        if isinstance(rec, str):
            counts["skipped_" + rec] += 1
            if len(report.skipped_items) < SKIPPED_KEPT:
                report.skipped_items.append(SkippedItem(position, getattr(rec, "key", None), str(rec),
                                                        getattr(rec, "detail", "")))
            continue
        key, text, where, meta = rec
        if len(text) > max_chars:
            text = text[:max_chars]
            counts["truncated_chars"] += 1
        meta = dict(meta or {})
        if where is not None:
            meta.setdefault("source", where)
        if key is None:  # the item's place: stable while the source is, unique across sources
            key = f"{origin}:{position}"
        batch.pop(key, None)
        batch[key] = (key, text, meta)
        if len(batch) >= BATCH_DOCUMENTS:
            flush()
    flush()
    for name, n in counts.items():
        setattr(report, name, getattr(report, name) + n)
    report.seconds = time.perf_counter() - started
    report.docs_per_s = report.documents / report.seconds if report.seconds > 0 else 0.0
    logger.info("ingest: %s", report)
    return report
