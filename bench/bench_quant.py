"""Fewer bytes, same answers: certified-exact int8 and binary codes with rescoring, against float32, same run.

    .venv/bin/python bench/bench_quant.py                       # both parts
    .venv/bin/python bench/bench_quant.py --part int8           # real-minilm: 100K x 384, 1,000 queries, k = 10
    .venv/bin/python bench/bench_quant.py --part binary --speed-n 1000000
    .venv/bin/python bench/bench_quant.py --part binary-ivf    # binary codes in 1,024 partitions, real-minilm

int8: whether every query's ids equal the float32 index's (ties within float32 rounding aside, see docs/int8.md),
the largest score difference, rows rescored per query (median / p99 / max), and time per query (single: one query
per call, p50; batch: all queries in one call, median of 5; the variants take turns call by call) for float32,
int8 and int8 exact.
binary: recall@10 against exact float32 on real-minilm for the binary index at R = none, 1, 4, 10, 20 (rescored
with the kept originals), the same for plain sign bits without a centre (NumPy, same asymmetric scoring, to show
what centring changes), then on clustered synthetic N x 384 (--speed-n) bytes per vector and single / 1,000-query
batch time of binary and binary + rescore (float originals, or keep_originals="int8") against float32. With faiss installed, also faiss IndexBinaryFlat on
sign bits (sentence-transformers' "ubinary" codes) + Hamming top k * R + float rescoring in NumPy, and with
sentence-transformers installed its own semantic_search_faiss(corpus_precision="ubinary", rescore_multiplier=R),
same run.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402
import bench_ivf  # noqa: E402

import simdex  # noqa: E402


def real_minilm_exact():
    """real-minilm (vectors, queries) and its exact float32 index."""
    x, q = bench_ivf.real_minilm()
    f32 = simdex.Index(384)
    f32.add(x)
    return x, q, f32


def timed(variants: dict, q: np.ndarray, singles: int, batches: int) -> dict:
    """Each fn(queries) of variants timed one query per call (p50 of `singles`) and all queries in one call (median
    of `batches`), the variants taking turns (_common.interleaved_timings)."""
    single = _common.interleaved_timings({name: (lambda i, fn=fn: fn(q[i % len(q)][None, :]))
                                          for name, fn in variants.items()}, singles, warmup=10)
    batch = _common.interleaved_timings({name: (lambda i, fn=fn: fn(q)) for name, fn in variants.items()}, batches)
    return {name: {"single_ms_p50": 1e3 * float(np.median(single[name])), "batch_ms": 1e3 * _common.median(batch[name])}
            for name in variants}


def int8_part() -> dict:
    x, q, f32 = real_minilm_exact()
    k = 10
    i8 = simdex.Index(384, dtype="int8", keep_originals=True)
    i8.add(x)
    ref = f32.search(q, k)
    got = i8.search(q, k, exact=True)
    rescored = i8.last_exact_rescored
    same = float((got.ids == ref.ids).all(axis=1).mean())
    out = {"cpu": bench_ivf._cpu(), "queries": len(q), "k": k, "ids_equal_share": same,
           "max_score_diff": float(np.abs(got.scores - ref.scores).max()),
           "rescored_median": float(np.median(rescored)), "rescored_p99": float(np.percentile(rescored, 99)),
           "rescored_max": int(rescored.max())}
    variants = {"float32": lambda qq: f32.search(qq, k), "int8": lambda qq: i8.search(qq, k),
                "int8 exact": lambda qq: i8.search(qq, k, exact=True)}
    out.update(timed(variants, q, 300, 5))
    for name in ("int8", "int8 exact"):
        out[name]["single_vs_float32"] = out[name]["single_ms_p50"] / out["float32"]["single_ms_p50"]
        out[name]["batch_vs_float32"] = out[name]["batch_ms"] / out["float32"]["batch_ms"]
    return out


RS = (1, 4, 10, 20)


def recall_at(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(a[a >= 0], b)) / truth.shape[1] for a, b in zip(found, truth)]))


def plain_sign_recall(x: np.ndarray, q: np.ndarray, truth: np.ndarray, k: int) -> dict:
    """Sign bits without a centre, the float query against the +-1 codes, candidates rescored exactly (NumPy)."""
    coarse = q @ np.where(x > 0, 1.0, -1.0).astype(np.float32).T
    out = {}
    for r in RS:
        cand = np.argpartition(-coarse, k * r, axis=1)[:, : k * r]
        exact = np.einsum("qd,qcd->qc", q, x[cand])
        out[f"R={r}"] = recall_at(np.take_along_axis(cand, np.argsort(-exact, axis=1)[:, :k], 1), truth)
    return out


def faiss_binary(x: np.ndarray, threads: int):
    """faiss IndexBinaryFlat on sign bits (sentence-transformers' "ubinary": np.packbits(x > 0)), Hamming top k * R,
    rescored with the float rows in NumPy: search(q, k, R) -> ids. None when faiss is not installed."""
    try:
        import faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(threads)
    index = faiss.IndexBinaryFlat(x.shape[1])
    index.add(np.packbits(x > 0, axis=1))

    def search(q: np.ndarray, k: int, r: int) -> np.ndarray:
        # One OpenMP thread for a single query: with 2 on the shared 2 vCPUs a query took 25-130 ms, not 7-9.
        faiss.omp_set_num_threads(1 if len(q) == 1 else threads)
        _, cand = index.search(np.packbits(q > 0, axis=1), k * r)
        exact = np.einsum("qd,qcd->qc", q, x[cand])
        return np.take_along_axis(cand, np.argsort(-exact, axis=1)[:, :k], 1)

    return search


def st_binary(x: np.ndarray, threads: int):
    """sentence-transformers' own recipe: semantic_search_faiss(corpus_precision="ubinary", rescore_multiplier=R),
    which takes the Hamming top k * R from a faiss IndexBinaryFlat and re-ranks them by the float query against the
    candidates' bits: search(q, k, R) -> ids. None when sentence-transformers or faiss is not installed."""
    try:
        import faiss
        from sentence_transformers.util.quantization import quantize_embeddings, semantic_search_faiss
    except ImportError:
        return None
    faiss.omp_set_num_threads(threads)
    codes = quantize_embeddings(x, precision="ubinary")
    _, _, index = semantic_search_faiss(x[:1], corpus_embeddings=codes, corpus_precision="ubinary", top_k=1,
                                        output_index=True)

    def search(q: np.ndarray, k: int, r: int) -> np.ndarray:
        faiss.omp_set_num_threads(1 if len(q) == 1 else threads)
        hits, _ = semantic_search_faiss(q, corpus_index=index, corpus_precision="ubinary", top_k=k,
                                        rescore_multiplier=r)
        return np.array([[h["corpus_id"] for h in row] + [-1] * (k - len(row)) for row in hits])

    return search


def binary_part(speed_n: int) -> dict:
    k = 10
    x, q, f32 = real_minilm_exact()
    truth = f32.search(q, k).ids
    b = simdex.Index(384, dtype="binary", keep_originals=True)
    b.add(x)
    b8 = simdex.Index(384, dtype="binary", keep_originals="int8")
    b8.add(x)
    rec = {"none": recall_at(b.search(q, k).ids, truth)}
    for r in RS:
        rec[f"R={r}"] = recall_at(b.search(q, k, rescore=r).ids, truth)
        rec[f"int8 tier R={r}"] = recall_at(b8.search(q, k, rescore=r).ids, truth)
    out = {"cpu": bench_ivf._cpu(), "recall_real_minilm": rec,
           "recall_plain_sign_numpy": plain_sign_recall(x, q, truth, k)}
    fb = faiss_binary(x, 2)
    if fb is not None:
        out["recall_faiss_binaryflat_rescored"] = {f"R={r}": recall_at(fb(q, k, r), truth) for r in RS}
    st = st_binary(x, 2)
    if st is not None:
        out["recall_sentence_transformers_ubinary"] = {f"R={r}": recall_at(st(q, k, r), truth) for r in RS}
    del f32, b, b8, fb, st
    x, q = bench_ivf.synthetic(speed_n)
    f32 = simdex.Index(384)
    f32.add(x)
    bits = simdex.Index(384, dtype="binary")
    bits.add(x)
    kept = simdex.Index(384, dtype="binary", keep_originals=True)
    kept.add(x)
    tier = simdex.Index(384, dtype="binary", keep_originals="int8")
    tier.add(x)
    fb = faiss_binary(x, 2)
    st = st_binary(x, 2)
    del x
    out["speed_n"] = speed_n
    out["bytes_per_vector"] = {"float32": f32.memory_usage() / speed_n, "binary": bits.memory_usage() / speed_n,
                               "binary+originals": kept.memory_usage() / speed_n,
                               "binary+int8 tier": tier.memory_usage() / speed_n}
    variants = {"float32": lambda qq: f32.search(qq, k), "binary": lambda qq: bits.search(qq, k),
                "binary+rescore4": lambda qq: kept.search(qq, k, rescore=4),
                "binary+rescore10": lambda qq: kept.search(qq, k, rescore=10),
                "binary+int8 tier rescore10": lambda qq: tier.search(qq, k, rescore=10)}
    if fb is not None:  # the float rows stay referenced by the closure for rescoring
        variants["faiss IndexBinaryFlat+rescore4"] = lambda qq: fb(qq, k, 4)
        variants["faiss IndexBinaryFlat+rescore10"] = lambda qq: fb(qq, k, 10)
    if st is not None:
        variants["sentence-transformers ubinary rescore4"] = lambda qq: st(qq, k, 4)
        variants["sentence-transformers ubinary rescore10"] = lambda qq: st(qq, k, 10)
    out.update(timed(variants, q, 200, 3))
    for name in list(variants)[1:]:
        out[name]["float32_over_this_single"] = out["float32"]["single_ms_p50"] / out[name]["single_ms_p50"]
        out[name]["float32_over_this_batch"] = out["float32"]["batch_ms"] / out[name]["batch_ms"]
    return out


def binary_ivf_part() -> dict:
    """Binary codes in partitions (real-minilm, 1,024 partitions, float rows kept): recall@10 against exact float32
    and 1,000-query batch time per nprobe and rescore depth, next to the exact binary index (same run)."""
    k, parts = 10, 1024
    x, q, f32 = real_minilm_exact()
    truth = f32.search(q, k).ids
    flat = simdex.Index(384, dtype="binary", keep_originals=True)
    flat.add(x)
    ivf = simdex.Index(384, dtype="binary", keep_originals=True, partitions=parts)
    ivf.add(x)
    out = {"cpu": bench_ivf._cpu(), "partitions": parts, "rows": []}
    for nprobe in (None, 8, 16, 32, 64, 128):
        index, probe = (flat, {}) if nprobe is None else (ivf, {"nprobe": nprobe})
        for r in (4, 10):
            def fn(qq, index=index, probe=probe, r=r):
                return index.search(qq, k, rescore=r, **probe)
            row = {"nprobe": nprobe or "exact binary", "rescore": r, "recall": recall_at(fn(q).ids, truth)}
            out["rows"].append({**row, **timed({"this": fn}, q, 200, 3)["this"]})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["int8", "binary", "binary-ivf", "all"], default="all")
    ap.add_argument("--speed-n", type=int, default=1_000_000, help="rows of the binary speed check")
    args = ap.parse_args()
    simdex.set_num_threads(2)
    out = {}
    if args.part in ("int8", "all"):
        out["int8"] = int8_part()
    if args.part in ("binary", "all"):
        out["binary"] = binary_part(args.speed_n)
    if args.part in ("binary-ivf", "all"):
        out["binary_ivf"] = binary_ivf_part()
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
