"""Chunk size as a measured hyperparameter, and recall by query and document length.

`simdex.evaluate(..., chunk_tokens=[64, 128, 256], overlap=16)` splits every document with the text wing's own
chunker (`simdex.Encoder.token_spans`, the one `simdex.ingest` uses), indexes the chunks, and ranks documents by
their best chunk: a document counts as found when any of its chunks is hit. Recall is also broken down by the
length of the query and of the relevant document (in words), because a chunk size that suits long documents can
hurt short queries and the other way round.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

#: Query length buckets in words: (label, lowest, highest) inclusive.
QUERY_BUCKETS = (("1-3", 1, 3), ("4-7", 4, 7), ("8-15", 8, 15), ("16+", 16, None))
#: Document length buckets in words.
DOC_BUCKETS = (("<64", 0, 63), ("64-127", 64, 127), ("128-255", 128, 255), ("256-511", 256, 511),
               ("512+", 512, None))


def chunk_settings(chunk_tokens: Any, overlap: int) -> List[Optional[int]]:
    """Checks `evaluate`'s chunk_tokens and overlap; returns the settings (None: whole documents)."""
    if chunk_tokens is None:
        if overlap:
            raise ValueError(f"overlap: only used with chunk_tokens, got overlap={overlap}")
        return [None]
    values = [chunk_tokens] if isinstance(chunk_tokens, (int, np.integer)) else list(chunk_tokens)
    if not values:
        raise ValueError("chunk_tokens: expected at least one chunk size")
    out: List[Optional[int]] = []
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0):
            raise ValueError(f"chunk_tokens: expected positive integers (or None for whole documents), got {v!r}")
        if v is not None and int(v) in out or v is None and None in out:
            raise ValueError(f"chunk_tokens: {v} appears twice")
        out.append(None if v is None else int(v))
    if isinstance(overlap, bool) or not isinstance(overlap, (int, np.integer)) or overlap < 0:
        raise ValueError(f"overlap: expected an integer >= 0, got {overlap!r}")
    smallest = min((v for v in out if v is not None), default=None)
    if smallest is not None and overlap >= smallest:
        raise ValueError(f"overlap: expected fewer tokens than the smallest chunk ({smallest}), got {overlap}")
    return out


def chunk_corpus(encoder: Any, texts: Sequence[str], chunk_tokens: Optional[int],
                 overlap: int) -> Tuple[List[str], np.ndarray]:
    """(chunk texts, document index of each chunk). ``chunk_tokens=None`` keeps each document whole."""
    if chunk_tokens is None:
        return list(texts), np.arange(len(texts))
    spans_of = getattr(encoder, "token_spans", None)
    if spans_of is None:
        raise ValueError(f"chunk_tokens: the encoder {type(encoder).__name__} has no token_spans (the tokenizer "
                         "chunker of simdex.Encoder), so documents cannot be split into tokens")
    chunks, owner = [], []
    for d, (text, spans) in enumerate(zip(texts, spans_of(list(texts), chunk_tokens, overlap))):
        for s, e in spans:
            chunks.append(text[s:e])
            owner.append(d)
    return chunks, np.asarray(owner, np.int64)


def search_depth(k: int, owner: np.ndarray) -> int:
    """Chunks to fetch so that the k best documents (each ranked by its best chunk) are all among them: the
    chunks ahead of the k-th document's best belong to at most k - 1 documents."""
    most = int(np.bincount(owner).max()) if len(owner) else 1
    return min(len(owner), max(k, k * most))


def best_per_document(chunk_ids: Sequence[int], scores: Sequence[float], owner: np.ndarray,
                      k: int) -> Tuple[List[int], List[float]]:
    """The first k distinct documents of a chunk ranking, each with the score of its best (first) chunk."""
    docs: List[int] = []
    best: List[float] = []
    seen = set()
    for c, s in zip(chunk_ids, scores):
        d = int(owner[int(c)])
        if d not in seen:
            seen.add(d)
            docs.append(d)
            best.append(float(s))
            if len(docs) == k:
                break
    return docs, best


