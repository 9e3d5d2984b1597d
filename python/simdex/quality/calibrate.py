"""Score-threshold calibration: the ``min_score`` that reaches a precision (or recall) target on labeled queries.

    result = simdex.evaluate("corpus.jsonl", "queries.jsonl", variants=["float32"])
    cal = simdex.calibrate(result, target_precision=0.9)      # or simdex.calibrate(index, queries, encoder=...)
    print(cal); index.search(q, 10, min_score=cal.min_score)

Every hit in the top-k of every labeled query is a (score, relevant?) pair. Keeping the hits that score at least t
gives precision(t) = relevant kept / kept and recall(t) = relevant kept / all relevant documents (those the top-k
missed count as lost). The threshold is chosen on one part of the queries and measured on the held-out rest, so
the number printed is what a new query can expect, not what the threshold was fitted to. Cosine scores depend
on the model and the corpus: calibrate on your own data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np


@dataclass
class ScoredHits:
    """The top-k hits of labeled queries: ``scores`` (nq, k) float, best first, -inf where fewer than k came back;
    ``relevant`` (nq, k) bool; ``n_relevant`` (nq,) how many documents are relevant to each query."""

    scores: np.ndarray
    relevant: np.ndarray
    n_relevant: np.ndarray

    def __post_init__(self) -> None:
        self.scores = np.atleast_2d(np.asarray(self.scores, np.float64))
        self.relevant = np.atleast_2d(np.asarray(self.relevant, bool))
        self.n_relevant = np.asarray(self.n_relevant, np.int64).reshape(-1)
        if self.scores.shape != self.relevant.shape or len(self.n_relevant) != len(self.scores):
            raise ValueError(f"hits: scores {self.scores.shape}, relevant {self.relevant.shape} and n_relevant "
                             f"({len(self.n_relevant)},) must describe the same queries")
        if np.isnan(self.scores).any():
            raise ValueError("hits: scores hold NaN")
        if (self.relevant.sum(axis=1) > self.n_relevant).any():
            raise ValueError("hits: a query has more relevant hits than relevant documents")

    @classmethod
    def from_rankings(cls, ranked: Sequence[Sequence[Any]], scores: Sequence[Sequence[float]],
                      relevant: Sequence[Sequence[Any]], k: int) -> "ScoredHits":
        """From each query's ranked document ids, their scores and its relevant ids (at most k hits kept)."""
        s = np.full((len(ranked), k), -np.inf)
        rel = np.zeros((len(ranked), k), bool)
        for i, (docs, sc, good) in enumerate(zip(ranked, scores, relevant)):
            top, wanted = list(docs)[:k], set(good)
            s[i, :len(top)] = np.asarray(sc, np.float64)[:len(top)]
            rel[i, :len(top)] = [d in wanted for d in top]
        return cls(s, rel, np.array([len(set(g)) for g in relevant], np.int64))

    def __len__(self) -> int:
        return len(self.scores)

    def subset(self, rows: Any) -> "ScoredHits":
        return ScoredHits(self.scores[rows], self.relevant[rows], self.n_relevant[rows])

    def split(self, holdout: float, seed: int = 0) -> Tuple["ScoredHits", "ScoredHits"]:
        """(fit, held-out) by a seeded shuffle of the queries; ``holdout=0`` gives the same hits twice."""
        if holdout == 0:
            return self, self
        order = np.random.default_rng(seed).permutation(len(self))
        cut = len(self) - max(1, int(round(holdout * len(self))))
        if cut < 1:
            raise ValueError(f"holdout={holdout} leaves no query to fit on ({len(self)} queries)")
        return self.subset(np.sort(order[:cut])), self.subset(np.sort(order[cut:]))

    def relevant_scores(self) -> np.ndarray:
        return self.scores[self.relevant & np.isfinite(self.scores)]

    def other_scores(self) -> np.ndarray:
        return self.scores[~self.relevant & np.isfinite(self.scores)]


