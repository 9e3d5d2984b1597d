"""Reciprocal rank fusion (RRF): one ranking out of several, using only the ranks.

A document at rank r (from 1) of ranking i earns ``w_i / (rrf_k + r)``; its fused score is the sum over the
rankings that hold it (a ranking that lacks it adds nothing), and the fused ranking sorts by that score, ties to the
lower id. Scores of different kinds (cosine similarities, BM25) never meet, so nothing needs calibrating; ``rrf_k``
(60 in Cormack, Clarke & Buettcher, SIGIR 2009) flattens the head: larger values give lower ranks more say.

    ids, scores = reciprocal_rank_fusion([dense_ids, bm25_ids], k=10)            # rrf_k=60, equal weights
    ids, scores = RRF(rrf_k=30, weights=(1.0, 0.5)).fuse([dense_ids, bm25_ids], k=10)

`simdex.text.search_text(..., mode="rrf")` fuses the vector search with BM25 this way, and `simdex.evaluate`
measures it as the ``+rrf`` variants.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .._validate import as_k

#: The default ``rrf_k`` (the constant of the original paper).
RRF_K = 60.0


def as_rrf_k(rrf_k: Any) -> float:
    """rrf_k as a float: a finite real number >= 0 (0 gives plain 1 / rank)."""
    if isinstance(rrf_k, bool) or not isinstance(rrf_k, numbers.Real):
        raise TypeError(f"rrf_k: expected a real number >= 0, got {type(rrf_k).__name__}")
    value = float(rrf_k)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"rrf_k: expected a finite number >= 0, got {rrf_k!r}")
    return value


def _as_ranking(ranking: Any, i: int) -> np.ndarray:
    if isinstance(ranking, (str, bytes)) or not hasattr(ranking, "__len__"):
        raise TypeError(f"rankings[{i}]: expected a 1-D sequence of integer ids, got {type(ranking).__name__}")
    arr = np.asarray(ranking)
    if arr.size == 0:
        return np.empty(0, np.int64)
    if arr.ndim != 1:
        raise ValueError(f"rankings[{i}]: expected a 1-D sequence of ids, got shape {arr.shape}")
    if arr.dtype.kind not in "iu" or (arr.dtype.kind == "u" and arr.max() > np.iinfo(np.int64).max):
        raise TypeError(f"rankings[{i}]: expected integer ids (int64), got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.min() < 0:
        raise ValueError(f"rankings[{i}]: ids must be >= 0, got {int(arr.min())} (drop the -1 padding of "
                         "Index.search first)")
    if len(np.unique(arr)) != len(arr):
        raise ValueError(f"rankings[{i}]: an id appears twice; a ranking holds each id once")
    return arr


def _as_weights(weights: Any, n: int) -> List[float]:
    if weights is None:
        return [1.0] * n
    if isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__"):
        raise TypeError(f"weights: expected a sequence of {n} real numbers, got {type(weights).__name__}")
    if len(weights) != n:
        raise ValueError(f"weights: expected one weight per ranking ({n}), got {len(weights)}")
    out = []
    for i, w in enumerate(weights):
        if isinstance(w, bool) or not isinstance(w, numbers.Real):
            raise TypeError(f"weights[{i}]: expected a real number, got {type(w).__name__}")
        if not math.isfinite(float(w)) or w < 0:
            raise ValueError(f"weights[{i}]: expected a finite number >= 0, got {w!r}")
        out.append(float(w))
    if n and not any(out):
        raise ValueError("weights: at least one weight must be > 0")
    return out


def reciprocal_rank_fusion(rankings: Sequence[Any], k: int, rrf_k: float = RRF_K,
                           weights: Optional[Sequence[float]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Fuses rankings of ids (each best first) into the k best ids by RRF score.

    Args:
        rankings: a list of 1-D integer id sequences, best first; each holds an id at most once, ids >= 0. A
            ranking may be empty, and may be shorter or longer than the others.
        k: how many fused results to return (fewer when the rankings hold fewer distinct ids).
        rrf_k: the constant in ``w_i / (rrf_k + rank)``, a finite number >= 0.
        weights: one finite weight >= 0 per ranking (default all 1.0).

    Returns:
        (ids int64 (<= k,), scores float64 (<= k,)), best first; equal scores go to the lower id. A score is
        ``sum_i w_i / (rrf_k + rank_i)`` over the rankings that hold the id (ranks from 1), summed exactly
        (`math.fsum`), so the same terms in any order give the same score.

    Raises:
        TypeError, ValueError: rankings that are not lists of integer id sequences, a repeated or negative id, a
            bad k, rrf_k or weights.
    """
    if isinstance(rankings, (str, bytes, np.ndarray)) or not isinstance(rankings, Sequence):
        raise TypeError(f"rankings: expected a list of id sequences, got {type(rankings).__name__}")
    k = as_k(k)
    c = as_rrf_k(rrf_k)
    lists = [_as_ranking(r, i) for i, r in enumerate(rankings)]
    w = _as_weights(weights, len(lists))
    terms: Dict[int, List[float]] = {}
    for ranking, wi in zip(lists, w):
        for rank, doc in enumerate(ranking.tolist(), start=1):
            # rrf_k = 0 and rank >= 1: the denominator is never 0.
            terms.setdefault(doc, []).append(wi / (c + rank))
    if not terms:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    ids = np.fromiter(terms, np.int64, len(terms))
    scores = np.fromiter((math.fsum(t) for t in terms.values()), np.float64, len(terms))
    order = np.lexsort((ids, -scores))[:k]  # by score descending, then id ascending
    return ids[order], scores[order]


@dataclass(frozen=True)
class RRF:
    """Reciprocal rank fusion as a strategy object: ``RRF(rrf_k=60).fuse([dense_ids, bm25_ids], k)``."""

    rrf_k: float = RRF_K
    weights: Optional[Tuple[float, ...]] = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "rrf_k", as_rrf_k(self.rrf_k))
        if self.weights is not None:
            n = len(self.weights) if hasattr(self.weights, "__len__") else -1
            object.__setattr__(self, "weights", tuple(_as_weights(self.weights, n)))

    def fuse(self, rankings: Sequence[Any], k: int) -> Tuple[np.ndarray, np.ndarray]:
        """`reciprocal_rank_fusion` with this object's rrf_k and weights."""
        return reciprocal_rank_fusion(rankings, k, self.rrf_k, self.weights)
