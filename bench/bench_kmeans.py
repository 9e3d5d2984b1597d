"""Training time of simdex's partitions against faiss IndexIVFFlat.train on the same sample, 2 threads each, and
the quality of both sets of centroids (mean cosine of each vector to its nearest centroid, higher is better).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python bench/bench_kmeans.py --n 1000000 --nlist 4096

Data: bench_ivf.py's clustered synthetic generator (or --data real-minilm). Both train 10 iterations on at most
256 vectors per centroid (faiss's defaults, simdex's too). OPENBLAS_* are unset for the run so faiss's BLAS is not
slowed by them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(__file__))
import bench_ivf  # noqa: E402

import simdex  # noqa: E402


def quality(x: np.ndarray, centroids: np.ndarray) -> float:
    c = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
    sample = x[:: max(1, len(x) // 20000)]
    return float(np.max(sample @ c.T, axis=1).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", choices=["real-minilm", "synthetic"], default="synthetic")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--nlist", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    import faiss

    faiss.omp_set_num_threads(2)
    simdex.set_num_threads(2)
    x, _ = bench_ivf.real_minilm() if args.data == "real-minilm" else bench_ivf.synthetic(args.n)
    d = x.shape[1]
    times = {"simdex": [], "faiss": []}
    cents = {}
    for _ in range(args.runs):
        ix = simdex.Index(d, partitions=args.nlist)
        t0 = time.perf_counter()
        ix.train(x)
        times["simdex"].append(time.perf_counter() - t0)
        cents["simdex"] = ix._core.centroids()
        fx = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, args.nlist, faiss.METRIC_INNER_PRODUCT)
        t0 = time.perf_counter()
        fx.train(x)
        times["faiss"].append(time.perf_counter() - t0)
        cents["faiss"] = fx.quantizer.reconstruct_n(0, args.nlist)
    print(f"{args.data} n={len(x)} nlist={args.nlist} cpu={bench_ivf._cpu()}")
    for name in ("simdex", "faiss"):
        print(f"{name:7s} train {np.median(times[name]):8.1f} s   mean cosine to nearest centroid "
              f"{quality(x, cents[name]):.4f}")
    print(f"ratio simdex / faiss: {np.median(times['simdex']) / np.median(times['faiss']):.2f}")


if __name__ == "__main__":
    main()
