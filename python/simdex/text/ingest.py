"""Streaming ingest: `simdex.ingest(source, index_or_path, ...)` embeds a corpus of any size into an index.

    >>> report = simdex.ingest("corpus.jsonl", "corpus.simdex", chunk_tokens=128, overlap=16)
    >>> print(report)           # documents, chunks, what was skipped or truncated, docs/s
    >>> simdex.load("corpus.simdex").search_text("how do I fork a process", k=5).documents

How it runs: a background thread reads the source, checks and chunks the texts and tokenizes them, a few
windows of batches ahead of the model (bounded memory); the calling thread runs the model, adds the vectors (the
core releases the GIL) and writes documents and chunks to the SQLite store beside the index file. Every
`checkpoint_every` batches, `Index.save` writes the index file atomically and then commits the store in one
transaction that holds the progress too, so a killed run resumes where its last checkpoint ended, without
duplicates or gaps (see `simdex.text.docstore` for the crash between the two writes).
"""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .._fingerprint import guard_fingerprint
from .._index import Index
from ._jsonl import Skip, metadata_error, parse_json_line, parse_text_line, read_lines
from ._ingest_plan import SourceDigest, plan
from .docstore import DocStore
from .ingest_report import _COUNTERS, _STORED, SKIPPED_KEPT, IngestReport, SkippedItem  # noqa: F401 - re-exported
from .encoder import PREFETCH, WINDOW_BATCHES, background
from .persist import docs_path, load
from .texts import docstore, set_docstore, text_encoder, texts_of

logger = logging.getLogger("simdex")

FOLDER_SUFFIXES = (".txt", ".md")
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".jsonl.gz", ".ndjson.gz")
#: Default checkpoint period when checkpoint_every is None: this many seconds, or 10x the last save, if longer.
CHECKPOINT_SECONDS = 60.0
_WARN_FIRST = 5  # bad items logged one by one; the rest are only counted
#: Default `ingest` max_line_bytes: longer lines are skipped without being read whole.
MAX_LINE_BYTES = 16 * 2**20


@dataclass
class _Unit:
    """Whole documents read and tokenized ahead of the model."""

    docs: list  # (key, text, source, metadata)
    positions: list  # the item number of each document
    spans: list  # (position in docs, start, end) per chunk
    items: int  # source items consumed, bad ones included
    counts: Counter
    skips: list  # SkippedItem, at most SKIPPED_KEPT
    prepared: Any
    digest: str | None  # SourceDigest.value() after its last item


# -- sources ---------------------------------------------------------------------------------------------------
def _check_key(key: Any) -> bool:
    return key is None or isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)
                                                   and key.bit_length() <= 4096)


def _record(rec: dict, text_field: str, id_field: str, source: str | None, check_meta: bool = False) -> tuple | str:
    text, key = rec.get(text_field), rec.get(id_field)
    if not _check_key(key):
        return Skip("malformed", detail=f"{id_field!r} is not a str or int")
    if not isinstance(text, str):
        return Skip("malformed", key, f"no str {text_field!r} field")
    if isinstance(rec.get("source"), str):
        source = rec["source"]
    meta = {k: v for k, v in rec.items() if k not in (text_field, id_field, "source")}
    error = metadata_error(meta) if check_meta and meta else None
    return Skip("malformed", key, error) if error else (key, text, source, meta)


