"""The text wing: texts in, texts out, over a vectors-only `simdex.Index`.

    encoder.py    `Encoder`: texts to vectors (sentence-transformers, imported when the first Encoder is made)
    collection.py `simdex.Collection`: documents to upsert, delete, filter and search, consistent after a crash
    filters.py    the metadata filter language (``{"year": {"$gte": 2020}}``) compiled to parameterised SQL
    reembed.py    `Collection.reembed`: moving a collection to another model, resumably
    consistency.py  the readers/writer lock of a collection, and `check` (its invariant, counted)
    collection_ingest.py  `simdex.ingest(source, collection)`: any ingest source, upserted
    ingest.py     `simdex.ingest`: a corpus of any size into an index, resumably, in bounded memory
    docstore.py   `DocStore`: documents, chunks and their metadata in SQLite beside the index file
    hybrid.py     `KeywordIndex`: BM25 keyword and metadata pre-filters (SQLite FTS5)
    texts.py      an index's texts (its document store companion): `add_texts`, `search_text`
    persist.py    `docs_path`, and `simdex.load`: an index file and the store beside it

The wing holds an `Index`; `Index` never imports it (``Index.add_texts`` / ``Index.search_text`` forward here from
inside the method). Its names resolve on first use, so ``import simdex`` does not import sqlite3 or tqdm.
"""

from __future__ import annotations

from typing import Any

# name -> (module of this package, attribute). Not `ingest` (the function is `simdex.ingest`; here it is the module).
_LAZY = {
    "Collection": ("collection", "Collection"),
    "UpsertReport": ("collection", "UpsertReport"),
    "FilterError": ("filters", "FilterError"),
    "compile_filter": ("filters", "compile_filter"),
    "Encoder": ("encoder", "Encoder"),
    "IngestReport": ("ingest", "IngestReport"),
    "DocStore": ("docstore", "DocStore"),
    "Document": ("docstore", "Document"),
    "Hit": ("docstore", "Hit"),
    "TextSearchResult": ("docstore", "TextSearchResult"),
    "KeywordIndex": ("hybrid", "KeywordIndex"),
    "Texts": ("texts", "Texts"),
    "add_texts": ("texts", "add_texts"),
    "search_text": ("texts", "search_text"),
    "docs_path": ("persist", "docs_path"),
    "load": ("persist", "load"),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        module, attr = _LAZY[name]
        value = getattr(import_module(f".{module}", __name__), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'simdex.text' has no attribute {name!r}")
