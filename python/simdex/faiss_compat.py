"""FAISS-style names over simdex indexes, so code written for ``faiss.IndexFlatIP`` runs unchanged.

Differences from FAISS: ids stay stable after ``remove_ids`` (FAISS's flat index renumbers), and
``search`` releases the GIL and uses simdex's kernels.
"""

from __future__ import annotations

import os
from typing import Any, Tuple

import numpy as np

from ._index import Index, load


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


def write_index(index: Any, path: "str | os.PathLike[str]") -> None:
    """Saves a simdex index (or a FAISS-style wrapper of one) to path."""
    (index.index if isinstance(index, IndexFlatIP) else index).save(path)


def read_index(path: "str | os.PathLike[str]") -> Any:
    """Loads an index file; FAISS-style wrappers come back as :class:`IndexFlatIP` / :class:`IndexFlatCosine`."""
    index = load(path)
    return (IndexFlatIP if index.metric == "ip" else IndexFlatCosine)._wrap(index)
