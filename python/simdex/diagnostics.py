"""Query diagnostics: how much a query's best result stands out, and flags for queries likely to fail.

A query whose embedding is close to everything (semantic collapse) has a best score that is high in absolute
terms but ordinary for the corpus. The z-score of the best score against the distribution of that query's
scores over the whole corpus measures this without scoring every document: for corpus mean mu and
covariance S, the query's scores have mean q.mu and variance q'Sq.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Sequence

import numpy as np

from ._validate import as_matrix

MIN_WORDS = 3          # fewer words than this: flagged "short"
TIE_GAP = 0.02         # best minus k-th score below this: flagged "tied"
MIN_Z = 3.0            # best score fewer standard deviations above the corpus mean: flagged "unspecific"


@dataclass
class QueryDiagnostics:
    specificity: float   # z-score of the best score against this query's scores over the corpus
    gap: float           # best score minus the mean of the other returned scores
    flags: List[str]     # any of "short", "tied", "unspecific"


class CorpusStats:
    """Mean and covariance of (a sample of) the stored vectors, for query z-scores."""

    def __init__(self, vectors: np.ndarray) -> None:
        v = np.asarray(vectors, np.float64)
        if v.ndim != 2 or len(v) < 2:
            raise ValueError(f"vectors: expected at least 2 rows of shape (n, d), got {v.shape}")
        self.mean = v.mean(axis=0)
        self.cov = np.cov(v, rowvar=False)

    def z_scores(self, queries: np.ndarray, best: np.ndarray) -> np.ndarray:
        q = np.atleast_2d(np.asarray(queries, np.float64))
        mu = q @ self.mean
        var = np.einsum("qd,de,qe->q", q, self.cov, q)
        return (np.asarray(best, np.float64) - mu) / np.sqrt(np.maximum(var, 1e-24))


def diagnose(scores: np.ndarray, z: np.ndarray, texts: Optional[Sequence[str]] = None) -> List[QueryDiagnostics]:
    """Diagnostics for each query row of a search result (scores best first, -inf padding)."""
    out = []
    for r, row in enumerate(np.atleast_2d(scores)):
        live = row[np.isfinite(row)]
        flags = []
        if texts is not None and len(texts[r].split()) < MIN_WORDS:
            flags.append("short")
        gap = float(live[0] - live[1:].mean()) if len(live) > 1 else float("nan")
        if len(live) > 1 and live[0] - live[-1] < TIE_GAP:
            flags.append("tied")
        if len(live) and z[r] < MIN_Z:
            flags.append("unspecific")
        out.append(QueryDiagnostics(float(z[r]) if len(live) else float("nan"), gap, flags))
    return out


def search_diagnostics(index: Any, queries: Any, res: Any) -> List[QueryDiagnostics]:
    """``Index.search(..., diagnostics=True)``: diagnostics of each query of a search result, with the corpus
    statistics taken (and cached on the index) from up to 10,000 stored rows."""
    if index.metric == "l2":  # z-scores and gaps of similarities; distances rank the other way
        raise ValueError("diagnostics=True applies to similarity scores (metric 'cosine' or 'ip'), not 'l2'")
    q = as_matrix(queries, index.dim, "queries")
    qs = index._normalized(q) if index._transform is None else index._project(index._normalized(q), query=True)
    n = len(index)
    cached = getattr(index, "_diag_cache", None)
    if cached is None or cached[0] != n:
        ids = index.ids()
        sample = index._core.reconstruct(ids[:: max(1, len(ids) // 10_000)]) if len(ids) >= 2 else None
        cached = (n, CorpusStats(sample) if sample is not None else None)
        index._diag_cache = cached
    stats = cached[1]
    best = res.ids[:, 0]
    z = np.full(len(q), np.nan)
    if stats is not None and (best >= 0).any():
        found = best >= 0
        rows = index._core.reconstruct(best[found])  # the stored row: its score in the space the stats describe
        z[found] = stats.z_scores(qs[found], np.einsum("qd,qd->q", qs[found].astype(np.float64), rows))
    return diagnose(res.scores, z)
