"""simdex.Collection against the targets of issue 17 (bench/README_collection.md has the figures).

    python bench/bench_collection.py                    # every part
    python bench/bench_collection.py --parts size,filter --filter-docs 200000

Parts:
    size      100K documents, stand-in encoder: an upsert of the whole corpus with 1% of texts changed re-embeds
              exactly those documents (counted), and how long it takes.
    time      the dev set with all-MiniLM-L6-v2: upsert of the corpus with 1% changed vs embedding just those
              documents (medians); the target is <= 1.2x.
    modes     the dev set with all-MiniLM-L6-v2: Recall@10 / MRR@10 of Collection.search mode dense, prefilter, rrf.
    filter    1M documents' metadata, 384-d vectors: search with a 1%-selective filter vs without (medians), with
              and without index_field; the target is <= 2x.
    crash     tests/test_collection_crash.py (50 kill -9 at random moments) and its tally.
    langchain tests/test_langchain.py (langchain-tests' VectorStoreIntegrationTests, in memory and on disk).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEV = os.path.join(ROOT, "..", "shared", "data", "dev-pydocs-linuxman")
sys.path.insert(0, HERE)
from _common import median  # noqa: E402

from simdex.text.collection import Collection  # noqa: E402


class StandIn:
    """Not a model: a text's hash as a unit vector (dim 16 for size runs, 384 for the filter run); counts texts."""

    def __init__(self, dim: int = 16) -> None:
        self.dim = dim
        self.fingerprint = {"model": f"stand-in-hash-{dim}", "weights_sha256": "none", "dim": dim, "pooling": None,
                            "normalize": True, "max_seq_length": 128}
        self.embedded = 0

    def embed_batch(self, texts, *, batch_size=None, **_):
        self.embedded += len(texts)
        raw = b"".join(hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts)
        codes = np.frombuffer(raw, np.uint8).reshape(-1, 16).astype(np.float32) - 127.5
        if self.dim != 16:  # spread the 16 hash bytes over dim with a fixed random matrix
            codes = codes @ np.random.default_rng(0).standard_normal((16, self.dim)).astype(np.float32)
        return codes / np.linalg.norm(codes, axis=1, keepdims=True)

    def embed_query(self, text):
        return self.embed_batch([text])[0]


def _changed(records: list, fraction: float, rng: random.Random, tag: str) -> tuple:
    picks = set(rng.sample(range(len(records)), max(1, int(len(records) * fraction))))
    out = [dict(r, text=r["text"] + f" (revised {tag})") if i in picks else r for i, r in enumerate(records)]
    return out, sorted(picks)


def part_size(args) -> dict:
    n = args.size_docs
    enc = StandIn(16)
    words = ["alpha", "beta", "gamma", "delta", "kernel", "socket", "thread", "queue", "file", "mail"]
    rng = random.Random(1)
    records = [{"id": f"doc{i}", "text": " ".join(rng.choice(words) for _ in range(12)) + f" {i}",
                "tenant": f"t{i % 100}"} for i in range(n)]
    with tempfile.TemporaryDirectory() as tmp:
        col = Collection(os.path.join(tmp, "c"), enc)
        t = time.perf_counter()
        for s in range(0, n, 20_000):
            col.upsert(records[s:s + 20_000])
        build = time.perf_counter() - t
        rows = []
        for run in range(3):
            changed, picks = _changed(records, 0.01, rng, f"s{run}")
            enc.embedded = 0
            t = time.perf_counter()
            report = col.upsert(changed)
            seconds = time.perf_counter() - t
            rows.append((seconds, enc.embedded, report))
            assert enc.embedded == len(picks) and report.updated == len(picks), (enc.embedded, len(picks))
            records = changed
        ok = col.check()
        col.close()
    out = {"documents": n, "build_s": build, "changed": len(picks), "embedded": [r[1] for r in rows],
           "upsert_all_s": median([r[0] for r in rows]), "report": str(rows[-1][2]), "check": ok}
    print(f"size: {n:,} documents (built in {build:.1f} s); upsert of all {n:,} with {len(picks)} changed: "
          f"re-embedded {out['embedded']} texts, median {out['upsert_all_s']:.2f} s; {rows[-1][2]}")
    return out


def _dev() -> tuple:
    with open(os.path.join(DEV, "corpus.jsonl")) as f:
        corpus = [json.loads(line) for line in f]
    with open(os.path.join(DEV, "queries.jsonl")) as f:
        queries = [json.loads(line) for line in f]
    return corpus, queries


def _minilm_collection(tmp: str) -> tuple:
    from simdex import Encoder

    corpus, queries = _dev()
    enc = Encoder()
    col = Collection(os.path.join(tmp, "dev"), enc)
    t = time.perf_counter()
    col.upsert(corpus)
    print(f"dev set: {len(corpus)} documents embedded with {enc.fingerprint['model']} in "
          f"{time.perf_counter() - t:.1f} s")
    return col, enc, corpus, queries


