"""The partitioned (inverted-file) side of `simdex.Index` (docs/ivf.md): training the centroids with a progress
bar, `tune` (the smallest nprobe that reaches a recall target on the user's own queries), `stats` and
`rebalance`. `Index` calls these; the scan itself is C++ (cpp/src/ivf_scan.cpp)."""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from ._validate import as_k, as_matrix, as_positive_int

if TYPE_CHECKING:
    from ._index import Index

#: Fewer training vectors per partition than this give unstable centroids (k-means needs a few dozen per cluster).
MIN_ROWS_PER_PARTITION = 39
#: Training reads at most this many vectors per partition (an evenly drawn sample of the rest is skipped).
MAX_ROWS_PER_PARTITION = 256
#: k-means iterations.
ITERATIONS = 10
#: Multiply-adds of a training run above which a progress bar is shown (about a second of work here).
_PROGRESS_WORK = 2e10


def as_partitions(partitions: Any) -> Optional[int]:
    """Validates ``Index(partitions=...)``: None (exact) or a positive int."""
    if partitions is None:
        return None
    return as_positive_int(partitions, "partitions")


def as_nprobe(nprobe: Any) -> int:
    """``search(nprobe=...)`` as the core takes it: 0 (the index's default) for None, else a positive int. The core
    checks it against the partitions (and refuses it on an exact index)."""
    return 0 if nprobe is None else as_positive_int(nprobe, "nprobe")


def train_partitions(index: "Index", x: np.ndarray, *, seed: int = 1234, show_progress: Optional[bool] = None) -> None:
    """k-means on x (as the index stores it: projected by the transform) into the index's partitions."""
    p = index.partitions
    if x.shape[0] < p:
        raise ValueError(f"training {p} partitions needs at least {p} vectors ({MIN_ROWS_PER_PARTITION * p} or more "
                         f"give stable centroids), got {x.shape[0]}; train on a larger sample or use fewer partitions")
    if x.shape[0] < MIN_ROWS_PER_PARTITION * p:
        warnings.warn(f"training {p} partitions on {x.shape[0]} vectors (fewer than {MIN_ROWS_PER_PARTITION} per "
                      "partition): centroids may be unstable; train on a larger sample or use fewer partitions",
                      UserWarning, stacklevel=3)
    rows = min(x.shape[0], MAX_ROWS_PER_PARTITION * p)
    work = float(rows) * p * x.shape[1] * (ITERATIONS + 1)
    if show_progress is None:
        show_progress = work >= _PROGRESS_WORK
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=ITERATIONS + 1, desc=f"k-means ({p} partitions)", unit="step")

    def progress(done: int, total: int) -> None:
        if bar is not None:
            bar.n = done + 1
            bar.refresh()

    try:
        index._core.train_partitions(x, ITERATIONS, MAX_ROWS_PER_PARTITION, int(seed), progress)
    finally:
        if bar is not None:
            bar.close()


def stats(index: "Index") -> dict:
    """List sizes and balance of a partitioned index (see `Index.stats`)."""
    sizes = index._core.list_sizes()
    n = int(sizes.sum())
    p = len(sizes)
    # FAISS's imbalance factor: the expected list length a query meets over the mean length; 1.0 when even.
    imbalance = float(p * np.square(sizes, dtype=np.float64).sum() / n**2) if n else 1.0
    return {
        "partitions": p,
        "trained": bool(index._core.partitions_trained),
        "vectors": n,
        "nprobe": int(index._core.nprobe),
        "list_sizes": sizes,
        "min": int(sizes.min()) if p else 0,
        "max": int(sizes.max()) if p else 0,
        "mean": n / p if p else 0.0,
        "empty": int((sizes == 0).sum()),
        "imbalance": imbalance,
    }


def rebalance(index: "Index", *, seed: int = 1234, show_progress: Optional[bool] = None) -> None:
    """Retrains the centroids on the stored vectors and moves every vector to its nearest new centroid; ids,
    vectors and the default nprobe stay."""
    ids = index.ids()
    if len(ids) < index.partitions:
        raise ValueError(f"rebalance: {len(ids)} stored vectors are fewer than the {index.partitions} partitions")
    take = min(len(ids), MAX_ROWS_PER_PARTITION * index.partitions)
    pick = np.sort(np.random.default_rng(seed).choice(len(ids), size=take, replace=False))
    train_partitions(index, index._core.reconstruct(ids[pick]), seed=seed, show_progress=show_progress)


