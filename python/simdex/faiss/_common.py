"""FAISS's constants, id selectors and search parameters, and the free functions (``normalize_L2``,
``omp_set_num_threads``, ``vector_to_array``): everything of the FAISS surface that holds no index."""

from __future__ import annotations

import operator
from typing import Any, Optional

import numpy as np

from .._core import get_num_threads, set_num_threads
from .._validate import as_ids
from ..transform import unit_rows

# FAISS's values, so code that passes them (or stores them) keeps working.
METRIC_INNER_PRODUCT = 0
METRIC_L2 = 1
#: What FAISS writes into D where fewer than k results exist: +FLT_MAX under L2, -FLT_MAX under inner product.
FLT_MAX = float(np.finfo(np.float32).max)


class ScalarQuantizer:
    """The quantizer-type constants FAISS code refers to as ``ScalarQuantizer.QT_8bit`` (FAISS's values)."""

    QT_8bit = 0
    QT_4bit = 1
    QT_8bit_uniform = 2
    QT_fp16 = 4


def metric_name(metric: Any) -> str:
    """The simdex metric for a FAISS metric: ``METRIC_L2`` / ``"l2"`` -> "l2", ``METRIC_INNER_PRODUCT`` / ``"ip"``
    -> "ip"; ``"cosine"`` passes through."""
    if isinstance(metric, (bool, np.bool_)):
        raise TypeError("metric: expected METRIC_L2, METRIC_INNER_PRODUCT, 'l2', 'ip' or 'cosine', got a bool")
    if isinstance(metric, str) and metric in ("l2", "ip", "cosine"):
        return metric
    if isinstance(metric, (int, np.integer)) and int(metric) in (METRIC_L2, METRIC_INNER_PRODUCT):
        return "l2" if int(metric) == METRIC_L2 else "ip"
    raise ValueError(f"metric: expected METRIC_L2 (1), METRIC_INNER_PRODUCT (0), 'l2', 'ip' or 'cosine', got "
                     f"{metric!r}")


def metric_type(name: str) -> int:
    """FAISS's ``metric_type`` of a simdex metric (cosine is an inner product of normalized vectors)."""
    return METRIC_L2 if name == "l2" else METRIC_INNER_PRODUCT


def normalize_L2(x: np.ndarray) -> None:
    """Scales each row of x to unit L2 norm, in place, as ``faiss.normalize_L2`` (rows of zeros stay zero).

    Raises:
        TypeError: x is not a float32 NumPy array (FAISS refuses other types too: a copy could not be changed
            in place).
        ValueError: x is read-only or not 1-D / 2-D.
    """
    if not isinstance(x, np.ndarray) or x.dtype != np.float32:
        what = f"dtype {x.dtype}" if isinstance(x, np.ndarray) else type(x).__name__
        raise TypeError(f"normalize_L2: expected a float32 NumPy array (normalized in place), got {what}")
    if x.ndim not in (1, 2):
        raise ValueError(f"normalize_L2: expected a 2-D array of rows (or one 1-D row), got shape {x.shape}")
    if not x.flags.writeable:
        raise ValueError("normalize_L2: the array is read-only, so it cannot be normalized in place")
    rows = x.reshape(-1, x.shape[-1]) if x.ndim == 2 else x.reshape(1, -1)  # views: writes land in x
    for start in range(0, len(rows), 65536):  # in blocks: unit_rows works in float64
        rows[start:start + 65536] = unit_rows(rows[start:start + 65536])


def omp_set_num_threads(n: int) -> None:
    """Threads the searches use (simdex's own pool; there is no OpenMP). 0 or less: all cores."""
    set_num_threads(max(0, operator.index(n)))


def omp_get_max_threads() -> int:
    return int(get_num_threads())


def vector_to_array(v: Any) -> np.ndarray:
    """A NumPy copy of a FAISS-style vector (here the properties already are arrays, such as ``id_map``)."""
    return np.array(v)


class IDSelector:
    """Chooses ids: ``is_member(id)``; the vectorized ``_members(ids)`` serves search and remove_ids."""

    def _members(self, ids: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def is_member(self, id_: int) -> bool:
        return bool(self._members(np.array([id_], np.int64))[0])


class IDSelectorBatch(IDSelector):
    """The ids in a set: ``IDSelectorBatch(ids)`` (FAISS's Python form) or ``IDSelectorBatch(n, ids)``."""

    def __init__(self, *args: Any) -> None:
        if len(args) == 2:
            n, ids = args
            ids = np.asarray(ids)[: operator.index(n)]
        elif len(args) == 1:
            ids = args[0]
        else:
            raise TypeError("IDSelectorBatch: expected (ids) or (n, ids)")
        self.ids = np.unique(as_ids(ids, "IDSelectorBatch ids"))

    def _members(self, ids: np.ndarray) -> np.ndarray:
        return np.isin(ids, self.ids)


#: FAISS's IDSelectorArray keeps the ids unsorted for a linear scan; here it is the same set as a batch.
IDSelectorArray = IDSelectorBatch


class IDSelectorRange(IDSelector):
    """Ids in ``[imin, imax)``."""

    def __init__(self, imin: int, imax: int, assume_sorted: bool = False) -> None:
        self.imin, self.imax = operator.index(imin), operator.index(imax)

    def _members(self, ids: np.ndarray) -> np.ndarray:
        return (ids >= self.imin) & (ids < self.imax)


class IDSelectorNot(IDSelector):
    """The ids another selector leaves out."""

    def __init__(self, sel: IDSelector) -> None:
        self.sel = as_selector(sel)

    def _members(self, ids: np.ndarray) -> np.ndarray:
        return ~self.sel._members(ids)


class SearchParameters:
    """Per-search options, FAISS style: ``search(x, k, params=SearchParameters(sel=IDSelectorRange(0, 100)))``.
    ``sel`` restricts the results to the selected ids (applied inside the scan, so k results still come back
    when k qualify)."""

    def __init__(self, sel: Optional[IDSelector] = None, **options: Any) -> None:
        self.sel = None if sel is None else as_selector(sel)
        for name, value in options.items():  # e.g. nprobe for partitioned indexes; ignored by flat ones
            setattr(self, name, value)


def as_selector(sel: Any) -> IDSelector:
    """An IDSelector, or an array of ids taken as IDSelectorBatch (as FAISS's ``remove_ids`` does)."""
    if isinstance(sel, IDSelector):
        return sel
    if isinstance(sel, (str, bytes)) or sel is None:
        raise TypeError(f"expected an IDSelector or an array of ids, got {type(sel).__name__}")
    return IDSelectorBatch(sel)
