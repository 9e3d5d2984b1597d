"""FAISS-style names over simdex indexes, so code written for ``faiss.IndexFlatIP`` or
``faiss.IndexScalarQuantizer(d, QT_8bit, METRIC_INNER_PRODUCT)`` runs unchanged.

Differences from FAISS: ids stay stable after ``remove_ids`` (FAISS's flat index renumbers), and
``search`` releases the GIL and uses simdex's kernels. The scalar quantizer scores int8 codes with integer
SIMD instead of decoding them to float, and keeps its calibration fixed after the first ``train``/``add``.
"""

from __future__ import annotations

import os
from typing import Any, Tuple

import numpy as np

from ._index import Index
from .text.persist import load  # read_index is simdex.load: the texts beside the file come too


class IndexFlatIP:
    """Exact inner-product index with the FAISS ``IndexFlatIP`` surface: ``add``, ``add_with_ids``,
    ``search(x, k) -> (D, I)``, ``remove_ids``, ``reset``, ``ntotal``, ``d``."""

    metric = "ip"

    def __init__(self, d: int) -> None:
        self.index = Index(d, metric=self.metric)

    @classmethod
    def _wrap(cls, index: Index) -> "IndexFlatIP":
        self = cls.__new__(cls)
        self.index = index
        return self

    @property
    def d(self) -> int:
        return self.index.dim

    @property
    def ntotal(self) -> int:
        return len(self.index)

    is_trained = True

    def add(self, x: Any) -> None:
        self.index.add(x)

    def add_with_ids(self, x: Any, ids: Any) -> None:
        self.index.add(x, ids)

    def search(self, x: Any, k: int) -> Tuple[np.ndarray, np.ndarray]:
        scores, ids = self.index.search(x, k)
        return scores, ids

    def remove_ids(self, ids: Any) -> int:
        return self.index.remove(ids)

    def reset(self) -> None:
        self.index.reset()


class IndexFlatCosine(IndexFlatIP):
    """Like :class:`IndexFlatIP`, but vectors and queries are L2-normalized (cosine similarity)."""

    metric = "cosine"


# FAISS's constant values, so code passing them (or their names) keeps working.
METRIC_INNER_PRODUCT = 0
METRIC_L2 = 1


class ScalarQuantizer:
    """Holds the quantizer-type constants FAISS code refers to as ``ScalarQuantizer.QT_8bit``."""

    QT_8bit = 0
    QT_8bit_uniform = 2


class IndexScalarQuantizer(IndexFlatIP):
    """int8 scalar-quantized index with the FAISS ``IndexScalarQuantizer`` surface: ``train``, ``is_trained``,
    ``add``, ``add_with_ids``, ``search(x, k) -> (D, I)``, ``remove_ids``, ``reset``, ``ntotal``, ``d``.

    Args:
        d: vector dimension.
        qtype: ``ScalarQuantizer.QT_8bit`` (or ``QT_8bit_uniform``, or their names): 8 bits per dimension is
            the only type; per-dimension ranges are always used.
        metric: ``METRIC_INNER_PRODUCT`` / ``"ip"``, or ``"cosine"`` (vectors and queries L2-normalized).
            ``METRIC_L2`` is refused: simdex ranks by inner product (normalize and use cosine instead).
        keep_originals: also keep the float vectors, so ``search(x, k, rescore=R)`` can return exact scores.
    """

    def __init__(self, d: int, qtype: Any = ScalarQuantizer.QT_8bit, metric: Any = METRIC_INNER_PRODUCT,
                 keep_originals: bool = False) -> None:
        if qtype not in (ScalarQuantizer.QT_8bit, ScalarQuantizer.QT_8bit_uniform, "QT_8bit", "QT_8bit_uniform"):
            raise ValueError(f"qtype: only 8-bit quantization (ScalarQuantizer.QT_8bit) is supported, got {qtype!r}")
        if isinstance(metric, bool):
            raise TypeError("metric: expected METRIC_INNER_PRODUCT, 'ip' or 'cosine', got a bool")
        if metric in (METRIC_INNER_PRODUCT, "ip"):
            name = "ip"
        elif metric == "cosine":
            name = "cosine"
        elif metric == METRIC_L2:
            raise ValueError("METRIC_L2 is not supported: simdex ranks by inner product; L2-normalize the vectors "
                             "and use metric='cosine' (same ranking as L2 on unit vectors)")
        else:
            raise ValueError(f"metric: expected METRIC_INNER_PRODUCT, 'ip' or 'cosine', got {metric!r}")
        self.index = Index(d, metric=name, dtype="int8", keep_originals=keep_originals)

    @property
    def metric(self) -> str:  # type: ignore[override]
        return self.index.metric

    @property
    def is_trained(self) -> bool:  # type: ignore[override]
        return self.index.is_trained

    def train(self, x: Any) -> None:
        self.index.train(x)

    def search(self, x: Any, k: int, rescore: Any = None) -> Tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        scores, ids = self.index.search(x, k, rescore=rescore)
        return scores, ids


def write_index(index: Any, path: "str | os.PathLike[str]") -> None:
    """Saves a simdex index (or a FAISS-style wrapper of one) to path."""
    (index.index if isinstance(index, IndexFlatIP) else index).save(path)


def read_index(path: "str | os.PathLike[str]") -> Any:
    """Loads an index file; FAISS-style wrappers come back as :class:`IndexFlatIP` / :class:`IndexFlatCosine`,
    or :class:`IndexScalarQuantizer` for an int8 index."""
    index = load(path)
    if index.dtype == "int8":
        return IndexScalarQuantizer._wrap(index)
    return (IndexFlatIP if index.metric == "ip" else IndexFlatCosine)._wrap(index)
