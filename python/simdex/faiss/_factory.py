"""``index_factory(d, description, metric)``: FAISS's description strings for the indexes simdex has.

A description is ``[IDMap[2],][PCA<n>,]<index>``. The index part is matched against the registered types in
order; `register_index_type` adds one (a partitioned index registers ``"IVF<nlist>,Flat"`` this way).
"""

from __future__ import annotations

import re
from typing import Any, Callable, List, Optional, Tuple

from .._validate import as_dim
from ._common import METRIC_L2, metric_name
from ._indexes import FaissIndex, IndexFlat, IndexIDMap, IndexIDMap2, IndexPreTransform, IndexScalarQuantizer

#: builder(d, match, metric, pca_out_dim or None) -> index
Builder = Callable[[int, "re.Match[str]", Any, Optional[int]], FaissIndex]
_TYPES: List[Tuple["re.Pattern[str]", Builder, str]] = []


def register_index_type(pattern: str, builder: Builder, example: str) -> None:
    """Teaches index_factory a new index part: `pattern` is a regular expression for the whole part after the
    optional ``IDMap`` and ``PCA<n>`` prefixes; `example` is how the error for unknown strings lists it."""
    _TYPES.append((re.compile(pattern), builder, example))


def _flat(d: int, m: "re.Match[str]", metric: Any, pca: Optional[int]) -> FaissIndex:
    return IndexFlat(d, metric) if pca is None else IndexPreTransform(d, pca, metric)


def _sq8(d: int, m: "re.Match[str]", metric: Any, pca: Optional[int]) -> FaissIndex:
    return IndexScalarQuantizer(d, metric=metric) if pca is None else IndexPreTransform(d, pca, metric, "int8")


register_index_type(r"Flat", _flat, "Flat")
register_index_type(r"SQ8", _sq8, "SQ8")


def supported() -> str:
    kinds = ", ".join(repr(example) for _, _, example in _TYPES)
    return (f"index types {kinds}, optionally after 'PCA<n>,' (e.g. 'PCA384,Flat') and/or behind 'IDMap,' or "
            "'IDMap2,' (e.g. 'IDMap,Flat')")


def index_factory(d: int, description: str, metric: Any = METRIC_L2) -> FaissIndex:
    """Builds the index a FAISS description names, e.g. ``index_factory(768, "PCA384,SQ8",
    METRIC_INNER_PRODUCT)``.

    Raises:
        ValueError: a description simdex cannot build (the message lists what it can), or a bad metric.
    """
    d = as_dim(d)
    metric_name(metric)  # refuse a bad metric before parsing
    if not isinstance(description, str):
        raise TypeError(f"index_factory: description must be a string, got {type(description).__name__}")
    parts = [p.strip() for p in description.split(",")]
    wrap: Optional[type] = None
    if parts and parts[0] in ("IDMap", "IDMap2"):
        wrap = IndexIDMap if parts.pop(0) == "IDMap" else IndexIDMap2
    pca: Optional[int] = None
    if parts and (m := re.fullmatch(r"PCA(\d+)", parts[0])):
        pca = int(m.group(1))
        if not 0 < pca <= d:
            raise ValueError(f"index_factory: PCA{pca} must keep between 1 and d = {d} dimensions")
        parts.pop(0)
    rest = ",".join(parts)
    for pattern, builder, _ in _TYPES:
        m = pattern.fullmatch(rest)
        if m:
            index = builder(d, m, metric, pca)
            return wrap(index) if wrap else index
    raise ValueError(f"index_factory: cannot build {description!r}; simdex supports {supported()}")