def part_time(args, col, enc, corpus) -> dict:
    rng = random.Random(2)
    records, ratios, up, emb = corpus, [], [], []
    for run in range(args.runs):
        changed, picks = _changed(records, 0.01, rng, f"t{run}")
        texts = [changed[i]["text"] for i in picks]
        # embedding alone and the upsert embed different texts (the upsert's are new), so neither warms the other
        probe = [t + " (probe)" for t in texts]
        t = time.perf_counter()
        enc.embed_batch(probe)
        e = time.perf_counter() - t
        t = time.perf_counter()
        report = col.upsert(changed)
        u = time.perf_counter() - t
        assert report.updated == len(picks) and report.embedded == len(picks), report
        up.append(u)
        emb.append(e)
        ratios.append(u / e)
        records = changed
    out = {"changed": len(picks), "documents": len(corpus), "upsert_s": median(up), "embed_s": median(emb),
           "ratio": median(ratios)}
    print(f"time: upsert of {len(corpus)} documents with {len(picks)} changed: median {out['upsert_s'] * 1e3:.0f} ms; "
          f"embedding just those {len(picks)}: median {out['embed_s'] * 1e3:.0f} ms; ratio median {out['ratio']:.2f} "
          f"(target <= 1.2) over {args.runs} runs")
    for i, r in enumerate(corpus):  # back to the dev set's own texts for the modes part
        records[i] = r
    col.upsert(corpus)
    return out


def part_modes(args, col, queries) -> dict:
    out = {}
    for mode in ("dense", "prefilter", "rrf"):
        hits, rr = 0, 0.0
        t = time.perf_counter()
        for q in queries:
            ids = [h.doc_id for h in col.search(q["query"], 10, mode=mode)]
            if q["doc_id"] in ids:
                hits += 1
                rr += 1.0 / (ids.index(q["doc_id"]) + 1)
        seconds = time.perf_counter() - t
        out[mode] = {"recall@10": hits / len(queries), "mrr@10": rr / len(queries), "s": seconds}
    print("modes (dev set, all-MiniLM-L6-v2, Collection.search, k=10):\n| mode | Recall@10 | MRR@10 |\n|---|---|---|")
    for mode, m in out.items():
        print(f"| {mode} | {m['recall@10']:.3f} | {m['mrr@10']:.3f} |")
    return out


def part_filter(args) -> dict:
    n, dim = args.filter_docs, 384
    enc = StandIn(dim)
    out: dict = {"documents": n, "dim": dim}
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        col = Collection(os.path.join(tmp, "f"), enc)
        t = time.perf_counter()
        for s in range(0, n, 50_000):
            col.upsert([{"id": i, "text": f"record {i} of tenant t{i % 100}", "tenant": f"t{i % 100}", "n": i,
                         "year": 2000 + i % 25} for i in range(s, min(n, s + 50_000))])
        out["build_s"] = time.perf_counter() - t
        print(f"filter: {n:,} documents of {dim}-d built in {out['build_s']:.0f} s")
        filters = {"tenant == t7 (1%)": {"tenant": "t7"},
                   "n in [X, X + 1%)": {"n": {"$gte": n // 3, "$lt": n // 3 + n // 100}}}
        query = "record of tenant t7"

        def timed(**kw) -> float:
            col.search(query, 10, mode="dense", **kw)
            times = []
            for _ in range(args.runs):
                t0 = time.perf_counter()
                col.search(query, 10, mode="dense", **kw)
                times.append(time.perf_counter() - t0)
            return median(times)

        out["unfiltered_ms"] = timed() * 1e3
        rows = []
        for indexed in (False, True):
            if indexed:
                for field in ("tenant", "n"):
                    col.index_field(field)
            for name, flt in filters.items():
                got = col.search(query, 10, mode="dense", where=flt)
                assert len(got) == 10 and all(_passes(h.document.metadata, flt) for h in got)
                ms = timed(where=flt) * 1e3
                rows.append({"filter": name, "index_field": indexed, "ms": ms, "ratio": ms / out["unfiltered_ms"]})
        col.close()
    out["rows"] = rows
    print(f"| filter | index_field | filter + search (ms) | / unfiltered ({out['unfiltered_ms']:.1f} ms) |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['filter']} | {'yes' if r['index_field'] else 'no'} | {r['ms']:.1f} | {r['ratio']:.2f} |")
    return out


def _passes(meta: dict, flt: dict) -> bool:
    for field, spec in flt.items():
        v = meta.get(field)
        if isinstance(spec, dict):
            if not (spec["$gte"] <= v < spec["$lt"]):
                return False
        elif v != spec:
            return False
    return True


def _pytest(test: str, *extra: str) -> str:
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test, *extra],
                         cwd=ROOT, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [ln for ln in run.stdout.splitlines() if ln.strip()]
    return "\n".join(ln for ln in lines if "in flight" in ln or "passed" in ln or "failed" in ln
                     or "SKIPPED" in ln or "skipped" in ln)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="size,time,modes,filter,crash,langchain")
    ap.add_argument("--size-docs", type=int, default=100_000)
    ap.add_argument("--filter-docs", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--tmp", default=None, help="folder for the filter part's collection (several GB at 1M)")
    args = ap.parse_args(argv)
    parts = set(args.parts.split(","))
    results: dict = {}
    if "size" in parts:
        results["size"] = part_size(args)
    if parts & {"time", "modes"}:
        with tempfile.TemporaryDirectory() as tmp:
            col, enc, corpus, queries = _minilm_collection(tmp)
            if "time" in parts:
                results["time"] = part_time(args, col, enc, corpus)
            if "modes" in parts:
                results["modes"] = part_modes(args, col, queries)
            col.close()
    if "filter" in parts:
        results["filter"] = part_filter(args)
    if "crash" in parts:
        results["crash"] = _pytest("tests/test_collection_crash.py", "-s")
        print("crash:", results["crash"])
    if "langchain" in parts:
        results["langchain"] = _pytest("tests/test_langchain.py", "-rs")
        print("langchain:", results["langchain"])
    print(json.dumps(results, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
