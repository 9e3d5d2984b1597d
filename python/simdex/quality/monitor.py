"""A search-side monitor: rolling latency p50/p99, top-1 score and flagged-query rates, optional Prometheus export.

    mon = index.monitor(window=1000)               # or SearchMonitor(index, callback=print)
    scores, ids = mon.search(q, 10)                # index.search, timed and diagnosed
    mon.stats()                                    # {"searches", "latency ms p50", "latency ms p99", ...}
    mon = index.monitor(prometheus=True)           # simdex_search_* metrics in prometheus_client's registry

Each query gets the index's own diagnostics (`simdex.diagnostics`: "tied", "unspecific"), so a rising share of
unspecific queries, or a falling top-1 score, shows up here before anyone measures recall; `simdex.drift_report`
then says whether the query mix shifted or a different model is embedding the queries.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any, Callable, Dict, Optional

import numpy as np


class SearchMonitor:
    """Wraps an index's searches and keeps rolling figures over the last `window` queries.

    Args:
        index: a `simdex.Index`.
        window: how many recent queries the figures cover.
        callback: called after each search with a dict: ``queries``, ``seconds``, ``top1`` (list), ``flags``
            (a list of lists).
        prometheus: export ``simdex_search_latency_seconds`` (histogram), ``simdex_search_queries_total``,
            ``simdex_search_flagged_total`` (counter, label ``flag``) and ``simdex_search_top1_score`` (summary)
            through prometheus_client (the ``monitor`` extra); True uses its default registry, or pass a
            ``CollectorRegistry``.
        name: metric name prefix.

    Raises:
        ImportError: prometheus asked for and prometheus_client not installed.
    """

    def __init__(self, index: Any, window: int = 1000, callback: Optional[Callable[[dict], Any]] = None,
                 prometheus: Any = False, name: str = "simdex_search") -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise ValueError(f"window: expected a positive integer, got {window!r}")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback: expected a callable, got {type(callback).__name__}")
        self.index, self.window, self.callback = index, window, callback
        self._latency: deque = deque(maxlen=window)  # seconds per query
        self._top1: deque = deque(maxlen=window)
        self._flags: deque = deque(maxlen=window)
        self._count = 0
        self._lock = threading.Lock()
        self._metrics = _prometheus_metrics(prometheus, name) if prometheus is not False else None

    def search(self, queries: Any, k: int = 10, **options: Any) -> Any:
        """`Index.search` with the same arguments, timed and diagnosed; returns its (scores, ids)."""
        options.pop("diagnostics", None)
        t = time.perf_counter()
        res = self.index.search(queries, k, diagnostics=True, **options)
        seconds = time.perf_counter() - t
        self.observe(seconds, res.scores[:, 0], [d.flags for d in res.diagnostics])
        from .._index import SearchResult

        return SearchResult(res.scores, res.ids)

    def observe(self, seconds: float, top1: Any, flags: Any = None) -> None:
        """Records one search of len(top1) queries that took `seconds` (for searches made elsewhere, e.g.
        `search_text`); `flags` holds each query's diagnostic flags."""
        top = np.atleast_1d(np.asarray(top1, np.float64))
        nq = len(top)
        if nq == 0:
            return
        flags = [list(f) for f in flags] if flags is not None else [[] for _ in range(nq)]
        if len(flags) != nq:
            raise ValueError(f"flags: expected one list per query ({nq}), got {len(flags)}")
        per_query = seconds / nq
        with self._lock:
            self._count += nq
            for s, f in zip(top, flags):
                self._latency.append(per_query)
                self._top1.append(s)
                self._flags.append(tuple(f))
        if self._metrics is not None:
            latency, queries, flagged, score = self._metrics
            queries.inc(nq)
            for s, f in zip(top, flags):
                latency.observe(per_query)
                if np.isfinite(s):
                    score.observe(float(s))
                for name in f:
                    flagged.labels(flag=name).inc()
        if self.callback is not None:
            self.callback({"queries": nq, "seconds": seconds, "top1": top.tolist(), "flags": flags})

    def stats(self) -> Dict[str, Any]:
        """Figures over the last `window` queries: latency p50/p99 (ms, per query), top-1 score mean and p50, the
        share of queries with any flag and with each flag; ``searches`` counts every query seen."""
        with self._lock:
            lat = np.asarray(self._latency) * 1e3
            top = np.asarray(self._top1)
            flags = list(self._flags)
            count = self._count
        out: Dict[str, Any] = {"searches": count, "window": len(lat)}
        if not len(lat):
            return out
        live = top[np.isfinite(top)]
        out.update({
            "latency ms p50": float(np.percentile(lat, 50)), "latency ms p99": float(np.percentile(lat, 99)),
            "top-1 mean": float(live.mean()) if len(live) else float("nan"),
            "top-1 p50": float(np.median(live)) if len(live) else float("nan"),
            "flagged rate": float(np.mean([bool(f) for f in flags])),
        })
        for name in ("unspecific", "tied", "short"):
            out[f"{name} rate"] = float(np.mean([name in f for f in flags]))
        return out

    def reset(self) -> None:
        """Forgets the rolling window (the Prometheus counters keep counting)."""
        with self._lock:
            self._latency.clear()
            self._top1.clear()
            self._flags.clear()
            self._count = 0


def _prometheus_metrics(prometheus: Any, name: str) -> tuple:
    try:
        import prometheus_client as pc
    except ImportError:
        raise ImportError("prometheus export needs prometheus_client: pip install 'simdex[monitor]'") from None
    registry = pc.REGISTRY if prometheus is True else prometheus
    return (pc.Histogram(f"{name}_latency_seconds", "search latency per query", registry=registry,
                         buckets=(1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)),
            pc.Counter(f"{name}_queries", "queries searched", registry=registry),
            pc.Counter(f"{name}_flagged", "queries flagged by diagnostics", ["flag"], registry=registry),
            pc.Summary(f"{name}_top1_score", "best score of each query", registry=registry))