def tune(index: "Index", queries: Any, target_recall: float = 0.95, k: int = 10, *,
         rescore: Optional[int] = None, max_queries: int = 1000, seed: int = 0) -> list:
    """Finds the smallest nprobe whose recall@k reaches `target_recall` (see `Index.tune`)."""
    if not index.partitions:
        raise ValueError("tune applies to a partitioned index (simdex.Index(..., partitions=N))")
    if isinstance(target_recall, bool) or not isinstance(target_recall, (int, float)) or not 0 < target_recall <= 1:
        raise ValueError(f"target_recall must be a number in (0, 1], got {target_recall!r}")
    if len(index) == 0:
        raise ValueError("tune: the index is empty; add vectors first")
    q = np.asarray(queries)
    if q.ndim != 2 or q.shape[0] == 0:
        raise ValueError(f"tune: expected a (nq, {index.dim}) array of queries with nq >= 1, got shape {q.shape}")
    max_queries = as_positive_int(max_queries, "max_queries")
    if q.shape[0] > max_queries:
        q = q[np.sort(np.random.default_rng(seed).choice(q.shape[0], size=max_queries, replace=False))]
    p = index.partitions
    truth = index.search(q, k, nprobe=p, rescore=rescore).ids  # every partition probed: the exact result

    def measure(nprobe: int) -> dict:
        t0 = time.perf_counter()
        found = index.search(q, k, nprobe=nprobe, rescore=rescore).ids
        seconds = time.perf_counter() - t0
        hits = sum(len(np.intersect1d(a[a >= 0], b[b >= 0])) for a, b in zip(found, truth))
        wanted = int((truth >= 0).sum())
        return {"nprobe": nprobe, "recall": hits / wanted if wanted else 1.0,
                "ms_per_query": 1e3 * seconds / q.shape[0]}

    curve: dict = {}
    # Doubling until the target is met, then bisection between the last two (recall grows with nprobe).
    lo, hi = 0, 1
    while True:
        curve[hi] = measure(hi)
        if curve[hi]["recall"] >= target_recall or hi == p:
            break
        lo, hi = hi, min(p, 2 * hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        curve[mid] = measure(mid)
        if curve[mid]["recall"] >= target_recall:
            hi = mid
        else:
            lo = mid
    index._core.nprobe = hi
    return [curve[n] for n in sorted(curve)]


class PartitionedMixin:
    """`Index`'s partition methods and properties (0 partitions: the exact index)."""

    _core: Any
    dim: int

    @property
    def partitions(self) -> int:
        """Number of partitions of an inverted-file index; 0 for the exact index."""
        return int(self._core.partitions)

    @property
    def nprobe(self) -> int:
        """Partitions a search scans when it names none: the value :meth:`tune` stored (saved with the index),
        else ``max(1, partitions // 16)``. Settable. 0 for the exact index."""
        return int(self._core.nprobe)

    @nprobe.setter
    def nprobe(self, value: int) -> None:
        self._core.nprobe = as_nprobe(value)

    def tune(self, queries: Any, target_recall: float = 0.95, k: int = 10, *, rescore: Optional[int] = None,
             max_queries: int = 1000) -> list:
        """Measures recall@k against an exhaustive search (nprobe=partitions) on a sample of your own queries
        (at most max_queries), stores the smallest nprobe that reaches ``target_recall`` as :attr:`nprobe` (saved
        with the index) and returns the measured curve: a list of ``{"nprobe", "recall", "ms_per_query"}``."""
        q = as_matrix(queries, self.dim, "queries")
        return tune(self, q, target_recall, as_k(k), rescore=rescore, max_queries=max_queries)

    def stats(self) -> dict:
        """Partition balance: ``list_sizes`` (vectors per partition), min / max / mean, ``empty`` and
        ``imbalance`` (the mean list length a vector sees over the mean length; 1.0 when even, FAISS's imbalance
        factor). :meth:`rebalance` retrains when it has drifted."""
        if not self.partitions:
            raise ValueError("stats applies to a partitioned index (simdex.Index(..., partitions=N))")
        return stats(self)

    def rebalance(self, *, seed: int = 1234) -> None:
        """Retrains the centroids on the stored vectors and moves every vector to its nearest new centroid; ids,
        vectors and :attr:`nprobe` stay. ValueError on a memory-mapped index."""
        if not self.partitions:
            raise ValueError("rebalance applies to a partitioned index (simdex.Index(..., partitions=N))")
        rebalance(self, seed=seed)
