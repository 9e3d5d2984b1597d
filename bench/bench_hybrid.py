"""Hybrid retrieval on the dev set: dense vs BM25 pre-filter vs reciprocal rank fusion (figures in README_hybrid.md).

    HF_HUB_OFFLINE=1 python bench/bench_hybrid.py [DATA_DIR] [--json out.json]

DATA_DIR defaults to ../shared/data/dev-pydocs-linuxman. The model (simdex.Encoder(), all-MiniLM-L6-v2 on the CPU)
embeds the corpus and the queries once: the first `simdex.evaluate` call (the same harness and variants as
``simdex eval --variants float32,float32+bm25,float32+rrf,...``) times the real encoder, and the per-query-kind
breakdown that follows reuses the same vectors. A BM25-only ranking is listed for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
VARIANTS = ["float32", "float32+bm25", "float32+rrf", "float32+rrf10", "float32+rrf30", "float32+rrf100"]


class Recording:
    """The real encoder, remembering every vector it made (the per-kind runs reuse them)."""

    def __init__(self, encoder):
        self.encoder, self.fingerprint, self.seen = encoder, encoder.fingerprint, {}

    def embed_batch(self, texts, *, show_progress_bar=None):
        missing = [t for t in dict.fromkeys(texts) if t not in self.seen]
        if missing:
            self.seen.update(zip(missing, self.encoder.embed_batch(missing, show_progress_bar=show_progress_bar)))
        return np.stack([self.seen[t] for t in texts])

    def embed_query(self, text):
        if text not in self.seen:
            self.seen[text] = self.encoder.embed_query(text)
        return self.seen[text]


def main(argv=None) -> int:
    import simdex
    from simdex.quality.evaluate import evaluate, load_corpus, load_queries, mrr_at_k, recall_at_k
    from simdex.text.hybrid import KeywordIndex

    p = argparse.ArgumentParser()
    p.add_argument("data", nargs="?", default=os.path.join(HERE, "..", "..", "shared", "data", "dev-pydocs-linuxman"))
    p.add_argument("--json")
    args = p.parse_args(argv)
    corpus, queries = os.path.join(args.data, "corpus.jsonl"), os.path.join(args.data, "queries.jsonl")
    enc = Recording(simdex.Encoder(device="cpu"))
    t0 = time.perf_counter()
    result = evaluate(corpus, queries, models=[enc], variants=VARIANTS, k=10)
    print(f"# {platform.processor() or platform.machine()}, python {sys.version.split()[0]}, "
          f"simdex.simd_info active {simdex.simd_info()['active']}, {time.perf_counter() - t0:.0f} s")
    print(result.table())
    cols = ("recall@10", "mrr@10", "search ms p50")
    out = {"all": {r["variant"]: {c: r[c] for c in cols} for r in result.rows}}

    doc_ids, texts, _ = load_corpus(corpus)
    q_texts, relevant = load_queries(queries)
    kw = KeywordIndex.from_records(range(len(texts)), texts)
    bm = [[doc_ids[i] for i in kw.bm25(q, 10)[0]] for q in q_texts]

    def bm25_only(keep):
        pairs = [(r, rel) for r, rel in zip(bm, relevant) if keep(rel)]
        return {"recall@10": float(np.mean([recall_at_k(r, rel, 10) for r, rel in pairs])),
                "mrr@10": float(np.mean([mrr_at_k(r, rel, 10) for r, rel in pairs]))}

    out["all"]["bm25 only"] = bm25_only(lambda rel: True)
    records = [json.loads(line) for line in open(queries, encoding="utf-8") if line.strip()]
    for kind in ("pyfaq", "pylib", "man"):
        subset = [r for r in records if r["doc_id"].startswith(kind + "-")]
        res = evaluate(corpus, subset, models=[enc], variants=VARIANTS, k=10)
        out[kind] = {r["variant"]: {c: r[c] for c in cols[:2]} for r in res.rows}
        out[kind]["bm25 only"] = bm25_only(lambda rel, kind=kind: rel[0].startswith(kind + "-"))
        out[kind]["queries"] = len(subset)

    print(f"\n{'variant':<16}" + "".join(f"{k + ' R@10/MRR@10':>22}" for k in ("all", "pyfaq", "pylib", "man")))
    for v in VARIANTS + ["bm25 only"]:
        cells = [out["all"][v]] + [out[kind].get(v) for kind in ("pyfaq", "pylib", "man")]
        print(f"{v:<16}" + "".join(f"{c['recall@10']:>14.3f} / {c['mrr@10']:.3f}" if c else f"{'-':>22}"
                                   for c in cells))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
