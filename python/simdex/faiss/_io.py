"""write_index / read_index and serialize_index / deserialize_index: simdex index files (docs/format.md) with
a tag in their metadata naming the FAISS-style class, so the same wrapper comes back."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .._index import Index
from .._load import load_bytes
from ._ivf import IndexIVFFlat, IndexIVFScalarQuantizer
from ._indexes import (META_KEY, FaissIndex, IndexFlat, IndexFlatCosine, IndexFlatIP, IndexFlatL2, IndexIDMap,
                       IndexIDMap2, IndexPreTransform, IndexScalarQuantizer)

_CLASSES = {c.__name__: c for c in (IndexFlat, IndexFlatL2, IndexFlatIP, IndexFlatCosine, IndexScalarQuantizer,
                                    IndexPreTransform, IndexIVFFlat, IndexIVFScalarQuantizer)}
_ID_MAPS = {c.__name__: c for c in (IndexIDMap, IndexIDMap2)}


def _simdex_index(index: Any) -> Index:
    """The simdex Index to write, its wrapper's tag stored in the metadata first."""
    if isinstance(index, Index):
        return index
    if not isinstance(index, FaissIndex):
        raise TypeError(f"expected a simdex index or FAISS-style wrapper, got {type(index).__name__}")
    meta = index._index.metadata
    if meta.get(META_KEY) != index._tag():
        meta[META_KEY] = index._tag()
        index._index.metadata = meta
    return index._index


def wrap(index: Index) -> FaissIndex:
    """The FAISS-style wrapper for a loaded index: the one its tag names, else one chosen from what it is
    (int8: IndexScalarQuantizer; a PCA: IndexPreTransform; else by metric), keeping its ids as they are."""
    tag = index.metadata.get(META_KEY) or {}
    name = tag.get("inner") if tag.get("class") in _ID_MAPS else tag.get("class")
    cls = _CLASSES.get(name or "")
    if cls is None:
        if index.dtype == "int8" and index.transform is None:
            cls = IndexScalarQuantizer
        elif index.transform is not None:
            cls = IndexPreTransform
        else:
            cls = {"l2": IndexFlatL2, "ip": IndexFlatIP}.get(index.metric, IndexFlatCosine)
    out = cls.__new__(cls)
    FaissIndex.__init__(out, index, positional=bool(tag.get("positional", False)))
    ids = index.ids()
    out._renumbered = out._positional and not np.array_equal(np.sort(ids), np.arange(len(ids)))
    if tag.get("class") in _ID_MAPS:
        outer = _ID_MAPS[tag["class"]].__new__(_ID_MAPS[tag["class"]])
        FaissIndex.__init__(outer, index, positional=False)
        outer.index = out
        return outer
    return out


def write_index(index: Any, path: "str | os.PathLike[str]") -> None:
    """Saves an index (a FAISS-style wrapper or a `simdex.Index`) to path, atomically (``Index.save``). A
    wrapper's class is recorded in the index metadata (key "faiss"), so read_index returns the same kind."""
    _simdex_index(index).save(path)


def read_index(path: "str | os.PathLike[str]", io_flags: int = 0) -> FaissIndex:
    """Loads an index file as the FAISS-style wrapper it was written from (texts beside it come too, as with
    `simdex.load`)."""
    from ..text.persist import load  # the text wing sits above the core; read_index is simdex.load

    return wrap(load(path))


def serialize_index(index: Any) -> np.ndarray:
    """The index file's bytes as a uint8 NumPy array, as ``faiss.serialize_index``."""
    return np.frombuffer(_simdex_index(index)._core.to_bytes(), np.uint8).copy()


def deserialize_index(data: Any) -> FaissIndex:
    """The index serialize_index made (a uint8 array or any bytes-like object), validated like a file."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise TypeError(f"deserialize_index: expected a uint8 array, got dtype {data.dtype}")
        data = data.tobytes()
    return wrap(load_bytes(data))
