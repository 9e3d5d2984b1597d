"""Reading index files: `load_vectors` (the index file alone; `simdex.load`, in `simdex.text.persist`, also opens
the texts beside it) and `simdex.load_bytes`."""

from __future__ import annotations

import json
import os
from typing import Any

from . import _core
from ._core import FormatError
from ._index import Index


def _checked(core: Any, source: str) -> Index:
    # The core checked that metadata is UTF-8; whether it is a JSON object is the Python layer's business.
    text = core.metadata
    if text:
        try:
            value = json.loads(text)
        except ValueError as e:
            raise FormatError(f"{source}: section 'metadata' is not valid JSON ({e})") from None
        if not isinstance(value, dict):
            raise FormatError(f"{source}: section 'metadata' holds a JSON {type(value).__name__}, expected an object")
    return Index._from_core(core, source)


def load_vectors(path: "str | os.PathLike[str]", mmap: bool = False) -> Index:
    """Reads the index file alone, validated like `simdex.load` (its docstring says how): vectors, ids,
    metadata, transform. The files of its companions (texts) are not opened; `simdex.load` opens them too.
    """
    path = os.fspath(path)
    index = _checked(_core.FlatIndex.load(path, bool(mmap)), path)
    index._path = path
    return index


def load_bytes(buffer: Any) -> Index:
    """Reads an index from the bytes of an index file, with the same checks as :func:`load`.

    Args:
        buffer: any bytes-like object (``bytes``, ``bytearray``, ``memoryview``, ``mmap``); it is copied.

    Returns:
        The index.

    Raises:
        simdex.FormatError: the bytes are not a valid simdex index file.
        TypeError: buffer is not a bytes-like object.
    """
    return _checked(_core.FlatIndex.load_bytes(buffer), "<bytes>")