def _open_source(source: Any, text_field: str, id_field: str, max_line_bytes: int = MAX_LINE_BYTES) -> tuple:
    """(progress key, raw items, parse(raw) -> (key, text, source, metadata) or a skip reason, count or None)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.suffix.lower() in FOLDER_SUFFIXES and p.is_file())

            def parse_file(p: Path) -> tuple | str:
                key = p.relative_to(path).as_posix()
                with open(p, "rb") as f:
                    data = f.read(max_line_bytes + 1)
                if len(data) > max_line_bytes:
                    return Skip("too_long", key, f"a file of more than {max_line_bytes} bytes (max_line_bytes)")
                if b"\x00" in data:
                    return Skip("malformed", key, "a raw NUL byte: binary data, or text in UTF-16/32")
                try:
                    return key, data.decode("utf-8"), str(p), None
                except UnicodeDecodeError as e:
                    return Skip("invalid_utf8", key, f"byte {e.start}: {e.reason}")

            return "folder:" + str(path.resolve()), iter(files), parse_file, len(files)
        if not path.is_file():
            raise FileNotFoundError(f"source: expected a file, a folder or an iterable of texts; {path} does not "
                                    "exist")
        lines = read_lines(path, max_line_bytes)  # (line number, bytes or a too_long Skip)

        if path.name.lower().endswith(JSONL_SUFFIXES):
            def parse_json(raw: tuple) -> tuple | str:
                lineno, line = raw
                rec = line if isinstance(line, Skip) else parse_json_line(line, id_field)
                if isinstance(rec, Skip):
                    return rec
                if not isinstance(rec, dict):
                    return Skip("malformed", detail=f"a JSON {type(rec).__name__}, not an object")
                return _record(rec, text_field, id_field, f"{path}:{lineno}")

            return "jsonl:" + str(path.resolve()), lines, parse_json, None

        def parse_line(raw: tuple) -> tuple | str:
            lineno, line = raw
            text = line if isinstance(line, Skip) else parse_text_line(line)
            return text if isinstance(text, Skip) else (None, text, f"{path}:{lineno}", None)

        return "text:" + str(path.resolve()), lines, parse_line, None

    if isinstance(source, bytes) or not isinstance(source, Iterable):
        raise TypeError(f"source: expected a path or an iterable of texts, (id, text) pairs or records, got "
                        f"{type(source).__name__}")

    def parse_item(item: Any) -> tuple | str:
        key = None
        if isinstance(item, dict):
            return _record(item, text_field, id_field, None, check_meta=True)
        if isinstance(item, (tuple, list)):
            if len(item) != 2 or not _check_key(item[0]):
                return Skip("malformed", detail="not an (id, text) pair")
            key, item = item
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError as e:
                return Skip("invalid_utf8", key, f"byte {e.start}: {e.reason}")
        if not isinstance(item, str):
            return Skip("malformed", key, f"a {type(item).__name__}, not a text")
        return key, item, None, None

    count = len(source) if hasattr(source, "__len__") else None
    return "iterable", iter(source), parse_item, count


def check_text(rec: tuple | str) -> tuple | str:
    """A parsed (key, text, source, metadata) record, or the Skip it earns (an empty text, lone surrogates)."""
    if isinstance(rec, tuple):
        key, text = rec[0], rec[1]
        if not text.strip():
            return Skip("empty", key)
        if not text.isascii():
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as e:  # lone surrogates: from JSON escapes or surrogateescape
                return Skip("invalid_utf8", key, f"a lone surrogate at character {e.start}")
    return rec


# -- the reader thread ---------------------------------------------------------------------------------------
def _read_units(raw: Iterator[Any], parse: Callable, encoder: Any, batch_size: int, chunk_tokens: int | None,
                overlap: int, max_chars: int, first_item: int, digest: SourceDigest) -> Iterator[_Unit]:
    """Reads, checks, chunks and tokenizes; yields units of about WINDOW_BATCHES batches of chunks."""
    target = batch_size * WINDOW_BATCHES
    docs: list = []
    positions: list = []
    spans: list = []
    skips: list = []
    items, counts, warned = 0, Counter(), 0

    def unit() -> _Unit:
        texts = [docs[d][1][s:e] for d, s, e in spans]
        return _Unit(docs, positions, spans, items, counts, skips, encoder.prepare(texts, batch_size),
                     digest.value())

    for position, item in enumerate(raw, first_item + 1):
        items += 1
        digest.update(item)
        try:
            rec = parse(item)
        except Exception as e:  # noqa: BLE001 -- no item stops the run; reading the source itself may raise
            rec = Skip("malformed", detail=f"{type(e).__name__}: {e}")
        rec = check_text(rec)
        if isinstance(rec, str):
            key, detail = getattr(rec, "key", None), getattr(rec, "detail", "")
            counts["skipped_" + rec] += 1
            if len(skips) < SKIPPED_KEPT:
                skips.append(SkippedItem(position, key, str(rec), detail))
            if warned < _WARN_FIRST:
                warned += 1
                logger.warning("ingest: skipped source item %d%s (%s%s)%s", position,
                               "" if key is None else f" {key!r}", rec.replace("_", " "),
                               f": {detail}" if detail else "",
                               "; further bad items are only counted" if warned == _WARN_FIRST else "")
        else:
            key, text, source, meta = rec
            if len(text) > max_chars:
                text = text[:max_chars]
                counts["truncated_chars"] += 1
            pos = len(docs)
            docs.append((key, text, source, meta))
            positions.append(position)
            if chunk_tokens is None:
                spans.append((pos, 0, len(text)))
            else:
                spans.extend((pos, s, e) for s, e in encoder.token_spans([text], chunk_tokens, overlap)[0])
        if len(spans) >= target:
            out = unit()
            out.counts["truncated_tokens"] += out.prepared.truncated
            yield out
            docs, positions, spans, items, counts, skips = [], [], [], 0, Counter(), []
    if items:
        out = unit()
        out.counts["truncated_tokens"] += out.prepared.truncated
        yield out


# -- ingest ------------------------------------------------------------------------------------------------------
def ingest(source: Any, index_or_path: Any, encoder: Any = None, batch_size: int | None = None,
           chunk_tokens: int | None = None, overlap: int = 0, checkpoint_every: int | None = None, *,
           text_field: str = "text", id_field: str = "id", max_chars: int = 100_000,
           source_name: str | None = None, show_progress_bar: bool | None = None,
           max_line_bytes: int = MAX_LINE_BYTES) -> IngestReport:
    """Embeds a corpus into an index, keeping the texts, resumably and in bounded memory.

    Args:
        source: an iterable of str, (id, text) pairs, bytes or dict records; or a path: a JSONL file (``.jsonl``,
            ``.ndjson``, optionally ``.gz``; one record per line), any other file (one document per line), or a
            folder (every ``.txt`` and ``.md`` file below it, one document each, id = relative path).
        index_or_path: an index file path (created if missing, resumed if an earlier run stopped) or an `Index`
            (nothing is saved; call ``index.save(path)`` afterwards), or a `simdex.Collection` (items without a
            key are then keyed by their place in the source). Documents are upserted: an id that an earlier run
            stored with the same text is left alone (a changed source or metadata is updated, nothing is
            embedded); with another text, its old chunks and their vectors are replaced by the new text's.
        encoder: a `simdex.Encoder`; default: one for the index's fingerprint model, else all-MiniLM-L6-v2.
        batch_size: texts per model call (default: the encoder's).
        chunk_tokens: when set, documents are split into chunks of at most this many tokens, each embedded and
            stored with its document; `Index.search_text` then returns the best chunk per document.
        overlap: tokens shared by consecutive chunks.
        checkpoint_every: save and commit every this many batches; default: every 60 s (or 10x the time of the
            last save, if longer, since each save rewrites the index file). Only with a path.
        text_field, id_field: record fields holding the text and the document id (JSONL and dicts); a
            ``"source"`` field becomes `Document.source`, the other fields its metadata.
        max_chars: longer texts are cut to this many characters (counted in the report).
        source_name: the name the progress of this source is kept under (default: its path, or "iterable").
        show_progress_bar: a tqdm bar with docs/s; default: shown when the "simdex" logger is at INFO or DEBUG.
        max_line_bytes: a line of a JSONL or text file longer than this many bytes (its ``\\n`` not counted), or a
            folder's file larger than this, is skipped as too_long without being read whole: reading holds at
            most this many bytes of one item (default 16 MiB).

    Returns:
        An `IngestReport`; ``report.index`` is the index.

    Raises:
        FingerprintMismatch: (a ValueError) the index was filled by another model than the encoder's.
        FileNotFoundError: a source path that does not exist.
        ValueError, TypeError: bad arguments, or a document store without its index file.

    Bad items (empty, not valid UTF-8, malformed, duplicate ids, too long) never stop the run, whatever their
    bytes: they are skipped, counted and reported, the first `SKIPPED_KEPT` by item number (a file's line
    number) and key in ``report.skipped_items``. A file is read as UTF-8 line by line (lines end at ``\\n``); a
    line with invalid UTF-8, a raw NUL byte (in JSON, a NUL in a string is written ``\\u0000``) or, in JSONL, that
    is not one JSON object with a str text field, or nests more than 100 levels, is skipped. Items of an iterable
    are not limited in size (they are in memory already); their dict records' metadata must be JSON.

    Ingesting into a path keeps the progress of each source (known by its path, an iterable as
    "iterable", or by `source_name`): a later run on the same source skips the items earlier runs read, so a
    killed run resumes and a file that grew only gets its new lines. A file or folder edited within the part
    earlier runs read (a digest of its lines, or of its files' names, sizes and times, tells) is read again from
    the start: its documents with an id are upserted, so only changed texts are embedded, and its lines without
    one are stored again. Give another `source_name` to add a second iterable. Ingesting into an `Index` keeps no
    progress.
    """
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or batch_size <= 0):
        raise ValueError(f"batch_size: expected a positive integer or None, got {batch_size!r}")
    if checkpoint_every is not None and (isinstance(checkpoint_every, bool) or not isinstance(checkpoint_every, int)
                                         or checkpoint_every <= 0):
        raise ValueError(f"checkpoint_every: expected a positive integer or None, got {checkpoint_every!r}")
    if not isinstance(max_chars, int) or max_chars <= 0:
        raise ValueError(f"max_chars: expected a positive integer, got {max_chars!r}")
    if chunk_tokens is None and overlap:
        raise ValueError(f"overlap: only used with chunk_tokens, got overlap={overlap} and chunk_tokens=None")
    if isinstance(max_line_bytes, bool) or not isinstance(max_line_bytes, int):
        raise TypeError(f"max_line_bytes: expected a positive integer (bytes), got {type(max_line_bytes).__name__}")
    if max_line_bytes <= 0:
        raise ValueError(f"max_line_bytes: expected a positive integer (bytes), got {max_line_bytes}")
    from .collection import Collection  # its imports are ingest's own

    if isinstance(index_or_path, Collection):
        from .collection_ingest import ingest_into

        return ingest_into(index_or_path, source, encoder=encoder, chunk_tokens=chunk_tokens,
                           checkpoint_every=checkpoint_every, source_name=source_name, batch_size=batch_size,
                           text_field=text_field, id_field=id_field, max_chars=max_chars, max_line_bytes=max_line_bytes)
    key, raw, parse, count = _open_source(source, text_field, id_field, max_line_bytes)

    index, path = _open_index(index_or_path)
    if encoder is None:
        if index is not None:
            encoder = text_encoder(index)
        else:
            from .encoder import Encoder

            encoder = Encoder()
    if index is None:
        index = Index(encoder.dim)
        set_docstore(index, DocStore(docs_path(path)))
    elif path is not None and texts_of(index).store is None:
        set_docstore(index, DocStore(docs_path(path)))
    text_encoder(index, encoder)
    guard_fingerprint(index, encoder.fingerprint, "ingest")
    bs = batch_size or encoder.batch_size
    if chunk_tokens is not None:
        encoder.token_spans(["x"], chunk_tokens, overlap)  # checks chunk_tokens and overlap now, not in the thread
    store = docstore(index)

    progress_key = "progress:" + (source_name or key)
    progress = store.get_state(progress_key, {}) if path is not None else {}
    digest = SourceDigest(key)
    raw = iter(raw)
    if progress and digest.active and "digest" in progress:
        for item in itertools.islice(raw, int(progress.get("items", 0))):
            digest.update(item)
        if digest.value() != progress["digest"]:  # edited before where the last run stopped: read it all again
            logger.warning("ingest: %s changed within the %d items earlier runs read; reading it again from the "
                           "start (documents with an id are upserted: only changed texts are embedded)",
                           source_name or key, progress.get("items", 0))
            key, raw, parse, count = _open_source(source, text_field, id_field, max_line_bytes)
            raw, digest, progress = iter(raw), SourceDigest(key), {}
            _forget_keyless(index, store, f"{Path(source)}:")
    elif progress:
        raw = itertools.islice(raw, int(progress.get("items", 0)), None)
    if progress:
        logger.warning("ingest: resuming %s after item %d (earlier runs stored %d documents)", source_name or key,
                       progress.get("items", 0), progress.get("documents", 0))
    # Rows this run writes start here (a run cut short keeps its own): a key stored at or past it repeats in the run.
    run_rows = progress.get("run_rows", store.next_row) if not progress.get("complete", True) else store.next_row
    report = IngestReport(**{k: int(progress.get(k, 0)) for k in _STORED}, index=index,
                          skipped_items=[SkippedItem(*s) for s in progress.get("skipped_items", [])])
    report.resumed_after = report.items
    ids_next = int(index._core.next_id)
    if show_progress_bar is None:
        show_progress_bar = logger.getEffectiveLevel() <= logging.INFO
    started = time.perf_counter()
    documents_before = report.documents
    last_save, save_seconds, batches = time.perf_counter(), 0.0, 0

    if progress and "digest" not in progress:
        digest.active = False  # progress from before digests: the source is taken as unchanged
    read_digest = progress.get("digest", digest.value())

    def checkpoint(complete: bool = False) -> None:
        nonlocal last_save, save_seconds, batches
        if path is None:
            return
        store.set_state(progress_key, {**{k: getattr(report, k) for k in _STORED},
                                       "skipped_items": [list(s) for s in report.skipped_items],
                                       "digest": read_digest, "run_rows": run_rows, "complete": complete})
        t = time.perf_counter()
        index.save(path)
        save_seconds = time.perf_counter() - t
        report.checkpoints += 1
        report.checkpoint_seconds += save_seconds
        last_save, batches = time.perf_counter(), 0

    from tqdm.auto import tqdm

    skip = report.items
    units = _read_units(raw, parse, encoder, bs, chunk_tokens, overlap, max_chars, skip, digest)
    bar = tqdm(total=count, initial=skip, unit="doc", desc="ingest", disable=not show_progress_bar)
    pipeline = background(units, PREFETCH)
    try:
        for unit in pipeline:
            stored = store.by_key([d[0] for d in unit.docs if d[0] is not None])
            todo = plan(unit.docs, unit.spans, stored, ids_next, run_rows)
            rows = todo.rows
            if len(rows) == len(unit.spans):
                vectors = encoder.compute(unit.prepared)
            elif rows:  # upserts left some documents alone: embed only the others
                texts = [unit.docs[unit.spans[r][0]][1][unit.spans[r][1]:unit.spans[r][2]] for r in rows]
                vectors = encoder.compute(encoder.prepare(texts, bs))
            if todo.gone_ids:
                index.remove(np.asarray(todo.gone_ids, np.int64))
            store.remove_documents(todo.gone_rows)
            store.set_metadata(todo.metadata)
            if rows:
                index.add(vectors, np.arange(ids_next, ids_next + len(rows), dtype=np.int64))
            store.add(todo.docs, todo.chunks)
            ids_next += len(rows)
            unit.counts["skipped_duplicate"] += len(todo.dropped)
            room = SKIPPED_KEPT - len(report.skipped_items)
            if room > 0:
                dups = [SkippedItem(unit.positions[p], unit.docs[p][0], "duplicate") for p in todo.dropped[:room]]
                report.skipped_items += sorted(unit.skips + dups)[:room]
            for name in _COUNTERS:
                setattr(report, name, getattr(report, name) + unit.counts[name])
            report.documents += len(todo.docs)
            report.replaced += len(todo.gone_rows)
            report.unchanged += todo.unchanged
            report.chunks += len(rows)
            report.items += unit.items
            read_digest = unit.digest
            bar.update(unit.items)
            if report.skipped:
                bar.set_postfix(skipped=report.skipped, refresh=False)
            batches += -(-len(unit.spans) // bs)
            if (batches >= checkpoint_every if checkpoint_every is not None
                    else time.perf_counter() - last_save >= max(CHECKPOINT_SECONDS, 10 * save_seconds)):
                checkpoint()
        checkpoint(complete=True)
    finally:
        pipeline.close()
        bar.close()
    report.seconds = time.perf_counter() - started
    report.docs_per_s = (report.documents - documents_before) / report.seconds if report.seconds > 0 else 0.0
    logger.info("ingest: %s", report)
    return report


def _forget_keyless(index: Index, store: DocStore, prefix: str) -> None:
    """Removes the documents without a key that an earlier run read from a file now edited (their source is
    ``"path:line"``): nothing ties an edited line to its old text, so the file's keyless lines are stored again."""
    rows, ids = store.keyless_under(prefix)
    if ids:
        index.remove(np.asarray(ids, np.int64))
    store.remove_documents(rows)


def _open_index(index_or_path: Any) -> tuple:
    """(index or None when it is to be created, path or None)."""
    if isinstance(index_or_path, Index):
        return index_or_path, None
    if not isinstance(index_or_path, (str, os.PathLike)):
        raise TypeError(f"index_or_path: expected a simdex.Index or a file path, got {type(index_or_path).__name__}")
    path = os.fspath(index_or_path)
    if os.path.isdir(path):
        raise ValueError(f"index_or_path: {path} is a directory; expected an index file path")
    if os.path.exists(path):
        return load(path), path
    store_path = docs_path(path)
    if os.path.exists(store_path):
        store = DocStore(store_path)
        seq = store.seq
        store.close()
        if seq:
            raise ValueError(f"index_or_path: {store_path} holds documents of an index, but the index file {path} is "
                             "missing; restore it, or delete the .docs.sqlite file to start again")
        os.remove(store_path)
    return None, path