def _bucket(n: int, buckets: Sequence[Tuple[str, int, Optional[int]]]) -> str:
    for label, lo, hi in buckets:
        if n >= lo and (hi is None or n <= hi):
            return label
    return buckets[0][0]


def length_breakdown(q_texts: Sequence[str], relevant: Sequence[Sequence[str]], ranked: Sequence[Sequence[str]],
                     doc_words: Dict[str, int], k: int) -> Dict[str, Dict[str, Dict[str, float]]]:
    """Recall@k by query length bucket (mean over queries) and by relevant-document length bucket (share of
    (query, relevant document) pairs whose document is in the query's top k); each bucket has its count."""
    by_q: Dict[str, List[float]] = {}
    by_d: Dict[str, List[float]] = {}
    for text, rel, ranks in zip(q_texts, relevant, ranked):
        top = set(list(ranks)[:k])
        rel = list(dict.fromkeys(rel))
        by_q.setdefault(_bucket(len(text.split()), QUERY_BUCKETS), []).append(
            sum(d in top for d in rel) / len(rel))
        for d in rel:
            by_d.setdefault(_bucket(doc_words[d], DOC_BUCKETS), []).append(float(d in top))

    def summary(groups: Dict[str, List[float]], buckets: Sequence[Tuple[str, int, Optional[int]]]) -> dict:
        return {label: {"recall": float(np.mean(groups[label])), "n": len(groups[label])}
                for label, _, _ in buckets if label in groups}

    return {"query words": summary(by_q, QUERY_BUCKETS), "document words": summary(by_d, DOC_BUCKETS)}


def length_table(rows: Sequence[Dict[str, Any]], k: int = 10) -> str:
    """Plain-text recall@k by query and document length bucket, one line per row that has a breakdown."""
    lines = []
    for kind, buckets in (("query words", QUERY_BUCKETS), ("document words", DOC_BUCKETS)):
        present = [b for b, _, _ in buckets if any(b in (r.get("lengths") or {}).get(kind, {}) for r in rows)]
        if not present:
            continue
        head = [f"recall@{k} by {kind}"] + [f"{b} (n={_count(rows, kind, b)})" for b in present]
        body = []
        for r in rows:
            part = (r.get("lengths") or {}).get(kind)
            if part is None:
                continue
            body.append([_row_label(r)] + [f"{part[b]['recall']:.3f}" if b in part else "-" for b in present])
        widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
        fmt = lambda cells: "  ".join(c.ljust(w) if i == 0 else c.rjust(w)  # noqa: E731
                                      for i, (c, w) in enumerate(zip(cells, widths)))
        lines += ["", fmt(head), fmt(["-" * w for w in widths])] + [fmt(b) for b in body]
    return "\n".join(lines)


def _count(rows: Sequence[Dict[str, Any]], kind: str, bucket: str) -> int:
    for r in rows:
        part = (r.get("lengths") or {}).get(kind, {})
        if bucket in part:
            return int(part[bucket]["n"])
    return 0


def _row_label(row: Dict[str, Any]) -> str:
    chunk = row.get("chunk tokens")
    return (f"{str(row['model']).split('/')[-1]} {row['variant']}"
            + ("" if chunk is None else f" chunks {chunk}"))


def plot_lengths(axes: Sequence[Any], rows: Sequence[Dict[str, Any]], k: int = 10) -> None:
    """Recall@k against query length bucket (first axis) and document length bucket (second), a line per row."""
    for ax, (kind, buckets) in zip(axes, (("query words", QUERY_BUCKETS), ("document words", DOC_BUCKETS))):
        labels = [b for b, _, _ in buckets if any(b in (r.get("lengths") or {}).get(kind, {}) for r in rows)]
        for r in rows:
            part = (r.get("lengths") or {}).get(kind)
            if part:
                ax.plot(range(len(labels)), [part[b]["recall"] if b in part else np.nan for b in labels],
                        marker="o", label=_row_label(r))
        ax.set_xticks(range(len(labels)))
        ax.set_xticklabels(labels)
        ax.set_xlabel(kind)
        ax.set_ylabel(f"recall@{k}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
