"""Partitioned (IVF) simdex against approximate-search peers, 2 threads each (bench/README_ivf.md).

For every engine and setting: recall@10 against exact float32 search, batch throughput (all queries in one call,
median of 3), single-query latency p50 (one query per call), build time (train + add) and memory. Summaries: the
fastest setting of each engine that reaches recall 0.95 and 0.99, and a recall / QPS plot.

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/bench_ivf.py --data real-minilm
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/bench_ivf.py --data synthetic --n 1000000

(OPENBLAS_* are unset for the whole run so that faiss, which calls BLAS for its coarse step and training, is not
slowed by them; simdex does not use BLAS.) Peers that are not installed are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import _common  # noqa: E402

import simdex  # noqa: E402

K = 10
THREADS = 2
DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "real-minilm")


def unit(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def real_minilm() -> tuple:
    return unit(np.load(os.path.join(DATA, "base_f16.npy"))), unit(np.load(os.path.join(DATA, "queries_f16.npy")))


def synthetic(n: int, nq: int = 1000, dim: int = 384, seed: int = 7) -> tuple:
    """Clustered unit vectors: 10,000 centers on the sphere; each row is a center plus Gaussian noise whose
    per-dimension scale decays (anisotropic, as embeddings are), renormalized; queries are drawn the same way."""
    rng = np.random.default_rng(seed)
    centers = unit(rng.standard_normal((10_000, dim), dtype=np.float32))
    scale = (0.6 * np.linspace(1.5, 0.3, dim) / np.sqrt(dim)).astype(np.float32)

    def draw(m: int) -> np.ndarray:
        out = np.empty((m, dim), np.float32)
        for i in range(0, m, 100_000):
            b = min(100_000, m - i)
            out[i:i + b] = centers[rng.integers(0, len(centers), b)] + rng.standard_normal((b, dim), np.float32) * scale
        return unit(out)

    return draw(n), draw(nq)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(np.intersect1d(a[a >= 0], b)) / K for a, b in zip(found, truth)]))


def measure(search, queries: np.ndarray, truth: np.ndarray, singles: int = 300) -> dict:
    """search(q) -> ids (nq, K). Batch: all queries in one call (median of 3); single: one per call (p50)."""
    ids = search(queries)
    batch = _common.median(_common.timings(lambda i: search(queries), 3))
    one = _common.timings(lambda i: search(queries[i % len(queries)][None, :]), singles, warmup=20)
    return {"recall": recall(ids, truth), "batch_qps": len(queries) / batch,
            "single_ms_p50": 1e3 * float(np.median(one))}


# -- engines: each yields (setting, search function) after building; build time and memory are recorded --------
def simdex_ivf(x, nlist, dtype, sweeps):
    ko = dtype == "int8"
    ix = simdex.Index(x.shape[1], dtype=dtype, keep_originals=ko, partitions=nlist)
    t0 = time.perf_counter()
    ix.add(x)
    build = time.perf_counter() - t0
    mem = ix.memory_usage()
    for nprobe in sweeps:
        for rescore in ([None] if not ko else [None, 2]):
            yield ({"nprobe": nprobe, "rescore": rescore}, build, mem,
                   lambda q, n=nprobe, r=rescore: ix.search(q, K, nprobe=n, rescore=r).ids)


def faiss_ivf(x, nlist, kind, sweeps):
    import faiss

    d = x.shape[1]
    quant = faiss.IndexFlatIP(d)
    ix = (faiss.IndexIVFFlat(quant, d, nlist, faiss.METRIC_INNER_PRODUCT) if kind == "flat" else
          faiss.IndexIVFScalarQuantizer(quant, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT))
    t0 = time.perf_counter()
    ix.train(x)
    ix.add(x)
    build = time.perf_counter() - t0
    mem = len(faiss.serialize_index(ix))
    for nprobe in sweeps:
        def search(q, n=nprobe):
            ix.nprobe = n
            return ix.search(q, K)[1]
        yield {"nprobe": nprobe}, build, mem, search


def faiss_hnsw(x, sweeps):
    import faiss

    ix = faiss.IndexHNSWFlat(x.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    ix.hnsw.efConstruction = 128
    t0 = time.perf_counter()
    ix.add(x)
    build = time.perf_counter() - t0
    mem = len(faiss.serialize_index(ix))
    for ef in sweeps:
        def search(q, e=ef):
            ix.hnsw.efSearch = e
            return ix.search(q, K)[1]
        yield {"ef": ef}, build, mem, search


def hnswlib_engine(x, sweeps):
    import hnswlib

    ix = hnswlib.Index(space="ip", dim=x.shape[1])
    ix.init_index(max_elements=len(x), M=16, ef_construction=128, random_seed=1)
    ix.set_num_threads(THREADS)
    t0 = time.perf_counter()
    ix.add_items(x, np.arange(len(x)))
    build = time.perf_counter() - t0
    mem = len(x) * (x.shape[1] * 4 + 16 * 2 * 4 + 8)  # vectors + level-0 links + label (hnswlib's layout)
    for ef in sweeps:
        def search(q, e=ef):
            ix.set_ef(max(e, K))
            return ix.knn_query(q, k=K, num_threads=THREADS)[0].astype(np.int64)
        yield {"ef": ef}, build, mem, search


def usearch_engine(x, sweeps):
    from usearch.index import Index as UIndex

    ix = UIndex(ndim=x.shape[1], metric="ip", dtype="f32", connectivity=16, expansion_add=128)
    t0 = time.perf_counter()
    ix.add(np.arange(len(x)), x, threads=THREADS)
    build = time.perf_counter() - t0
    mem = ix.memory_usage
    for ef in sweeps:
        def search(q, e=ef):
            ix.expansion_search = max(e, K)
            return ix.search(q, K, threads=THREADS).keys.reshape(len(q), K).astype(np.int64)
        yield {"ef": ef}, build, mem, search


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=["real-minilm", "synthetic"], default="real-minilm")
    ap.add_argument("--n", type=int, default=1_000_000, help="synthetic rows")
    ap.add_argument("--nlist", type=int, default=0, help="partitions (default: 1024 at 100K, 4096 at 1M)")
    ap.add_argument("--engines", default="simdex-f32,simdex-int8,faiss-ivf,faiss-ivfsq8,faiss-hnsw,hnswlib,usearch")
    ap.add_argument("--out", default="bench/results_ivf.json")
    ap.add_argument("--plot", default="")
    args = ap.parse_args()

    simdex.set_num_threads(THREADS)
    try:
        import faiss

        faiss.omp_set_num_threads(THREADS)
    except ImportError:
        pass
    x, q = real_minilm() if args.data == "real-minilm" else synthetic(args.n)
    nlist = args.nlist or (1024 if len(x) <= 200_000 else 4096)
    exact = simdex.Index(x.shape[1], metric="ip")
    exact.add(x)
    truth = exact.search(q, K).ids
    del exact
    probes = [p for p in (4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256) if p <= nlist]
    efs = [16, 24, 32, 48, 64, 96, 128, 192, 256]
    engines = {
        "simdex-f32": lambda: simdex_ivf(x, nlist, "float32", probes),
        "simdex-int8": lambda: simdex_ivf(x, nlist, "int8", probes),
        "faiss-ivf": lambda: faiss_ivf(x, nlist, "flat", probes),
        "faiss-ivfsq8": lambda: faiss_ivf(x, nlist, "sq8", probes),
        "faiss-hnsw": lambda: faiss_hnsw(x, efs),
        "hnswlib": lambda: hnswlib_engine(x, efs),
        "usearch": lambda: usearch_engine(x, efs),
    }
    rows = []
    for name in args.engines.split(","):
        try:
            gen = engines[name]()
            for setting, build, mem, search in gen:
                r = {"engine": name, **setting, "build_s": build, "memory_bytes": int(mem), **measure(search, q, truth)}
                rows.append(r)
                print(json.dumps(r), flush=True)
                if r["recall"] >= 0.999:
                    break
        except ImportError as e:
            print(f"skipping {name}: {e}", flush=True)
    meta = {"data": args.data, "n": len(x), "nq": len(q), "nlist": nlist, "k": K, "threads": THREADS,
            "cpu": _cpu()}
    with open(args.out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    summarize(rows)
    if args.plot:
        plot(rows, args.plot, meta)


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


def summarize(rows: list) -> None:
    for target in (0.95, 0.99):
        print(f"\n== fastest setting per engine at recall@10 >= {target}")
        for name in dict.fromkeys(r["engine"] for r in rows):
            ok = [r for r in rows if r["engine"] == name and r["recall"] >= target]
            if not ok:
                print(f"{name:14s} never reaches it (best {max(r['recall'] for r in rows if r['engine'] == name):.4f})")
                continue
            b = max(ok, key=lambda r: r["batch_qps"])
            s = min(ok, key=lambda r: r["single_ms_p50"])
            print(f"{name:14s} batch {b['batch_qps']:9.0f} q/s (recall {b['recall']:.4f}, {_setting(b)})   "
                  f"single p50 {s['single_ms_p50']:.3f} ms ({_setting(s)})   build {b['build_s']:.1f} s")


def _setting(r: dict) -> str:
    return ", ".join(f"{k}={r[k]}" for k in ("nprobe", "rescore", "ef") if k in r and r[k] is not None)


def plot(rows: list, path: str, meta: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    for name in dict.fromkeys(r["engine"] for r in rows):
        pts = sorted((r["recall"], r["batch_qps"]) for r in rows if r["engine"] == name)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    ax.set_xlabel("recall@10")
    ax.set_ylabel("batch queries / s (log)")
    ax.set_yscale("log")
    ax.set_xlim(0.8, 1.001)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(f"{meta['data']} {meta['n']:,} x 384, {meta['threads']} threads, {meta['cpu']}")
    fig.savefig(path, dpi=110, bbox_inches="tight")


if __name__ == "__main__":
    main()
