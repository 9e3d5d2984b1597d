"""The files of an index with texts: the index file, and the document store beside it (`docs_path`).

`simdex.load` is `load` here: it reads the index file (`simdex._load.load_vectors`) and, only when a document
store lies beside it, imports the rest of the text wing to attach the store (so ``import simdex`` and loading a
vectors-only index never import sqlite3). This module imports nothing else of the text wing.
"""

from __future__ import annotations

import os

from .._index import COMPANION_FILES, Index
from .._load import load_vectors

#: The name of the texts' companion in `Index._companions` and `simdex._index.COMPANION_FILES`.
COMPANION = "docs"


def docs_path(index_path: str | os.PathLike[str]) -> str:
    """The document store file that belongs to an index file (``index_path + ".docs.sqlite"``)."""
    return os.fspath(index_path) + COMPANION_FILES[COMPANION]


def load(path: str | os.PathLike[str], mmap: bool = False) -> Index:
    """Reads an index written by :meth:`Index.save`, with the texts stored beside it (if any).

    Everything is validated before it is used: the header, the section table, every size and offset against
    the file size (before anything is allocated), the checksum of every section, ids and metadata.

    Args:
        path: the index file. When a document store lies beside it (``path + ".docs.sqlite"``, written by
            `simdex.ingest`, `Index.add_texts` + `Index.save` or `simdex.distributed_ingest`), it is opened too,
            so `Index.search_text` returns texts and a later `Index.save` elsewhere carries them along.
        mmap: map the file instead of reading it. Opening is then instant and the vectors are searched in
            place from the page cache, so the process's memory holds only ids and their lookup table. The
            index is read-only (``add``/``remove``/``reset`` raise ValueError; load with ``mmap=False`` to
            change it). The vectors' checksum is not computed up front (that would read the whole file); their
            sizes and bounds are checked like everything else, and all other sections are checksummed. The
            file must not be truncated in place while mapped (``save`` never does that: it replaces the file).

    Returns:
        The index.

    Raises:
        simdex.FormatError: (a ValueError) the file is damaged, truncated, empty, a directory, not a simdex
            index (random bytes, a pickle, a .npy), or from a newer format version.
        OSError: the file cannot be opened or read (FileNotFoundError, PermissionError, ...).
    """
    path = os.fspath(path)
    index = load_vectors(path, mmap)
    if os.path.exists(docs_path(path)):
        from .texts import attach

        attach(index, path)
    return index
