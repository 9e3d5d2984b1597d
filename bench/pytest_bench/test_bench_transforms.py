"""Dimension reduction: PCA fit and transform, random projection transform. simdex against NumPy (scatter
matrix + ``eigh``; ``(x - mean) @ W.T``) and faiss (``PCAMatrix``, ``RandomRotationMatrix``) on the same rows.
simdex's fit time includes the eigendecomposition (the first read of ``components_``)."""

from __future__ import annotations

import numpy as np
import pytest
import simdex
from _bench import record, unit_rows


@pytest.fixture(scope="session")
def rows(size):
    """n x d rows with a decaying variance spectrum and a non-zero mean, like sentence embeddings."""
    n, d, _ = size["fit"]
    x = unit_rows(n, d, 2)
    x *= (np.arange(1, d + 1, dtype=np.float32) ** -0.5)
    x += np.random.default_rng(3).standard_normal(d).astype(np.float32) * 0.02
    return x


def fit_label(size) -> str:
    n, d, out = size["fit"]
    return f"{n}x{d}->{out}"


def fit_numpy(x, out):
    mean = x.mean(axis=0, dtype=np.float64)
    xc = x - mean.astype(np.float32)
    _, vectors = np.linalg.eigh(xc.T @ xc)
    return mean, np.ascontiguousarray(vectors[:, ::-1][:, :out].T)


@pytest.fixture(scope="session")
def fitted(size, rows):
    out = size["fit"][2]
    return {"simdex": simdex.PCA(out).fit(rows), "numpy": fit_numpy(rows, out)}


@pytest.mark.parametrize("engine", ["simdex", "numpy", "faiss"])
def test_pca_fit(benchmark, request, size, rows, engine):
    n, d, out = size["fit"]
    record(benchmark, f"pca fit {fit_label(size)}", n=n, d=d, out_dim=out)
    if engine == "simdex":
        benchmark.pedantic(lambda: simdex.PCA(out).fit(rows).components_, rounds=3, warmup_rounds=1)
    elif engine == "numpy":
        benchmark.pedantic(fit_numpy, args=(rows, out), rounds=3, warmup_rounds=1)
    else:
        faiss = request.getfixturevalue("faiss")

        def fit():
            pca = faiss.PCAMatrix(d, out)
            pca.train(rows)
            return pca

        benchmark.pedantic(fit, rounds=3, warmup_rounds=1)


@pytest.mark.parametrize("engine", ["simdex", "numpy", "faiss"])
def test_pca_transform(benchmark, request, size, rows, fitted, engine):
    n, d, out = size["fit"]
    record(benchmark, f"pca transform {fit_label(size)}", n=n, d=d, out_dim=out)
    if engine == "simdex":
        y = benchmark.pedantic(fitted["simdex"].transform, args=(rows,), rounds=5, warmup_rounds=1)
    elif engine == "numpy":
        mean, w = fitted["numpy"]
        y = benchmark.pedantic(lambda: (rows - mean.astype(np.float32)) @ w.T, rounds=5, warmup_rounds=1)
    else:
        faiss = request.getfixturevalue("faiss")
        pca = faiss.PCAMatrix(d, out)
        pca.train(rows)
        y = benchmark.pedantic(pca.apply, args=(rows,), rounds=5, warmup_rounds=1)
    assert y.shape == (n, out)


@pytest.mark.parametrize("engine", ["simdex", "numpy", "faiss"])
def test_random_projection_transform(benchmark, request, size, rows, engine):
    n, d, out = size["fit"]
    record(benchmark, f"random projection transform {fit_label(size)}", n=n, d=d, out_dim=out)
    if engine == "simdex":
        rp = simdex.RandomProjection(out).fit(rows)
        y = benchmark.pedantic(rp.transform, args=(rows,), rounds=5, warmup_rounds=1)
    elif engine == "numpy":
        r = np.linalg.qr(np.random.default_rng(0).standard_normal((d, out)))[0].T.astype(np.float32)
        y = benchmark.pedantic(np.matmul, args=(rows, r.T), rounds=5, warmup_rounds=1)
    else:
        faiss = request.getfixturevalue("faiss")
        rr = faiss.RandomRotationMatrix(d, out)
        rr.init(0)
        y = benchmark.pedantic(rr.apply, args=(rows,), rounds=5, warmup_rounds=1)
    assert y.shape == (n, out)
