"""`simdex.reduction_report`: what a dimensionality reduction costs in recall and buys in bytes and speed,
measured on your own vectors against exact full-dimension search."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import numpy as np

from .._index import Index
from .._validate import as_k
from ..transform import PCA, RandomProjection
from ..truncate import Truncate

# Transform names a report understands; a callable out_dim -> transform works too.
KINDS: Dict[str, Callable[[int], Any]] = {
    "pca": lambda d: PCA(d),
    "pca-both": lambda d: PCA(d, center="both"),
    "pca-none": lambda d: PCA(d, center="none"),
    "rp": lambda d: RandomProjection(d),
    "rp-gaussian": lambda d: RandomProjection(d, kind="gaussian"),
    "rp-sparse": lambda d: RandomProjection(d, kind="sparse"),
    "truncate": lambda d: Truncate(d),
}


@dataclass
class ReductionReport:
    """Rows of a reduction report: the full-dimension baseline first, then one per kind x dim.

    Each row: ``kind``, ``dim``, ``recall@k`` (share of the exact full-dimension top-k found), ``bytes/vec``
    (index memory per stored vector: vector, id and id lookup), ``fit s`` (training the transform),
    ``search ms`` (median time to search all queries as one batch) and ``qps`` (queries per second at that).
    """

    k: int
    rows: List[Dict[str, Any]] = field(default_factory=list)

    COLUMNS = [
        ("kind", "{}"),
        ("dim", "{}"),
        ("recall@k", "{:.4f}"),
        ("bytes/vec", "{:.0f}"),
        ("transform KB", "{:.0f}"),
        ("fit s", "{:.3f}"),
        ("search ms", "{:.2f}"),
        ("qps", "{:.0f}"),
    ]

    def table(self) -> str:
        """An aligned plain-text table (Markdown-compatible)."""
        head = [c.replace("@k", f"@{self.k}") for c, _ in self.COLUMNS]
        body = [
            [fmt.format(r[c]) if r.get(c) is not None else "-" for c, fmt in self.COLUMNS] for r in self.rows
        ]
        widths = [max([len(h)] + [len(b[i]) for b in body]) for i, h in enumerate(head)]

        def line(cells: Sequence[str]) -> str:
            return (
                "| "
                + " | ".join(
                    c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))
                )
                + " |"
            )

        return "\n".join(
            [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [line(b) for b in body]
        )

    def __str__(self) -> str:
        return self.table()

    def to_json(self, path: Optional[Union[str, os.PathLike]] = None) -> str:
        """The rows as JSON (written to path when given)."""
        text = json.dumps({"k": self.k, "rows": self.rows}, indent=2)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text


def _timed_search(index: Index, queries: np.ndarray, k: int, repeats: int):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = index.search(queries, k)
        times.append(time.perf_counter() - t0)
    return result, float(np.median(times))


def _bytes_per_vector(index: Index) -> tuple:
    fixed = sum(len(s[5]) for s in index._core.extra_sections())
    return (index.memory_usage() - fixed) / len(index), fixed / 1024


def _overlap(ids: np.ndarray, exact: np.ndarray) -> float:
    hits = [
        len(np.intersect1d(a[a >= 0], e[e >= 0])) / max(1, int(np.sum(e >= 0))) for a, e in zip(ids, exact)
    ]
    return float(np.mean(hits))


def reduction_report(
    vectors: Any,
    queries: Any,
    dims: Sequence[int] = (384, 256, 192),
    kinds: Sequence[Union[str, Callable[[int], Any]]] = ("pca", "rp"),
    k: int = 10,
    metric: str = "cosine",
    train: Any = None,
    repeats: int = 3,
    index_kwargs: Optional[dict] = None,
) -> ReductionReport:
    """Measures dimensionality reductions on real vectors against exact full-dimension search.

    For each kind and output dim, builds ``simdex.Index(dim, metric, transform=...)``, trains the transform
    (on ``train`` if given, else on the vectors themselves), adds the vectors, searches the queries and
    compares each top-k with the exact top-k of a full-dimension index.

    Args:
        vectors: the database, float array (n, dim).
        queries: float array (nq, dim), ideally real queries (their distribution matters: see PCA's
            ``center``).
        dims: output dimensions to try; those not below the input dimension are skipped.
        kinds: names from ``KINDS`` ("pca", "pca-both", "pca-none", "rp", "rp-gaussian", "rp-sparse",
            "truncate": the first dims of a Matryoshka embedding) or callables ``out_dim -> transform``.
        k: the k of recall@k.
        metric: the indexes' metric.
        train: optional training sample for the transforms.
        repeats: timed searches per index (the median is reported).
        index_kwargs: extra keyword arguments for every ``simdex.Index`` (e.g. ``dtype="int8"``).

    Returns:
        A :class:`ReductionReport`; ``print(report)`` shows the table.

    Raises:
        ValueError: unknown kind, empty or mismatched inputs.
    """
    k = as_k(k)
    x = np.asarray(vectors)
    q = np.asarray(queries)
    if x.ndim != 2 or q.ndim != 2 or x.shape[1] != q.shape[1] or len(x) == 0 or len(q) == 0:
        raise ValueError(
            f"vectors and queries: expected non-empty 2-D arrays with the same column count, got "
            f"shapes {x.shape} and {q.shape}"
        )
    makers = []
    for kind in kinds:
        if callable(kind):
            makers.append((getattr(kind, "__name__", "custom"), kind))
        elif kind in KINDS:
            makers.append((kind, KINDS[kind]))
        else:
            raise ValueError(f"kinds: expected names from {sorted(KINDS)} or callables, got {kind!r}")
    kwargs = dict(index_kwargs or {})
    dim = x.shape[1]
    report = ReductionReport(k=k)

    full = Index(dim, metric, **kwargs)
    full.add(x)
    exact, ms = _timed_search(full, q, k, repeats)
    per_vec, _ = _bytes_per_vector(full)
    report.rows.append(
        {
            "kind": "full",
            "dim": dim,
            "recall@k": _overlap(exact.ids, exact.ids),
            "bytes/vec": per_vec,
            "transform KB": None,
            "fit s": None,
            "search ms": ms * 1e3,
            "qps": len(q) / ms,
        }
    )
    for name, make in makers:
        for out_dim in dims:
            if out_dim >= dim:
                continue
            index = Index(dim, metric, transform=make(int(out_dim)), **kwargs)
            t0 = time.perf_counter()
            index.train(x if train is None else train)
            fit_s = time.perf_counter() - t0
            index.add(x)
            got, ms = _timed_search(index, q, k, repeats)
            per_vec, fixed_kb = _bytes_per_vector(index)
            report.rows.append(
                {
                    "kind": name,
                    "dim": int(out_dim),
                    "recall@k": _overlap(got.ids, exact.ids),
                    "bytes/vec": per_vec,
                    "transform KB": fixed_kb,
                    "fit s": fit_s,
                    "search ms": ms * 1e3,
                    "qps": len(q) / ms,
                }
            )
    return report
