"""Dimensionality reduction benchmarks (pytest-benchmark; not part of the default test run).

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE pytest bench/bench_pca.py --benchmark-only
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/bench_pca.py     # the README table, one run

The BLAS settings are unset for the whole run so NumPy, scikit-learn and faiss run at their best here.

- PCA fit on 200K x 768 float32 to 384 components: simdex (default precision: bf16 products on AMX where the
  CPU has it; and precision="float32") vs scikit-learn ``PCA`` (default solver) and faiss ``PCAMatrix``.
  simdex's time includes the eigendecomposition (the first access to ``components_``).
- transform of 200K x 768 to 384: simdex vs NumPy ``x @ W.T``.
- recall@10 against exact 768-d search on real all-mpnet-base-v2 embeddings of the dev-pydocs-linuxman set,
  for PCA (each centering) and random projection at 384 / 256 / 192, plus the task Recall@10 from the labels.
  The embeddings come from ``bench/embed_dataset.py``; set SIMDEX_BENCH_EMBEDDINGS to its output folder
  (default ../cache/mpnet beside the checkout); the recall benchmarks are skipped without them.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pytest
import simdex

N_FIT, DIM, OUT = 200_000, 768, 384
HERE = os.path.dirname(os.path.abspath(__file__))
EMBEDDINGS = os.environ.get("SIMDEX_BENCH_EMBEDDINGS", os.path.join(HERE, "..", "..", "cache", "mpnet"))


def anisotropic_rows(n: int, d: int, seed: int = 0) -> np.ndarray:
    """n x d float32 rows with a power-law variance spectrum and a non-zero mean, like sentence embeddings."""
    rng = np.random.default_rng(seed)
    scale = (np.arange(1, d + 1, dtype=np.float32) ** -0.5) * 0.1
    shift = (rng.standard_normal(d) * 0.02).astype(np.float32)
    out = np.empty((n, d), np.float32)
    for i in range(0, n, 50_000):
        block = rng.standard_normal((min(50_000, n - i), d), dtype=np.float32)
        out[i : i + len(block)] = block * scale + shift
    return out


def load_embeddings():
    """(corpus, queries, doc ids, relevant doc id per query) from bench/embed_dataset.py, or None."""
    try:
        x = np.load(os.path.join(EMBEDDINGS, "corpus.npy"))
        q = np.load(os.path.join(EMBEDDINGS, "queries.npy"))
        with open(os.path.join(EMBEDDINGS, "ids.json")) as f:
            ids = json.load(f)
    except OSError:
        return None
    return x, q, np.array(ids["doc_ids"]), np.array(ids["query_doc_ids"])


def task_recall(ranked: np.ndarray, doc_ids: np.ndarray, relevant: np.ndarray, k: int = 10) -> float:
    return float(np.mean([rel in doc_ids[row[:k]] for row, rel in zip(ranked, relevant)]))


# -- fit -----------------------------------------------------------------------------------------------------
def fit_simdex(x):
    return simdex.PCA(OUT).fit(x).components_


def fit_simdex_fp32(x):
    return simdex.PCA(OUT, precision="float32").fit(x).components_


def fit_sklearn(x):
    from sklearn.decomposition import PCA

    return PCA(OUT).fit(x).components_


def fit_faiss(x):
    import faiss

    pca = faiss.PCAMatrix(x.shape[1], OUT)
    pca.train(x)
    return pca


FITTERS = {"simdex": fit_simdex, "simdex-fp32": fit_simdex_fp32, "sklearn": fit_sklearn, "faiss": fit_faiss}


@pytest.fixture(scope="module")
def big():
    return anisotropic_rows(N_FIT, DIM)


@pytest.mark.parametrize("engine", list(FITTERS))
def test_pca_fit(benchmark, big, engine):
    if engine in ("sklearn", "faiss"):
        pytest.importorskip(engine)
    benchmark.group = f"pca fit {N_FIT} x {DIM} -> {OUT}"
    benchmark.pedantic(FITTERS[engine], args=(big,), rounds=3, warmup_rounds=1)


# -- transform -----------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted(big):
    return simdex.PCA(OUT).fit(big[:20_000])


def test_transform_simdex(benchmark, big, fitted):
    benchmark.group = f"transform {N_FIT} x {DIM} -> {OUT}"
    benchmark.pedantic(fitted.transform, args=(big,), rounds=5, warmup_rounds=1)


def test_transform_numpy(benchmark, big, fitted):
    benchmark.group = f"transform {N_FIT} x {DIM} -> {OUT}"
    wt = np.ascontiguousarray(fitted.components_.T)
    benchmark.pedantic(np.matmul, args=(big, wt), rounds=5, warmup_rounds=1)


# -- recall on real embeddings -------------------------------------------------------------------------------
KINDS = {
    "pca": lambda d: simdex.PCA(d),
    "pca-both": lambda d: simdex.PCA(d, center="both"),
    "pca-none": lambda d: simdex.PCA(d, center="none"),
    "rp": lambda d: simdex.RandomProjection(d),
    "rp-gaussian": lambda d: simdex.RandomProjection(d, kind="gaussian"),
}


@pytest.fixture(scope="module")
def real():
    data = load_embeddings()
    if data is None:
        pytest.skip(f"no embeddings in {EMBEDDINGS} (run bench/embed_dataset.py)")
    x, q, doc_ids, relevant = data
    full = simdex.Index(x.shape[1])
    full.add(x)
    return x, q, doc_ids, relevant, full.search(q, 10).ids


@pytest.mark.parametrize("dim", [384, 256, 192])
@pytest.mark.parametrize("kind", list(KINDS))
def test_recall(benchmark, real, kind, dim):
    x, q, doc_ids, relevant, exact = real
    index = simdex.Index(x.shape[1], transform=KINDS[kind](dim))
    index.add(x)
    benchmark.group = "search 909 queries, reduced"
    got = benchmark.pedantic(index.search, args=(q, 10), rounds=5, warmup_rounds=1).ids
    overlap = float(np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(got, exact)]))
    benchmark.extra_info.update(
        {
            "recall@10 vs exact": overlap,
            "task recall@10": task_recall(got, doc_ids, relevant),
            "task recall@10 full": task_recall(exact, doc_ids, relevant),
        }
    )
    if kind == "pca" and dim == 384:
        assert overlap >= 0.97, f"PCA 768 -> 384 keeps {overlap:.3f} of the exact top-10 (target 0.97)"


# -- the centering variants, in plain NumPy float64 ----------------------------------------------------------
def centering_variants(x, q, doc_ids, relevant, dims=(384, 256, 192)):
    """recall@10 vs exact and task Recall@10 of every way to handle the mean (float64 NumPy, fit on x)."""

    def norm(a):
        n = np.linalg.norm(a, axis=1, keepdims=True)
        return a / np.where(n > 0, n, 1)

    def top10(qr, xr):
        s = qr @ xr.T
        return np.argpartition(-s, 10, axis=1)[:, :10]  # sets: order within the top 10 does not matter here

    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    mu = x64.mean(0)
    exact = top10(q64, x64)
    _, vc = np.linalg.eigh(np.cov(x64, rowvar=False))
    _, vm = np.linalg.eigh(x64.T @ x64)
    rows = []
    for d in dims:
        w, w2 = vc[:, ::-1][:, :d].T, vm[:, ::-1][:, :d].T
        variants = {
            "center both + renormalize (sklearn/FAISS; center='both')": (
                norm((x64 - mu) @ w.T),
                (q64 - mu) @ w.T,
            ),
            "center both, inner product": ((x64 - mu) @ w.T, (q64 - mu) @ w.T),
            "center database only, inner product (simdex center='database')": ((x64 - mu) @ w.T, q64 @ w.T),
            "center database only + renormalize": (norm((x64 - mu) @ w.T), q64 @ w.T),
            "no centering + renormalize (simdex center='none')": (norm(x64 @ w.T), q64 @ w.T),
            "uncentered second moment, inner product": (x64 @ w2.T, q64 @ w2.T),
            "uncentered second moment + renormalize": (norm(x64 @ w2.T), q64 @ w2.T),
        }
        for name, (xr, qr) in variants.items():
            got = top10(qr, xr)
            overlap = float(np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(got, exact)]))
            rows.append((d, name, overlap, task_recall(got, doc_ids, relevant)))
    return rows


# -- one-run table for the README ----------------------------------------------------------------------------
def _median_time(fn, runs, warmup=1):
    for _ in range(warmup):
        fn()
    t = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return float(np.median(t))


def main() -> None:
    print(
        f"simdex {simdex.__version__}, SIMD {simdex.simd_info()['active']}, "
        f"threads {simdex.get_num_threads()}, AMX-BF16 {simdex._core.amx_bf16_usable()}"
    )
    x = anisotropic_rows(N_FIT, DIM)
    runs = int(os.environ.get("SIMDEX_BENCH_RUNS", "3"))
    fit = {}
    for name in FITTERS:  # interleaved rounds, so load changes on a shared machine hit every engine alike
        fit[name] = []
    for _ in range(runs):
        for name, fn in FITTERS.items():
            t0 = time.perf_counter()
            fn(x)
            fit[name].append(time.perf_counter() - t0)
    print(f"\nPCA fit {N_FIT} x {DIM} -> {OUT} (median of {runs}, interleaved)")
    for name, t in fit.items():
        print(
            f"  {name:8s} {np.median(t):7.3f} s   "
            f"simdex speed-up x{np.median(t) / np.median(fit['simdex']):.2f}"
        )

    pca = simdex.PCA(OUT).fit(x[:20_000])
    wt = np.ascontiguousarray(pca.components_.T)
    tr = {"simdex": [], "numpy": []}
    for _ in range(runs + 2):
        t0 = time.perf_counter()
        pca.transform(x)
        tr["simdex"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        np.matmul(x, wt)
        tr["numpy"].append(time.perf_counter() - t0)
    s, n = np.median(tr["simdex"]), np.median(tr["numpy"])
    print(f"\ntransform {N_FIT} x {DIM} -> {OUT} (median of {runs + 2}, interleaved)")
    print(
        f"  simdex {s:.3f} s ({N_FIT / s:,.0f} rows/s), numpy matmul {n:.3f} s: "
        f"simdex/numpy throughput x{n / s:.2f}"
    )
    del x

    data = load_embeddings()
    if data is None:
        print(f"\nno embeddings in {EMBEDDINGS}: run bench/embed_dataset.py for the recall table")
        return
    xe, q, doc_ids, relevant = data
    full = simdex.Index(xe.shape[1])
    full.add(xe)
    exact = full.search(q, 10).ids
    print(
        f"\nreal all-mpnet-base-v2 embeddings: {len(xe)} documents, {len(q)} queries; "
        f"task Recall@10 at 768-d: {task_recall(exact, doc_ids, relevant):.3f}"
    )
    report = simdex.reduction_report(xe, q, dims=[384, 256, 192], kinds=list(KINDS), repeats=5)
    for row in report.rows:
        if row["kind"] == "full":
            row["task R@10"] = task_recall(exact, doc_ids, relevant)
            continue
        index = simdex.Index(xe.shape[1], transform=KINDS[row["kind"]](row["dim"]))
        index.add(xe)
        row["task R@10"] = task_recall(index.search(q, 10).ids, doc_ids, relevant)
    report.COLUMNS = report.COLUMNS + [("task R@10", "{:.3f}")]
    print(report.table())
    print("\ncentering variants (float64 NumPy, PCA fitted on the corpus)")
    print("| dim | variant | recall@10 vs exact | task R@10 |\n|-----|---------|------|------|")
    for d, name, overlap, task in centering_variants(xe, q, doc_ids, relevant):
        print(f"| {d} | {name} | {overlap:.4f} | {task:.3f} |")


if __name__ == "__main__":
    sys.exit(main())
