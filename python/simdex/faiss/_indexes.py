"""FAISS index classes over `simdex.Index`: the flat indexes, the scalar quantizer, a PCA pre-transform and the
id maps, with FAISS's search, range_search, reconstruct and remove_ids semantics.

Ids: a FAISS flat index numbers its vectors 0..ntotal-1 and renumbers them after ``remove_ids``; simdex ids stay
fixed. The wrappers below keep FAISS's numbering (a stored id's position is its rank among the stored ids, which
simdex assigns in increasing order), unless ids were given (``add_with_ids``, ``IndexIDMap``), which then stay as
given.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import numpy as np

from .._index import Index
from .._validate import as_ids, as_k, as_matrix
from ..transform import PCA
from ._common import (FLT_MAX, METRIC_INNER_PRODUCT, METRIC_L2, IDSelector, IDSelectorBatch, ScalarQuantizer,
                      SearchParameters, as_selector, metric_name, metric_type)

#: Tags write_index stores in the index metadata, so read_index rebuilds the same wrapper.
META_KEY = "faiss"


class FaissIndex:
    """What every wrapper shares. ``index`` is the `simdex.Index` underneath (for :class:`IndexIDMap`, the
    wrapped FAISS-style index, as in FAISS)."""

    verbose = False

    def __init__(self, index: Index, positional: bool = True) -> None:
        self._index = index
        self.index = index
        self._positional = positional  # ids are positions 0..ntotal-1, renumbered after removals
        self._renumbered = False       # positional, and the stored ids are no longer 0..ntotal-1
        self._sorted: Optional[np.ndarray] = None

    # -- properties FAISS code reads ----------------------------------------------------------------------
    @property
    def d(self) -> int:
        return self._index.dim

    @property
    def ntotal(self) -> int:
        return len(self._index)

    @property
    def metric_type(self) -> int:
        return metric_type(self._index.metric)

    @property
    def is_trained(self) -> bool:
        t = self._index.transform
        return self._index.is_trained and (t is None or t.is_fitted)

    # -- ids ----------------------------------------------------------------------------------------------
    def _changed(self) -> None:
        self._sorted = None

    def _stored_sorted(self) -> np.ndarray:
        if self._sorted is None:
            self._sorted = np.sort(self._index.ids())
        return self._sorted

    def _to_user(self, ids: np.ndarray) -> np.ndarray:
        """Stored ids -> the ids FAISS would report (positions when renumbered); -1 stays -1."""
        if not self._renumbered:
            return ids
        out = np.searchsorted(self._stored_sorted(), ids).astype(np.int64)
        out[ids < 0] = -1
        return out

    def _to_stored(self, ids: np.ndarray) -> np.ndarray:
        """User ids -> stored ids; ids that name no stored vector map to -1."""
        if not self._renumbered:
            return ids
        s = self._stored_sorted()
        ok = (ids >= 0) & (ids < len(s))
        return np.where(ok, s[np.where(ok, ids, 0)], -1)

    def _selected(self, sel: IDSelector) -> np.ndarray:
        """The stored ids the selector picks (by their user ids)."""
        if not self._renumbered and isinstance(sel, IDSelectorBatch):
            return sel.ids  # absent ids are ignored by search and remove alike
        stored = self._index.ids()
        return stored[sel._members(self._to_user(stored))]

    # -- FAISS methods ------------------------------------------------------------------------------------
    def train(self, x: Any) -> None:
        """Learns what the index needs (the PCA, the int8 ranges); a flat index needs nothing."""
        x = as_matrix(x, self.d, "x")
        if self._index.transform is not None or self._index.dtype == "int8":
            self._index.train(x)

    def add(self, x: Any) -> None:
        """Adds vectors with the next sequential ids (FAISS's numbering)."""
        self._index.add(x)
        self._changed()

    def add_with_ids(self, x: Any, ids: Any) -> None:
        """Adds vectors under the given ids (FAISS needs an IndexIDMap for this; simdex stores ids itself).
        From then on the index keeps the given ids rather than FAISS's positions."""
        if self._renumbered:
            raise ValueError("add_with_ids: this index renumbered its vectors after remove_ids (FAISS's flat "
                             "numbering); wrap an empty index in IndexIDMap to use your own ids")
        self._index.add(x, ids)
        self._positional = False
        self._changed()

    def _pad(self, scores: np.ndarray, ids: np.ndarray) -> np.ndarray:
        # FAISS writes -FLT_MAX (inner product) or +FLT_MAX (L2) where no result is; simdex writes -inf / +inf.
        fill = FLT_MAX if self._index.metric == "l2" else -FLT_MAX
        return np.where(ids < 0, np.float32(fill), scores).astype(np.float32, copy=False)

    def search(self, x: Any, k: int, *, params: Optional[SearchParameters] = None, D: Optional[np.ndarray] = None,
               I: Optional[np.ndarray] = None, **options: Any) -> Tuple[np.ndarray, np.ndarray]:  # noqa: E741
        """The k nearest (L2) or highest-scoring (inner product) vectors: ``(D, I)``, float32 and int64 (nq, k),
        padded with (+-FLT_MAX, -1) as FAISS pads. ``params=SearchParameters(sel=...)`` restricts the ids; D and
        I, when given, are filled in place and returned."""
        sel = getattr(params, "sel", None)
        allow = None if sel is None else self._selected(as_selector(sel))
        scores, ids = self._index.search(x, k, filter=allow, **options)
        scores, ids = self._pad(scores, ids), self._to_user(ids)
        if D is not None:
            D[...] = scores
            scores = D
        if I is not None:
            I[...] = ids
            ids = I
        return scores, ids

    def range_search(self, x: Any, radius: float, *, params: Optional[SearchParameters] = None
                     ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every vector within the radius: squared distance < radius under L2, score > radius under inner
        product. Returns ``(lims, D, I)`` as FAISS: query i's results are ``D[lims[i]:lims[i+1]]`` (nearest or
        best first), lims uint64 (nq + 1)."""
        q = as_matrix(x, self.d, "x")
        radius = float(radius)
        sel = getattr(params, "sel", None)
        allow = None if sel is None else self._selected(as_selector(sel))
        l2 = self._index.metric == "l2"
        found: list = [None] * len(q)
        pending, n = np.arange(len(q)), self.ntotal
        k = min(max(n, 1), 64)
        # top-k with the radius as threshold; queries whose k results all qualify ask again with 4k.
        while len(pending):
            cut = {"max_distance": radius} if l2 else {"min_score": radius}
            scores, ids = self._index.search(q[pending], k, filter=allow, **cut)
            full = (ids[:, -1] >= 0) & (k < n)
            for row in np.flatnonzero(~full):
                keep = (ids[row] >= 0) & ((scores[row] < radius) if l2 else (scores[row] > radius))
                found[pending[row]] = (scores[row][keep], ids[row][keep])
            pending, k = pending[full], min(n, 4 * k)
        lims = np.zeros(len(q) + 1, np.uint64)
        lims[1:] = np.cumsum([len(f[1]) for f in found]) if len(q) else []
        D = np.concatenate([f[0] for f in found]).astype(np.float32) if len(q) else np.zeros(0, np.float32)
        I = np.concatenate([f[1] for f in found]).astype(np.int64) if len(q) else np.zeros(0, np.int64)  # noqa: E741
        return lims, D, self._to_user(I)

    def _rows(self, stored: np.ndarray) -> np.ndarray:
        return self._index.reconstruct(stored)

    def reconstruct(self, key: int) -> np.ndarray:
        """The stored vector of id (or position) key, float32 (d,). IndexError when there is none."""
        stored = self._to_stored(as_ids([key], "key"))
        if stored[0] < 0:
            raise IndexError(f"reconstruct: no vector has id {key}")
        return self._rows(stored)[0]

    def reconstruct_n(self, i0: int = 0, ni: Optional[int] = None) -> np.ndarray:
        """The vectors at positions i0 .. i0 + ni - 1, float32 (ni, d), in FAISS's order (by id)."""
        s = self._stored_sorted()
        ni = len(s) - i0 if ni is None else ni
        if i0 < 0 or ni < 0 or i0 + ni > len(s):
            raise IndexError(f"reconstruct_n: positions {i0}..{i0 + ni - 1} are outside 0..{len(s) - 1}")
        return self._rows(s[i0:i0 + ni]) if ni else np.zeros((0, self.d), np.float32)

    def remove_ids(self, sel: Any) -> int:
        """Removes the selected ids (an IDSelector, or an array of ids); returns how many were removed. A
        positional index renumbers the rest, as FAISS's flat index does."""
        removed = self._index.remove(self._selected(as_selector(sel)))
        if removed and self._positional:
            self._renumbered = True
        self._changed()
        return removed

    def reset(self) -> None:
        self._index.reset()
        self._renumbered = False
        self._changed()

    def _tag(self) -> dict:
        return {"class": type(self).__name__, "positional": self._positional}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(d={self.d}, ntotal={self.ntotal}, metric={self._index.metric!r})"


class IndexFlat(FaissIndex):
    """Exact search, ``IndexFlat(d, metric=METRIC_L2)``: squared L2 distances (nearest first) or inner
    products (highest first)."""

    def __init__(self, d: int, metric: Any = METRIC_L2) -> None:
        super().__init__(Index(d, metric=metric_name(metric)))


class IndexFlatL2(IndexFlat):
    """Exact squared-L2 search."""

    def __init__(self, d: int) -> None:
        super().__init__(d, METRIC_L2)


class IndexFlatIP(IndexFlat):
    """Exact inner-product search."""

    def __init__(self, d: int) -> None:
        super().__init__(d, METRIC_INNER_PRODUCT)


class IndexFlatCosine(IndexFlatIP):
    """Like :class:`IndexFlatIP`, but vectors and queries are L2-normalized (cosine similarity); simdex only."""

    def __init__(self, d: int) -> None:
        FaissIndex.__init__(self, Index(d, metric="cosine"))


class IndexScalarQuantizer(FaissIndex):
    """int8 codes, one byte per dimension: ``IndexScalarQuantizer(d, ScalarQuantizer.QT_8bit, metric)``
    (metric default METRIC_L2, as FAISS). Ranges per dimension are learned by ``train`` (or the first add) and
    then fixed. Scores come from integer SIMD kernels; under L2 each result's distance is exact to the decoded
    vector. ``keep_originals=True`` also keeps the float vectors, so ``search(x, k, rescore=R)`` returns exact
    scores (simdex only)."""

    def __init__(self, d: int, qtype: Any = ScalarQuantizer.QT_8bit, metric: Any = METRIC_L2,
                 keep_originals: bool = False) -> None:
        if qtype not in (ScalarQuantizer.QT_8bit, ScalarQuantizer.QT_8bit_uniform, "QT_8bit", "QT_8bit_uniform"):
            raise ValueError(f"qtype: only 8-bit quantization (ScalarQuantizer.QT_8bit) is supported, got {qtype!r}")
        super().__init__(Index(d, metric=metric_name(metric), dtype="int8", keep_originals=keep_originals))

    def search(self, x: Any, k: int, rescore: Optional[int] = None, **kw: Any) -> Tuple[np.ndarray, np.ndarray]:
        return super().search(x, k, rescore=rescore, **kw)


class IndexPreTransform(FaissIndex):
    """A PCA applied to vectors and queries before a flat or int8 index, as FAISS's ``"PCA<n>,Flat"`` /
    ``"PCA<n>,SQ8"`` (index_factory builds it). Both sides are centered and projected (``PCA(center="both")``),
    so reduced scores are FAISS's. ``train`` fits the PCA (the first add does, if not trained)."""

    def __init__(self, d: int, out_dim: int, metric: Any = METRIC_L2, dtype: str = "float32") -> None:
        pca = PCA(out_dim, center="both", precision="float32")
        super().__init__(Index(d, metric=metric_name(metric), dtype=dtype, transform=pca))

    def _rows(self, stored: np.ndarray) -> np.ndarray:
        # FAISS returns the input-space vector: the stored projection mapped back (mean + y W).
        t = self._index.transform
        y = self._index.reconstruct(stored).astype(np.float64)
        return (y @ t.components_.astype(np.float64) + t.mean_).astype(np.float32)


class IndexIDMap(FaissIndex):
    """Gives an empty index your own int64 ids: ``IndexIDMap(IndexFlatL2(d))`` then ``add_with_ids(x, ids)``;
    search returns them. ``index`` is the wrapped index; ``id_map`` the stored ids in storage order."""

    def __init__(self, index: FaissIndex) -> None:
        if not isinstance(index, FaissIndex) or isinstance(index, IndexIDMap):
            raise TypeError(f"{type(self).__name__}: expected a simdex FAISS-style index to wrap (IndexFlatL2, "
                            f"IndexScalarQuantizer, ...), got {type(index).__name__}")
        if index.ntotal:
            raise ValueError(f"{type(self).__name__}: the wrapped index must be empty, it holds {index.ntotal} "
                             "vectors")
        super().__init__(index._index, positional=False)
        self.index = index
        index._positional = False

    @property
    def id_map(self) -> np.ndarray:
        return self._index.ids()

    def add(self, x: Any) -> None:
        raise RuntimeError(f"add does not work on {type(self).__name__}: use add_with_ids(x, ids)")

    def add_with_ids(self, x: Any, ids: Any) -> None:
        self._index.add(x, as_ids(ids, "ids"))
        self._changed()

    def train(self, x: Any) -> None:
        self.index.train(x)

    def _rows(self, stored: np.ndarray) -> np.ndarray:
        return self.index._rows(stored)

    def _tag(self) -> dict:
        return {"class": type(self).__name__, "positional": False, "inner": type(self.index).__name__}


class IndexIDMap2(IndexIDMap):
    """:class:`IndexIDMap` (FAISS's IndexIDMap2 adds reconstruct by id, which both have here)."""


def knn(xq: Any, xb: Any, k: int, metric: Any = METRIC_L2) -> Tuple[np.ndarray, np.ndarray]:
    """Brute-force k nearest neighbours of xq among xb, as ``faiss.knn``: ``(D, I)`` with I the row numbers of
    xb (squared L2 by default)."""
    xb = np.asarray(xb)
    index = IndexFlat(xb.shape[-1] if xb.ndim else 0, metric)
    index.add(xb)
    return index.search(xq, as_k(k))
