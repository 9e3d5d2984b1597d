"""Evaluation harness: retrieval quality, latency and storage of models x index variants on labeled data.

    result = simdex.evaluate("corpus.jsonl", "queries.jsonl", models=["all-MiniLM-L6-v2"],
                             variants=["float32", "int8", "int8+rescore", "pca192"])
    print(result.table()); result.to_json("eval.json"); result.plot("eval.png")

Documents are embedded once per model and reused by every variant; queries are embedded one at a time (the
latency a user sees). A query may have several relevant documents.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple, Union

import numpy as np

KS = (1, 5, 10)


# -- metrics -------------------------------------------------------------------------------------------------
def recall_at_k(ranked: Sequence[Any], relevant: Iterable[Any], k: int) -> float:
    """Share of the relevant documents found in the first k results."""
    rel = set(relevant)
    if not rel:
        raise ValueError("relevant: expected at least one relevant document")
    return len(rel.intersection(list(ranked)[:k])) / len(rel)


def mrr_at_k(ranked: Sequence[Any], relevant: Iterable[Any], k: int) -> float:
    """1 / rank of the first relevant result within the first k, else 0."""
    rel = set(relevant)
    for rank, doc in enumerate(list(ranked)[:k], start=1):
        if doc in rel:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[Any], relevant: Iterable[Any], k: int) -> float:
    """Binary-relevance nDCG@k: DCG of the ranking over the DCG of a perfect one."""
    rel = set(relevant)
    if not rel:
        raise ValueError("relevant: expected at least one relevant document")
    dcg = sum(1.0 / math.log2(rank + 1) for rank, doc in enumerate(list(ranked)[:k], start=1) if doc in rel)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(rel), k) + 1))
    return dcg / ideal


# -- data ----------------------------------------------------------------------------------------------------
def _read_jsonl(path: Union[str, os.PathLike]) -> List[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load_corpus(corpus: Any, id_field: str = "id", text_field: str = "text") -> Tuple[List[str], List[str], List[dict]]:
    """(doc ids, texts, records) from a JSONL path, a list of dicts, or a list of (id, text) pairs."""
    records = _read_jsonl(corpus) if isinstance(corpus, (str, os.PathLike)) else list(corpus)
    ids, texts, rows = [], [], []
    for i, r in enumerate(records):
        if isinstance(r, dict):
            if id_field not in r or text_field not in r:
                raise ValueError(f"corpus record {i}: expected fields {id_field!r} and {text_field!r}, got {sorted(r)}")
            ids.append(str(r[id_field]))
            texts.append(str(r[text_field]))
            rows.append(r)
        else:
            doc_id, text = r
            ids.append(str(doc_id))
            texts.append(str(text))
            rows.append({"id": str(doc_id), "text": str(text)})
    if len(set(ids)) != len(ids):
        raise ValueError("corpus: document ids must be unique")
    return ids, texts, rows


def load_queries(queries: Any) -> Tuple[List[str], List[List[str]]]:
    """(query texts, relevant doc ids per query). Records are {"query", "doc_id"} or {"query", "doc_ids"};
    records that repeat a query text add to its relevant set."""
    records = _read_jsonl(queries) if isinstance(queries, (str, os.PathLike)) else list(queries)
    order: Dict[str, List[str]] = {}
    for i, r in enumerate(records):
        if isinstance(r, dict):
            if "query" not in r or not ("doc_id" in r or "doc_ids" in r):
                raise ValueError(f"query record {i}: expected 'query' and 'doc_id' (or 'doc_ids'), got {sorted(r)}")
            text, rel = r["query"], r.get("doc_ids", [r.get("doc_id")])
        else:
            text, rel = r
            rel = [rel] if isinstance(rel, (str, int)) else list(rel)
        bucket = order.setdefault(str(text), [])
        bucket.extend(str(d) for d in rel if str(d) not in bucket)
    return list(order), list(order.values())


def load_labeled(corpus: Any, queries: Any) -> Tuple[List[str], List[str], List[str], List[List[str]]]:
    """(doc ids, doc texts, query texts, relevant doc ids per query), every relevant id checked to be in the
    corpus."""
    doc_ids, texts, _ = load_corpus(corpus)
    q_texts, relevant = load_queries(queries)
    known = set(doc_ids)
    for q, rel in zip(q_texts, relevant):
        missing = [d for d in rel if d not in known]
        if missing:
            raise ValueError(f"query {q!r}: relevant document(s) {missing[:3]} not in the corpus")
    return doc_ids, texts, q_texts, relevant


# -- variants ------------------------------------------------------------------------------------------------
_VARIANT = re.compile(
    r"^(?:(pca|rp|truncate)(\d+)\+?)?(?:ivf(\d+)(?:n(\d+))?\+?)?(float32|int8|binary)?(\+rescore(\d+)?)?(\+bm25(\d+)?)?"
    r"(\+rrf(\d+)?)?$")
#: Candidates each ranking (vector search, BM25) brings to a "+rrf" fusion: search_text's default keyword_limit.
RRF_DEPTH = 200


@dataclass
class Variant:
    """An index configuration named like "float32", "int8", "int8+rescore", "pca256", "rp192+int8", "truncate256"
    (the first 256 dims of a Matryoshka embedding, renormalized), "ivf64+int8" (64 partitions, docs/ivf.md;
    "ivf64n8": searched with nprobe 8, else the index's default), or any of them with a hybrid suffix:

    - "+bm25" (search_text's ``mode="prefilter"``): the vector search ranks only the top-200 BM25 keyword matches
      of the query text ("+bm25N": the top N);
    - "+rrf" (``mode="rrf"``): reciprocal rank fusion of the vector search's top `RRF_DEPTH` and BM25's top
      `RRF_DEPTH` (over the query text) with rrf_k = 60 ("+rrfN": rrf_k = N); see `simdex.text.fusion`.
    """

    name: str
    dtype: str = "float32"
    reduce: Optional[str] = None      # "pca", "rp" or "truncate"
    out_dim: Optional[int] = None
    rescore: Optional[int] = None
    keyword_limit: Optional[int] = None
    rrf_k: Optional[float] = None
    partitions: Optional[int] = None
    nprobe: Optional[int] = None

    @classmethod
    def parse(cls, name: str) -> "Variant":
        m = _VARIANT.match(name.replace(" ", ""))
        if not m or not name:
            raise ValueError(f"variant {name!r}: expected e.g. float32, int8, int8+rescore, pca256, rp192+int8, "
                             "truncate256, ivf64+int8, float32+bm25, float32+rrf")
        reduce, dim, parts, nprobe, dtype, rescore, factor, bm25, limit, rrf, rrf_k = m.groups()
        if rescore and dtype not in ("int8", "binary"):
            raise ValueError(f"variant {name!r}: rescoring needs int8 or binary")
        if bm25 and rrf:
            raise ValueError(f"variant {name!r}: choose one hybrid mode, +bm25 (pre-filter) or +rrf (fusion)")
        return cls(name, dtype or "float32", reduce, int(dim) if dim else None,
                   (int(factor) if factor else 4) if rescore else None,
                   (int(limit) if limit else 200) if bm25 else None,
                   (float(rrf_k) if rrf_k else 60.0) if rrf else None,
                   int(parts) if parts else None, int(nprobe) if nprobe else None)

    def build(self, dim: int):
        import simdex

        kwargs: Dict[str, Any] = {}
        if self.dtype != "float32":
            kwargs["dtype"] = self.dtype
        if self.rescore:
            kwargs["keep_originals"] = True
        if self.reduce == "pca":
            kwargs["transform"] = simdex.PCA(self.out_dim)
        elif self.reduce == "rp":
            kwargs["transform"] = simdex.RandomProjection(self.out_dim)
        elif self.reduce == "truncate":
            kwargs["transform"] = simdex.Truncate(self.out_dim)
        if self.partitions:
            kwargs["partitions"] = self.partitions
        return simdex.Index(dim, "cosine", **kwargs)

    def search_kwargs(self) -> dict:
        kw: Dict[str, Any] = {"rescore": self.rescore} if self.rescore else {}
        if self.nprobe:
            kw["nprobe"] = self.nprobe
        return kw


# -- the harness ---------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """One row per model x variant (x chunk size), plus each row's scored hits (`simdex.calibrate` reads them;
    None for fusion variants, which rank by rank) and the ranking depth k."""

    rows: List[Dict[str, Any]] = field(default_factory=list)
    hits: List[Any] = field(default_factory=list)
    k: int = 10

    COLUMNS = [
        ("model", "{}"), ("variant", "{}"), ("chunk tokens", "{}"), ("vectors", "{}"), ("dim", "{}"),
        ("recall@1", "{:.3f}"), ("recall@5", "{:.3f}"),
        ("recall@10", "{:.3f}"), ("mrr@10", "{:.3f}"), ("ndcg@10", "{:.3f}"), ("bytes/vec", "{:.0f}"),
        ("index MB", "{:.1f}"), ("enc ms p50", "{:.1f}"), ("enc ms p99", "{:.1f}"), ("search ms p50", "{:.2f}"),
        ("search ms p99", "{:.2f}"), ("ingest docs/s", "{:.0f}"), ("flagged", "{}"), ("flagged recall@10", "{:.3f}"),
    ]

    #: Columns shown only when some row has them (a chunk-size sweep).
    OPTIONAL = ("chunk tokens", "vectors")

    def table(self) -> str:
        """An aligned plain-text table, then recall by query and document length."""
        from .chunks import length_table

        swept = any(r.get("chunk tokens") is not None for r in self.rows)
        cols = [(c, f) for c, f in self.COLUMNS if swept or c not in self.OPTIONAL]
        head = [c for c, _ in cols]
        body = [[fmt.format(r[c]) if r.get(c) is not None else "full" if c == "chunk tokens" else "-"
                 for c, fmt in cols] for r in self.rows]
        widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(head)]
        line = lambda cells: "  ".join(c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))  # noqa: E731
        return "\n".join([line(head), line(["-" * w for w in widths])] + [line(b) for b in body]) + length_table(
            self.rows, self.k)

    def to_json(self, path: Optional[Union[str, os.PathLike]] = None) -> str:
        text = json.dumps({"rows": self.rows}, indent=2)
        if path is not None:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text + "\n")
        return text

    def plot(self, path: Union[str, os.PathLike], min_score: Optional[float] = None) -> str:
        """Saves a PNG: recall@10 against search latency and against bytes per vector (and against chunk size in a
        sweep); the score distributions of relevant and non-relevant hits of the first scored row (with
        `min_score`, e.g. a calibrated one, marked); recall@10 by query length and by document length."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        from .calibrate import plot_scores
        from .chunks import plot_lengths

        fig, grid = plt.subplots(2, 3, figsize=(16, 8.4))
        axes = grid[0]
        for ax, key, label in ((axes[0], "search ms p50", "search latency p50 (ms)"),
                               (axes[1], "bytes/vec", "bytes per vector")):
            for r in self.rows:
                ax.scatter(r[key], r["recall@10"], s=40)
                chunk = "" if r.get("chunk tokens") is None else f" chunks {r['chunk tokens']}"
                ax.annotate(f"{r['model'].split('/')[-1]}\n{r['variant']}{chunk}", (r[key], r["recall@10"]),
                            fontsize=7, textcoords="offset points", xytext=(4, 4))
            ax.set_xlabel(label)
            ax.set_ylabel("recall@10")
            ax.grid(alpha=0.3)
        axes[1].set_xscale("log")
        self._plot_chunks(axes[2])
        first = next((i for i, h in enumerate(self.hits) if h is not None), None)
        if first is None:
            grid[1][0].set_axis_off()
        else:
            r = self.rows[first]
            plot_scores(grid[1][0], self.hits[first], f"scores of top-{self.k} hits: {r['model'].split('/')[-1]} "
                        f"{r['variant']}", min_score)
        plot_lengths(grid[1][1:], self.rows, self.k)
        fig.suptitle("simdex evaluation")
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return os.fspath(path)

    def _plot_chunks(self, ax: Any) -> None:
        swept = [r for r in self.rows if r.get("chunk tokens") is not None]
        if not swept:
            ax.set_axis_off()
            return
        for key in sorted({(r["model"], r["variant"]) for r in swept}):
            pts = sorted((r["chunk tokens"], r["recall@10"], r["index MB"]) for r in swept
                         if (r["model"], r["variant"]) == key)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                    label=f"{key[0].split('/')[-1]} {key[1]}")
            for c, rec, mb in pts:
                ax.annotate(f"{mb:.1f} MB", (c, rec), fontsize=7, textcoords="offset points", xytext=(3, 3))
            whole = [r for r in self.rows if r.get("chunk tokens") is None and (r["model"], r["variant"]) == key]
            if whole:  # whole documents, for reference
                ax.axhline(whole[0]["recall@10"], linestyle="--", linewidth=1, color=ax.lines[-1].get_color())
        ax.set_xscale("log", base=2)
        ax.set_xlabel("chunk tokens (document-level recall; index size annotated)")
        ax.set_ylabel("recall@10")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)