def pr_curve(hits: ScoredHits) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds descending, precision, recall) with one point per distinct score: keeping every hit that
    scores at least ``thresholds[i]`` gives ``precision[i]`` and ``recall[i]``."""
    live = np.isfinite(hits.scores)
    s, rel = hits.scores[live], hits.relevant[live]
    total = int(hits.n_relevant.sum())
    if len(s) == 0 or total == 0:
        raise ValueError("calibration needs at least one hit and one relevant document")
    order = np.argsort(-s, kind="stable")
    s, rel = s[order], rel[order]
    kept_rel = np.cumsum(rel)
    # A threshold keeps every hit with an equal score, so each point is the last of its run of ties.
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]
    kept = last + 1
    return s[last], kept_rel[last] / kept, kept_rel[last] / total


def measure(hits: ScoredHits, min_score: float) -> Dict[str, float]:
    """Precision, recall, the share and number of hits kept when hits scoring below min_score are dropped, and the
    standard error of that precision (binomial: a precision measured on few kept hits is a rough one)."""
    keep = np.isfinite(hits.scores) & (hits.scores >= min_score)
    kept, good = int(keep.sum()), int((keep & hits.relevant).sum())
    total = int(hits.n_relevant.sum())
    p = good / kept if kept else float("nan")
    return {"precision": p, "recall": good / total if total else float("nan"),
            "kept": kept / max(1, int(np.isfinite(hits.scores).sum())), "hits kept": kept, "queries": len(hits),
            "precision se": math.sqrt(p * (1 - p) / kept) if kept else float("nan")}


@dataclass
class Calibration:
    """A chosen ``min_score``, what it gave on the queries it was fitted to (``fit``) and on the held-out ones
    (``holdout``: precision, recall, kept share), and the precision/recall curve of the fit queries."""

    target: str                   # "precision" or "recall"
    value: float                  # the target value
    min_score: float
    fit: Dict[str, float]
    holdout: Dict[str, float]
    thresholds: np.ndarray = field(repr=False)
    precision: np.ndarray = field(repr=False)
    recall: np.ndarray = field(repr=False)
    label: str = ""

    def lines(self) -> List[str]:
        head = f"calibration{' ' + self.label if self.label else ''}: {self.target} >= {self.value:g}"
        f, h = self.fit, self.holdout
        return [head,
                f"  min_score {self.min_score:.4f}",
                f"  fitted on {f['queries']} queries: precision {f['precision']:.3f}, recall {f['recall']:.3f}, "
                f"hits kept {f['kept']:.1%}",
                f"  held out  {h['queries']} queries: precision {h['precision']:.3f} (+/- {h['precision se']:.3f} "
                f"over {h['hits kept']} hits), recall {h['recall']:.3f}, hits kept {h['kept']:.1%}"]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def as_dict(self) -> Dict[str, Any]:
        return {"target": self.target, "value": self.value, "min_score": self.min_score, "label": self.label,
                "fit": self.fit, "holdout": self.holdout,
                "curve": {"thresholds": self.thresholds.tolist(), "precision": self.precision.tolist(),
                          "recall": self.recall.tolist()}}


def _target(target_precision: Optional[float], target_recall: Optional[float]) -> Tuple[str, float]:
    if (target_precision is None) == (target_recall is None):
        raise ValueError("calibrate: give exactly one of target_precision and target_recall")
    name, value = ("precision", target_precision) if target_precision is not None else ("recall", target_recall)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 < value <= 1:
        raise ValueError(f"target_{name}: expected a number in (0, 1], got {value!r}")
    return name, float(value)


def choose(hits: ScoredHits, target: str, value: float) -> Tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """The threshold with the most recall whose precision reaches `value` (target "precision"), or the highest
    threshold whose recall reaches it (target "recall"); with the curve it was read from."""
    t, p, r = pr_curve(hits)
    ok = np.nonzero((p if target == "precision" else r) >= value - 1e-12)[0]
    if len(ok) == 0:
        best = p.max() if target == "precision" else r.max()
        raise ValueError(f"calibrate: no threshold reaches {target} {value:g} on these queries (best {best:.3f}; "
                         + ("recall is capped by the top-k: raise k" if target == "recall" else "lower the target")
                         + ")")
    i = ok[np.argmax(r[ok])] if target == "precision" else ok[0]
    return float(t[i]), t, p, r


def calibrate(source: Any, queries: Any = None, *, target_precision: Optional[float] = None,
              target_recall: Optional[float] = None, holdout: float = 0.3, seed: int = 0, k: int = 10,
              encoder: Any = None, row: Optional[int] = None) -> Calibration:
    """The ``min_score`` that reaches a precision or recall target, fitted on part of the labeled queries and
    measured on the held-out rest.

    Args:
        source: an :class:`~simdex.quality.evaluate.EvalResult` (its hits; the first row whose variant ranks by
            score unless `row` says which), a :class:`ScoredHits`, or a `simdex.Index`.
        queries: with an Index: labeled queries, either a JSONL path / list of ``{"query", "doc_id"}`` records
            (the index must hold texts: `simdex.ingest` or `add_texts`; embedded with `encoder`, default the model
            in the index's fingerprint) or a pair ``(query vectors (nq, dim), relevant vector ids per query)``.
        target_precision, target_recall: exactly one, in (0, 1].
        holdout: share of the queries kept out of the fit and measured at the chosen threshold (0: fit and
            measure on all).
        seed: the split's shuffle.
        k: hits per query (with an Index).
        encoder: with text queries: the model that filled the index.
        row: with an EvalResult: which row.

    Raises:
        ValueError: no target or both, a target out of range, a holdout outside [0, 1), or no threshold reaching
            the target.
    """
    target, value = _target(target_precision, target_recall)
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 <= holdout < 1:
        raise ValueError(f"holdout: expected a share in [0, 1), got {holdout!r}")
    hits, label = _hits_of(source, queries, k, encoder, row)
    fit, held = hits.split(holdout, seed)
    min_score, t, p, r = choose(fit, target, value)
    return Calibration(target, value, min_score, measure(fit, min_score), measure(held, min_score), t, p, r, label)


def _hits_of(source: Any, queries: Any, k: int, encoder: Any, row: Optional[int]) -> Tuple[ScoredHits, str]:
    from .._index import Index

    if isinstance(source, ScoredHits):
        return source, ""
    if isinstance(source, Index):
        if queries is None:
            raise ValueError("calibrate(index, queries): labeled queries are needed")
        return index_hits(source, queries, k, encoder), ""
    hits = getattr(source, "hits", None)
    rows = getattr(source, "rows", None)
    if hits is None or rows is None:
        raise TypeError(f"calibrate: expected an EvalResult, ScoredHits or Index, got {type(source).__name__}")
    if row is None:
        row = next((i for i, h in enumerate(hits) if h is not None), None)
        if row is None:
            raise ValueError("calibrate: no row of this result has scored hits (fusion variants rank by rank)")
    if not 0 <= row < len(rows) or hits[row] is None:
        raise ValueError(f"row: expected a row with scored hits among 0 .. {len(rows) - 1}, got {row}")
    r = rows[row]
    label = f"{r['model']} {r['variant']}" + (f" chunks {r['chunk tokens']}" if r.get("chunk tokens") else "")
    return hits[row], label


def index_hits(index: Any, queries: Any, k: int = 10, encoder: Any = None) -> ScoredHits:
    """The top-k hits of labeled queries on an index (see `calibrate` for the forms `queries` takes)."""
    if isinstance(queries, tuple) and len(queries) == 2:
        vectors, relevant = queries
        scores, ids = index.search(vectors, k)
        wanted = [[int(i) for i in np.atleast_1d(rel)] for rel in relevant]
        if len(wanted) != len(scores):
            raise ValueError(f"queries: {len(scores)} vectors but {len(wanted)} relevant-id lists")
        return ScoredHits.from_rankings([[int(i) for i in row if i >= 0] for row in ids], scores, wanted, k)
    from .evaluate import load_queries

    texts, relevant = load_queries(queries)
    if encoder is None:
        fp = index.fingerprint
        if not isinstance(fp, dict) or not fp.get("model"):
            raise ValueError("calibrate: the index has no model fingerprint; pass encoder=")
        import simdex

        encoder = simdex.Encoder(fp["model"])
    ranked: List[List[Optional[str]]] = []
    scores = []
    for text in _progress(texts, "calibration queries"):
        res = index.search_text(text, k, encoder=encoder)
        ranked.append([None if d is None else str(d.id) for d in res.documents])
        scores.append(res.scores)
    if all(d is None for r in ranked for d in r):
        raise ValueError("calibrate: the index holds no texts, so hits cannot be matched to labeled document ids; "
                         "pass queries as (vectors, relevant ids)")
    return ScoredHits.from_rankings(ranked, scores, relevant, k)


def _progress(items: Sequence[Any], desc: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm comes with the text extra; the loop works without it
        return items
    return tqdm(items, desc=desc, disable=len(items) < 200)


def plot_scores(ax: Any, hits: ScoredHits, title: str, min_score: Optional[float] = None) -> None:
    """Histograms of the scores of relevant and of non-relevant hits on one axis (the picture to choose a
    threshold from), with the chosen min_score as a vertical line."""
    good, bad = hits.relevant_scores(), hits.other_scores()
    both = np.r_[good, bad]
    if len(both) == 0:
        ax.set_title(f"{title}: no hits")
        return
    bins = np.linspace(both.min(), both.max() + 1e-9, 40)
    ax.hist(bad, bins=bins, alpha=0.55, label=f"not relevant ({len(bad)})", color="tab:gray", density=True)
    ax.hist(good, bins=bins, alpha=0.65, label=f"relevant ({len(good)})", color="tab:green", density=True)
    if min_score is not None and math.isfinite(min_score):
        ax.axvline(min_score, color="tab:red", linestyle="--", label=f"min_score {min_score:.3f}")
    ax.set_xlabel("score")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)

