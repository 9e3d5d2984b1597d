"""FAISS's inverted-file names over a partitioned `simdex.Index` (docs/ivf.md): ``IndexIVFFlat``,
``IndexIVFScalarQuantizer``, the ``nprobe`` attribute, ``SearchParametersIVF`` and the ``"IVF<n>,Flat"`` /
``"IVF<n>,SQ8"`` factory strings.

The coarse quantizer FAISS asks for is accepted for compatibility (its ``d`` must match) but not used: simdex
learns and keeps the centroids inside the index. As in FAISS, ``nprobe`` starts at 1 and ``train`` must run
before ``add``.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from .._index import Index
from .._validate import as_dim, as_positive_int
from ._common import METRIC_L2, ScalarQuantizer, SearchParameters, metric_name
from ._factory import register_index_type
from ._indexes import FaissIndex, IndexPreTransform


class IndexIVF(FaissIndex):
    """What the IVF classes share: ``nlist``, ``nprobe``, ``is_trained`` and nprobe in search parameters."""

    def _setup(self, quantizer: Any, d: int, nlist: int, metric: Any, dtype: str) -> None:
        d = as_dim(d)
        nlist = as_positive_int(nlist, "nlist")
        qd = getattr(quantizer, "d", d)
        if quantizer is not None and qd != d:
            raise ValueError(f"the quantizer has d = {qd}, the index d = {d}")
        index = Index(d, metric=metric_name(metric), dtype=dtype, partitions=nlist)
        index.nprobe = 1  # FAISS's default
        FaissIndex.__init__(self, index)

    @property
    def nlist(self) -> int:
        return self._index.partitions

    @property
    def nprobe(self) -> int:
        return self._index.nprobe

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        # FAISS clamps nprobe to nlist; so does this.
        self._index.nprobe = min(as_positive_int(value, "nprobe"), self.nlist)

    @property
    def is_trained(self) -> bool:
        return bool(self._index._core.partitions_trained) and super().is_trained

    def train(self, x: Any) -> None:
        """k-means centroids (and, for SQ8, the int8 ranges) from x."""
        self._index.train(x)

    def add(self, x: Any) -> None:
        if not self.is_trained:
            raise ValueError("this IVF index is not trained: call train(x) before add, as FAISS requires")
        super().add(x)

    def add_with_ids(self, x: Any, ids: Any) -> None:
        if not self.is_trained:
            raise ValueError("this IVF index is not trained: call train(x) before add_with_ids, as FAISS requires")
        super().add_with_ids(x, ids)

    def search(self, x: Any, k: int, *, params: Optional[SearchParameters] = None, **options: Any):
        nprobe = getattr(params, "nprobe", None)
        if nprobe is not None:
            options["nprobe"] = min(as_positive_int(nprobe, "nprobe"), self.nlist)
        return super().search(x, k, params=params, **options)


class IndexIVFFlat(IndexIVF):
    """``IndexIVFFlat(quantizer, d, nlist, metric=METRIC_L2)``: float32 vectors in nlist partitions."""

    def __init__(self, quantizer: Any, d: int, nlist: int, metric: Any = METRIC_L2) -> None:
        self._setup(quantizer, d, nlist, metric, "float32")


class IndexIVFScalarQuantizer(IndexIVF):
    """``IndexIVFScalarQuantizer(quantizer, d, nlist, qtype=QT_8bit, metric=METRIC_L2)``: int8 codes (simdex's
    own per-dimension ranges, as IndexScalarQuantizer) in nlist partitions."""

    def __init__(self, quantizer: Any, d: int, nlist: int, qtype: Any = ScalarQuantizer.QT_8bit,
                 metric: Any = METRIC_L2, *args: Any) -> None:
        if qtype != ScalarQuantizer.QT_8bit:
            raise ValueError("IndexIVFScalarQuantizer: simdex supports qtype ScalarQuantizer.QT_8bit only")
        self._setup(quantizer, d, nlist, metric, "int8")


class SearchParametersIVF(SearchParameters):
    """``SearchParametersIVF(nprobe=..., sel=...)``."""

    def __init__(self, sel: Any = None, nprobe: Optional[int] = None, **options: Any) -> None:
        super().__init__(sel, **options)
        self.nprobe = nprobe


def _ivf(dtype: str):
    def build(d: int, m: "re.Match[str]", metric: Any, pca: Optional[int]) -> FaissIndex:
        nlist = int(m.group(1))
        if pca is None:
            cls = IndexIVFFlat if dtype == "float32" else IndexIVFScalarQuantizer
            return cls(None, d, nlist, metric)
        out = IndexPreTransform(d, pca, metric, dtype)
        index = Index(d, metric=metric_name(metric), dtype=dtype, transform=out._index.transform, partitions=nlist)
        index.nprobe = 1
        FaissIndex.__init__(out, index)
        return out
    return build


register_index_type(r"IVF(\d+),Flat", _ivf("float32"), "IVF<nlist>,Flat")
register_index_type(r"IVF(\d+),SQ8", _ivf("int8"), "IVF<nlist>,SQ8")