def _percentiles(seconds: List[float]) -> Tuple[float, float, float]:
    ms = np.asarray(seconds) * 1e3
    return float(ms.mean()), float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def _score(ranked_docs: List[List[str]], relevant: List[List[str]], k: int) -> Dict[str, float]:
    out = {f"recall@{j}": float(np.mean([recall_at_k(r, rel, j) for r, rel in zip(ranked_docs, relevant)]))
           for j in KS if j <= k}
    out[f"mrr@{k}"] = float(np.mean([mrr_at_k(r, rel, k) for r, rel in zip(ranked_docs, relevant)]))
    out[f"ndcg@{k}"] = float(np.mean([ndcg_at_k(r, rel, k) for r, rel in zip(ranked_docs, relevant)]))
    return out


def evaluate(corpus: Any, queries: Any, models: Sequence[Any] = ("all-MiniLM-L6-v2",),
             variants: Sequence[str] = ("float32", "int8", "int8+rescore"), k: int = 10,
             progress: bool = False, chunk_tokens: Any = None, overlap: int = 0) -> EvalResult:
    """Evaluates every model x variant (x chunk size) on a labeled set.

    Args:
        corpus: JSONL path (``{"id", "text"}`` per line; .gz is fine), list of such dicts, or (id, text) pairs.
        queries: JSONL path (``{"query", "doc_id"}`` or ``{"query", "doc_ids"}``), or list of such dicts.
        models: model names for :class:`simdex.Encoder`, or encoder objects with ``embed_batch``,
            ``embed_query`` and ``fingerprint``.
        variants: index variants (see :class:`Variant`).
        k: the depth of the ranking metrics.
        progress: show progress bars while embedding.
        chunk_tokens: None (whole documents), a chunk size in tokens, or a list of them (None in the list: whole
            documents too) to sweep: each document is split by the encoder's ``token_spans`` (the chunker of
            `simdex.ingest`), every chunk indexed, and documents ranked by their best chunk, so the metrics stay
            document-level (see :mod:`simdex.quality.chunks`).
        overlap: tokens shared by consecutive chunks (below the smallest chunk size).

    Returns:
        An :class:`EvalResult`; ``.table()``, ``.to_json()``, ``.plot()``; `simdex.calibrate` reads its hits.
    """
    from ..diagnostics import CorpusStats, diagnose
    from .calibrate import ScoredHits
    from .chunks import chunk_corpus, chunk_settings, length_breakdown

    settings = chunk_settings(chunk_tokens, overlap)
    doc_ids, texts, q_texts, relevant = load_labeled(corpus, queries)
    parsed = [Variant.parse(v) for v in variants]
    doc_words = {d: len(t.split()) for d, t in zip(doc_ids, texts)}
    result = EvalResult(k=k)
    for model in models:
        encoder = _encoder(model)
        name = encoder.fingerprint.get("model", str(model)) if isinstance(encoder.fingerprint, dict) else str(model)
        q_vecs, enc_lat = [], []
        for q in q_texts:
            t = time.perf_counter()
            q_vecs.append(np.asarray(encoder.embed_query(q), np.float32).reshape(-1))
            enc_lat.append(time.perf_counter() - t)
        q_mat = np.stack(q_vecs)
        for setting in settings:
            chunk_texts, owner = chunk_corpus(encoder, texts, setting, overlap)
            t0 = time.perf_counter()
            keyword = _progress_keyword(encoder.embed_batch)
            doc_vecs = np.ascontiguousarray(
                encoder.embed_batch(chunk_texts, **({keyword: progress} if keyword else {})), np.float32)
            embed_s = time.perf_counter() - t0
            stats = CorpusStats(doc_vecs[:: max(1, len(doc_vecs) // 20000)])
            keywords = None
            if any(v.keyword_limit or v.rrf_k is not None for v in parsed):
                from ..text.hybrid import KeywordIndex

                keywords = KeywordIndex.from_records(range(len(chunk_texts)), chunk_texts)
            for variant in parsed:
                index = variant.build(doc_vecs.shape[1])
                t = time.perf_counter()
                index.add(doc_vecs)
                add_s = time.perf_counter() - t
                positions, best, dense, lat = _rank(index, variant, q_texts, q_mat, keywords, owner, k)
                ranked = [[doc_ids[d] for d in r] for r in positions]
                metrics = _score(ranked, relevant, k)
                padded = np.array([b + [-np.inf] * (k - len(b)) for b in dense])
                diags = diagnose(padded, stats.z_scores(q_mat, padded[:, 0]), q_texts)
                flagged = [i for i, d in enumerate(diags) if d.flags]
                enc_mean, enc_p50, enc_p99 = _percentiles(enc_lat)
                _, s_p50, s_p99 = _percentiles(lat)
                size = index.memory_usage()
                result.rows.append({
                    "model": name, "variant": variant.name, "chunk tokens": setting, "vectors": len(index),
                    "dim": index.dim if variant.out_dim is None else variant.out_dim,
                    **metrics, "bytes/vec": size / len(index), "index MB": size / 1e6,
                    "enc ms mean": enc_mean, "enc ms p50": enc_p50, "enc ms p99": enc_p99,
                    "search ms p50": s_p50, "search ms p99": s_p99,
                    "ingest docs/s": len(texts) / (embed_s + add_s), "queries": len(q_texts), "documents": len(texts),
                    "flagged": len(flagged),
                    "flagged recall@10": (float(np.mean([recall_at_k(ranked[i], relevant[i], k) for i in flagged]))
                                          if flagged else None),
                    "lengths": length_breakdown(q_texts, relevant, ranked, doc_words, k),
                })
                # Fusion ranks by rank, so its hits carry no score a min_score could cut.
                result.hits.append(None if variant.rrf_k is not None else
                                   ScoredHits.from_rankings(ranked, best, relevant, k))
    return result


def _rank(index: Any, variant: Variant, q_texts: Sequence[str], q_mat: np.ndarray, keywords: Any,
          owner: np.ndarray, k: int) -> Tuple[List[List[int]], List[List[float]], List[List[float]], List[float]]:
    """Each query's k best documents (indexes into the corpus) and their scores (fusion: the fused ranking, with
    the vector search's score of each document, -inf where it did not rank it); the k best scores of the vector
    search alone (for diagnostics); the search latencies. A document ranks by its best chunk."""
    from ..text.fusion import reciprocal_rank_fusion
    from .chunks import best_per_document, search_depth

    ranked, best, dense, lat = [], [], [], []
    kw = variant.search_kwargs()
    depth = search_depth(k, owner)
    for q_text, qv in zip(q_texts, q_mat):
        t = time.perf_counter()
        if variant.keyword_limit:
            kw["filter"] = keywords.allow_list(q_text, variant.keyword_limit)
        if variant.rrf_k is None:
            scores, ids = index.search(qv, depth, **kw)
            live = ids[0] >= 0
            top, top_scores = ids[0][live], scores[0][live]
            dense_top = None
        else:  # the same fusion as search_text(mode="rrf"): dense top-N and BM25 top-N of the query text
            n = max(depth, RRF_DEPTH)
            scores, ids = index.search(qv, n, **kw)
            bm25_ids, _ = keywords.bm25(q_text, n)
            top, _ = reciprocal_rank_fusion([ids[0][ids[0] >= 0], bm25_ids], n, variant.rrf_k)
            by_id = dict(zip(ids[0].tolist(), scores[0].tolist()))
            top_scores = [by_id.get(int(i), -np.inf) for i in top]
            dense_top = best_per_document(ids[0][ids[0] >= 0], scores[0][ids[0] >= 0], owner, k)[1]
        lat.append(time.perf_counter() - t)
        docs, doc_scores = best_per_document(top, top_scores, owner, k)
        ranked.append(docs)
        best.append(doc_scores)
        dense.append(doc_scores if dense_top is None else dense_top)
    return ranked, best, dense, lat


def _encoder(model: Any):
    if hasattr(model, "embed_batch") and hasattr(model, "embed_query"):
        return model
    import simdex

    return simdex.Encoder(model)


def _progress_keyword(embed_batch: Any) -> Optional[str]:
    """The keyword that turns an encoder's progress bar on or off: ``show_progress_bar`` (`simdex.Encoder`,
    sentence-transformers), else ``show_progress`` (older stand-ins), else None (no bar to control)."""
    import inspect

    try:
        params = inspect.signature(embed_batch).parameters
    except (TypeError, ValueError):
        return None
    for name in ("show_progress_bar", "show_progress"):
        if name in params and params[name].kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                     inspect.Parameter.KEYWORD_ONLY):
            return name
    return None
