"""PCA and random projection against NumPy float64 references, at every SIMD level, in an Index and a file."""

import numpy as np
import pytest
import simdex
from simdex import _core

LEVELS = simdex.simd_info()["supported"]


def anisotropic(rng, n, d, mean=0.5):
    """Rows with clearly separated variances per direction (a rotation of decreasing scales) plus a mean."""
    scales = np.linspace(3.0, 0.1, d)
    rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return ((rng.standard_normal((n, d)) * scales) @ rot.T + mean * rng.standard_normal(d)).astype(np.float32)


def reference_pca(x, k):
    """float64 NumPy PCA: components (k, d) strongest first, variances (n - 1 denominator), ratios, mean."""
    x64 = x.astype(np.float64)
    mean = x64.mean(0)
    cov = np.cov(x64, rowvar=False)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1]
    return vectors[:, order[:k]].T, values[order[:k]], values[order[:k]] / values.sum(), mean


def assert_same_up_to_sign(a, b, atol):
    signs = np.sign(np.sum(a * b, axis=1))
    np.testing.assert_allclose(a * signs[:, None], b, atol=atol)


# -- the core pieces -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize(
    "n,d,out", [(1, 3, 1), (5, 7, 3), (13, 50, 13), (97, 97, 40), (200, 33, 33), (31, 768, 384)]
)
def test_projection_matches_matmul(isa, n, d, out, rng):
    x = rng.standard_normal((n, d)).astype(np.float32) + 2.0
    w = rng.standard_normal((out, d)).astype(np.float32)
    bias = rng.standard_normal(out).astype(np.float32)
    ref = x.astype(np.float64) @ w.T.astype(np.float64) - bias
    with simdex.simd_override(isa):
        got = _core.LinearProjection(w, bias).apply(x)
        plain = _core.LinearProjection(w, None).apply(x)
    tol = 4 * d * np.finfo(np.float32).eps * (np.abs(x).astype(np.float64) @ np.abs(w).T.astype(np.float64))
    assert got.shape == (n, out) and got.dtype == np.float32
    assert np.all(np.abs(got - ref) <= tol + 4 * np.finfo(np.float32).eps * np.abs(bias))
    assert np.all(np.abs(plain - (ref + bias)) <= tol)


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize(
    "n,d", [(2, 1), (7, 5), (50, 33), (4500, 20)]
)  # 4500 rows: several accumulation chunks
def test_moments_match_float64(isa, n, d, rng):
    x = rng.standard_normal((n, d)).astype(np.float32) * 2 + 1
    acc = _core.MomentAccumulator(d)
    with simdex.simd_override(isa):
        for part in np.array_split(x, 3):
            acc.add(part)
    x64 = x.astype(np.float64)
    mean = x64.mean(0)
    assert acc.count == n
    np.testing.assert_allclose(acc.mean(), mean, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(acc.scatter(), (x64 - mean).T @ (x64 - mean), rtol=1e-5, atol=1e-4 * n)
    np.testing.assert_allclose(acc.second_moment(), x64.T @ x64, rtol=1e-5, atol=1e-4 * n)


@pytest.mark.skipif(not _core.amx_bf16_usable(), reason="needs AMX-BF16")
@pytest.mark.parametrize("n,d", [(1, 1), (5, 3), (33, 40), (700, 97), (1500, 33), (3000, 64)])
def test_bf16_moments_are_close_to_float64(n, d, rng):
    # Products of bf16-rounded z = x - shift (shift: the first batch's mean): each within 2^-8 relative, so
    # |error| <= 2^-8 |z|^T |z| (+ float rounding). The mean stays exact.
    x = rng.standard_normal((n, d)).astype(np.float32) * 2 + 1
    acc = _core.MomentAccumulator(d, True)
    parts = np.array_split(x, 3)
    for part in parts:
        acc.add(part)
    x64 = x.astype(np.float64)
    mean = x64.mean(0)
    ref = (x64 - mean).T @ (x64 - mean)
    first = parts[0] if len(parts[0]) else x
    z = np.abs(x64 - first.astype(np.float64).mean(0))
    np.testing.assert_allclose(acc.mean(), mean, rtol=1e-6, atol=1e-6)
    assert np.all(np.abs(acc.scatter() - ref) <= 2**-8 * (z.T @ z) + 1e-5 * np.abs(ref).max())
    with simdex.simd_override("avx2"):  # a lowered SIMD level turns AMX off too
        assert not _core.amx_bf16_usable()


def test_moments_keep_precision_with_a_large_mean(rng):
    # Mean 1000, spread 0.01: a naive float32 E[x^2] - mean^2 would lose every digit of the variance.
    x = (1000.0 + 0.01 * rng.standard_normal((3000, 4))).astype(np.float32)
    acc = _core.MomentAccumulator(4)
    for part in np.array_split(x, 5):
        acc.add(part)
    x64 = x.astype(np.float64)
    ref = np.cov(x64, rowvar=False) * (len(x) - 1)
    np.testing.assert_allclose(acc.scatter(), ref, rtol=1e-3, atol=1e-3 * np.abs(ref).max())


# -- PCA -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("precision,atol,rtol", [("float32", 1e-4, 1e-5), ("auto", 2e-3, 1e-3)])
def test_pca_matches_numpy_float64_reference(precision, atol, rtol, rng):
    x = anisotropic(rng, 3000, 24)
    pca = simdex.PCA(10, precision=precision).fit(x)
    comps, var, ratio, mean = reference_pca(x, 10)
    assert pca.components_.shape == (10, 24) and pca.components_.dtype == np.float32
    assert_same_up_to_sign(pca.components_.astype(np.float64), comps, atol=atol)
    np.testing.assert_allclose(pca.explained_variance_, var, rtol=rtol)
    np.testing.assert_allclose(pca.explained_variance_ratio_, ratio, rtol=rtol)
    np.testing.assert_allclose(pca.mean_, mean, rtol=1e-6, atol=1e-6)
    assert pca.n_samples_seen_ == 3000


def test_pca_components_are_orthonormal_with_fixed_signs(rng):
    pca = simdex.PCA(12).fit(anisotropic(rng, 500, 30))
    w = pca.components_.astype(np.float64)
    np.testing.assert_allclose(w @ w.T, np.eye(12), atol=1e-5)
    assert np.all(w[np.arange(12), np.argmax(np.abs(w), axis=1)] > 0)
    assert np.all(np.diff(pca.explained_variance_) <= 0)


def test_partial_fit_over_batches_equals_one_fit(rng):
    x = anisotropic(rng, 5000, 40)
    whole = simdex.PCA(16, precision="float32").fit(x)
    parts = simdex.PCA(16, precision="float32")
    for batch in np.array_split(x, [1, 700, 701, 3000]):  # uneven, including one-row batches
        parts.partial_fit(batch)
    assert parts.n_samples_seen_ == 5000
    np.testing.assert_allclose(parts.mean_, whole.mean_, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(parts.components_, whole.components_, atol=1e-4)
    np.testing.assert_allclose(parts.explained_variance_, whole.explained_variance_, rtol=1e-5)


def test_full_rank_pca_explains_everything(rng):
    pca = simdex.PCA(8).fit(anisotropic(rng, 400, 8))
    assert pca.explained_variance_ratio_.sum() == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("isa", LEVELS)
def test_pca_transform_matches_float64_matmul(isa, rng):
    x = anisotropic(rng, 1000, 48)
    q = rng.standard_normal((37, 48)).astype(np.float32)
    pca = simdex.PCA(20).fit(x)
    w, mean = pca.components_.astype(np.float64), pca.mean_
    with simdex.simd_override(isa):
        got_db, got_q = pca.transform(x), pca.transform_query(q)
    np.testing.assert_allclose(got_db, (x - mean) @ w.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_q, q @ w.T, rtol=1e-4, atol=1e-4)  # center="database": queries uncentered


def test_pca_centering_variants(rng):
    x = anisotropic(rng, 800, 16)
    q = rng.standard_normal((5, 16)).astype(np.float32)
    both = simdex.PCA(6, center="both").fit(x)
    w, mean = both.components_.astype(np.float64), both.mean_
    np.testing.assert_allclose(both.transform_query(q), (q - mean) @ w.T, rtol=1e-4, atol=1e-4)
    none = simdex.PCA(6, center="none", precision="float32").fit(x)
    np.testing.assert_array_equal(none.components_, simdex.PCA(6, precision="float32").fit(x).components_)
    np.testing.assert_allclose(
        none.transform(x), x @ none.components_.T.astype(np.float64), rtol=1e-4, atol=1e-4
    )


def test_fit_transform_and_whiten(rng):
    x = anisotropic(rng, 4000, 12)
    pca = simdex.PCA(5, whiten=True, precision="float32")
    y = pca.fit_transform(x)
    np.testing.assert_allclose(y, pca.transform(x))
    np.testing.assert_allclose(y.var(axis=0, ddof=1), np.ones(5), rtol=1e-3)
    np.testing.assert_allclose(y.mean(axis=0), np.zeros(5), atol=1e-4)


def test_fit_discards_the_previous_fit(rng):
    pca = simdex.PCA(3).fit(anisotropic(rng, 100, 10))
    pca.fit(anisotropic(rng, 60, 6))
    assert pca.in_dim == 6 and pca.n_samples_seen_ == 60 and pca.components_.shape == (3, 6)


# -- random projection ---------------------------------------------------------------------------------------
def test_orthogonal_projection_is_orthonormal_and_seeded(rng):
    x = rng.standard_normal((3, 100)).astype(np.float32)
    rp = simdex.RandomProjection(40, seed=7).fit(x)
    w = rp.components_.astype(np.float64)
    np.testing.assert_allclose(w @ w.T, np.eye(40), atol=1e-5)
    np.testing.assert_array_equal(simdex.RandomProjection(40, seed=7).fit(x).components_, rp.components_)
    assert not np.allclose(simdex.RandomProjection(40, seed=8).fit(x).components_, rp.components_)
    np.testing.assert_allclose(rp.transform(x), x @ w.T, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(rp.mean_, np.zeros(100))


def test_gaussian_and_sparse_projections_preserve_norms_on_average(rng):
    x = rng.standard_normal((400, 256)).astype(np.float32)
    norms = np.sum(x.astype(np.float64) ** 2, axis=1)
    for kind in ("gaussian", "sparse"):
        # Averaged over draws: one sparse matrix's squared norm is off by ~2% (its non-zero count varies).
        ratios = [
            np.sum(
                simdex.RandomProjection(128, kind=kind, seed=s).fit(x).transform(x).astype(np.float64) ** 2,
                axis=1,
            )
            / norms
            for s in range(6)
        ]
        assert abs(np.mean(ratios) - 1) < 0.03, kind
    w = simdex.RandomProjection(128, kind="sparse", seed=3).fit(x).components_
    density = np.mean(w != 0)
    assert abs(density - 1 / 16) < 0.01
    np.testing.assert_allclose(np.unique(np.abs(w[w != 0])), [np.sqrt(16 / 128)], rtol=1e-6)


def test_random_projection_has_no_explained_variance(rng):
    rp = simdex.RandomProjection(4).fit(rng.standard_normal((2, 8)))
    with pytest.raises(AttributeError, match="does not look at the data"):
        _ = rp.explained_variance_ratio_


# -- bad input -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [simdex.PCA, simdex.RandomProjection])
def test_bad_out_dim(make, rng):
    with pytest.raises(ValueError, match="out_dim: expected a positive integer, got 0"):
        make(0)
    with pytest.raises(ValueError, match="got -3"):
        make(-3)
    with pytest.raises(TypeError, match="got a bool"):
        make(True)
    with pytest.raises(TypeError, match="got float"):
        make(2.5)
    with pytest.raises(ValueError, match="out_dim: expected at most the input dimension 8, got 9"):
        make(9).fit(rng.standard_normal((20, 8)))


@pytest.mark.parametrize("make", [lambda: simdex.PCA(2), lambda: simdex.RandomProjection(2)])
def test_transform_before_fit(make):
    t = make()
    assert not t.is_fitted
    with pytest.raises(ValueError, match="not fitted yet; call fit"):
        t.transform(np.ones((1, 4)))
    with pytest.raises(ValueError, match="not fitted yet"):
        t.transform_query(np.ones((1, 4)))


def test_nan_and_inf_are_refused(rng):
    x = rng.standard_normal((50, 6)).astype(np.float32)
    bad = x.copy()
    bad[17, 3] = np.nan
    pca = simdex.PCA(2)
    with pytest.raises(ValueError, match="expected finite values"):
        pca.fit(bad)
    pca.partial_fit(x)
    before = pca.components_.copy()
    bad[17, 3] = np.inf
    with pytest.raises(ValueError, match="expected finite values"):
        pca.partial_fit(bad)
    assert pca.n_samples_seen_ == 50  # the failed batch left nothing behind
    np.testing.assert_array_equal(pca.components_, before)
    with pytest.raises(ValueError, match="x: expected finite values, got NaN or Inf in rows"):
        pca.transform(bad)
    rp = simdex.RandomProjection(3).fit(x)
    with pytest.raises(ValueError, match="queries: expected finite values"):
        rp.transform_query(bad)


def test_wrong_dim_and_shape(rng):
    pca = simdex.PCA(2).fit(rng.standard_normal((30, 5)))
    with pytest.raises(ValueError, match=r"expected 5 columns .* got shape \(3, 4\)"):
        pca.transform(np.ones((3, 4)))
    with pytest.raises(ValueError, match="expected 5 columns"):
        pca.partial_fit(np.ones((3, 6)))
    with pytest.raises(ValueError, match="2-D array"):
        pca.transform(np.ones((2, 2, 5)))
    with pytest.raises(TypeError, match="numeric"):
        pca.transform(np.array([["a"] * 5]))


def test_bad_parameters():
    with pytest.raises(ValueError, match="center: expected one of"):
        simdex.PCA(2, center="query")
    with pytest.raises(ValueError, match="precision: expected one of"):
        simdex.PCA(2, precision="float16")
    with pytest.raises(ValueError, match="kind: expected one of"):
        simdex.RandomProjection(2, kind="hadamard")
    with pytest.raises(ValueError, match="seed: expected a non-negative integer"):
        simdex.RandomProjection(2, seed=-1)
    with pytest.raises(ValueError, match="at least 2 training rows"):
        _ = simdex.PCA(1).fit(np.ones((1, 3))).components_


# -- as an index pre-transform -------------------------------------------------------------------------------
def low_rank(rng, n, d, rank):
    """Unit rows that lie in a rank-dimensional subspace (plus nothing else)."""
    x = rng.standard_normal((n, rank)) @ rng.standard_normal((rank, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_index_with_pca_ranks_like_full_search_when_nothing_is_lost(metric, rng):
    x = low_rank(rng, 600, 48, 12)
    q = low_rank(rng, 20, 48, 12)  # different subspace draws, so queries are not in the data's span
    full = simdex.Index(48, metric)
    full.add(x)
    reduced = simdex.Index(48, metric, transform=simdex.PCA(12, precision="float32"))
    reduced.add(x)
    assert reduced.dim == 48 and reduced.metric == metric and reduced.transform.is_fitted
    exact, got = full.search(q, 10), reduced.search(q, 10)
    # Scores are q . (mean + P (x - mean)): the full score when the subspace holds x entirely.
    np.testing.assert_allclose(got.scores, exact.scores, atol=1e-4)
    assert np.mean(got.ids == exact.ids) > 0.99


def test_index_scores_are_inner_products_with_the_pca_reconstruction(rng):
    x = anisotropic(rng, 700, 32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = rng.standard_normal((6, 32)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    pca = simdex.PCA(8)
    index = simdex.Index(32, transform=pca)
    index.add(x)
    w, mean = pca.components_.astype(np.float64), pca.mean_
    recon = mean + ((x - mean) @ w.T) @ w
    ref = q @ recon.T
    got = index.search(q, 5)
    np.testing.assert_allclose(got.scores, np.take_along_axis(ref, got.ids, axis=1), atol=1e-4)
    np.testing.assert_array_equal(got.ids[:, 0], np.argmax(ref, axis=1))


def test_index_min_score_and_filter_with_a_transform(rng):
    x = anisotropic(rng, 400, 16)
    index = simdex.Index(16, transform=simdex.PCA(6))
    index.add(x)
    q = x[:3]
    plain = index.search(q, 20)
    floor = float(np.median(plain.scores))
    cut = index.search(q, 20, min_score=floor)
    kept = plain.scores >= floor
    np.testing.assert_array_equal(cut.ids[kept], plain.ids[kept])
    assert np.all(cut.ids[~kept] == -1) and np.all(np.isneginf(cut.scores[~kept]))
    allow = np.arange(0, 400, 7)
    filtered = index.search(q, 5, filter=allow)
    assert np.isin(filtered.ids, allow).all()


def test_index_trains_on_first_add_or_on_train(rng):
    x = anisotropic(rng, 300, 20)
    a = simdex.Index(20, transform=simdex.PCA(5))
    a.add(x)
    b = simdex.Index(20, transform=simdex.PCA(5))
    b.train(x)
    b.add(x[:10])
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)  # cosine: trained on normalized rows
    np.testing.assert_allclose(a.transform.components_, simdex.PCA(5).fit(xn).components_, atol=1e-5)
    np.testing.assert_allclose(b.transform.components_, a.transform.components_, atol=1e-6)
    with pytest.raises(ValueError, match="already holds 10 vectors"):
        b.train(x)
    with pytest.raises(ValueError, match="needs at least 5 vectors, got 3"):
        simdex.Index(20, transform=simdex.PCA(5)).add(x[:3])
    with pytest.raises(ValueError, match="not trained yet"):
        simdex.Index(20, transform=simdex.PCA(5)).search(x[:1], 3)
    with pytest.raises(ValueError, match="has no transform"):
        simdex.Index(20).train(x)


def test_index_transform_arguments(rng):
    with pytest.raises(ValueError, match="out_dim 30 is larger than the index dim 20"):
        simdex.Index(20, transform=simdex.PCA(30))
    with pytest.raises(ValueError, match="fitted on 8-dimensional vectors, the index dim is 20"):
        simdex.Index(20, transform=simdex.PCA(4).fit(rng.standard_normal((30, 8))))
    with pytest.raises(TypeError, match="expected simdex.PCA, simdex.RandomProjection or simdex.Truncate"):
        simdex.Index(20, transform="pca")


@pytest.mark.parametrize(
    "make",
    [
        lambda: simdex.PCA(6),
        lambda: simdex.PCA(6, whiten=True, center="both"),
        lambda: simdex.RandomProjection(6, kind="sparse", seed=4),
        lambda: simdex.RandomProjection(6),
    ],
)
def test_save_load_round_trip(make, tmp_path, rng):
    x = anisotropic(rng, 300, 24)
    index = simdex.Index(24, transform=make())
    index.add(x)
    before = index.search(x[:7], 5)
    path = tmp_path / "reduced.simdex"
    index.save(path)
    for loaded in (simdex.load(path), simdex.load(path, mmap=True), simdex.load_bytes(path.read_bytes())):
        t, t0 = loaded.transform, index.transform
        assert type(t) is type(t0) and repr(t) == repr(t0) and loaded.dim == 24 and loaded.metric == "cosine"
        np.testing.assert_array_equal(t.components_, t0.components_)
        np.testing.assert_array_equal(t.mean_, t0.mean_)
        after = loaded.search(x[:7], 5)
        np.testing.assert_array_equal(after.ids, before.ids)
        np.testing.assert_array_equal(after.scores, before.scores)
    assert simdex.load(path).transform.transform(x[:3]).shape == (3, 6)


def test_untrained_transform_is_saved_too(tmp_path, rng):
    path = tmp_path / "empty.simdex"
    simdex.Index(24, "ip", transform=simdex.PCA(6, center="none")).save(path)
    loaded = simdex.load(path)
    assert loaded.dim == 24 and loaded.metric == "ip" and not loaded.transform.is_fitted
    assert loaded.transform.center == "none"
    loaded.add(anisotropic(rng, 50, 24))
    assert loaded.transform.is_fitted and len(loaded) == 50


def test_damaged_transform_section_is_a_format_error(tmp_path, rng):
    index = simdex.Index(24, transform=simdex.PCA(6))
    index.add(anisotropic(rng, 100, 24))
    sections = index._core.extra_sections()
    broken = [s if s[0] != "transform" else (s[0], s[1], 5, 1, True, b"{nope") for s in sections]
    index._core.set_extra_sections(broken)
    with pytest.raises(simdex.FormatError, match="section 'transform' is not the expected JSON"):
        simdex.load_bytes(index._core.to_bytes())
    missing = [s for s in sections if s[0] != "transform.mat"]
    index._core.set_extra_sections(missing)
    with pytest.raises(simdex.FormatError, match="'transform.mat' is missing"):
        simdex.load_bytes(index._core.to_bytes())
    with pytest.raises(ValueError, match="unknown extra section name"):
        index._core.set_extra_sections([("surprise", "bytes", 1, 1, False, b"x")])


def test_renormalized_and_scaled_scores(rng):
    x = anisotropic(rng, 300, 32)
    for t in (
        simdex.RandomProjection(8, kind="gaussian"),
        simdex.PCA(8, center="both"),
        simdex.PCA(8, center="none"),
    ):
        index = simdex.Index(32, transform=t)  # cosine: the reduced vectors are renormalized
        index.add(x)
        got = index.search(x[:5], 1)
        np.testing.assert_allclose(got.scores[:, 0], 1.0, atol=1e-5)  # each row's reduced cosine with itself
    rp = simdex.RandomProjection(8)
    index = simdex.Index(32, "ip", transform=rp)
    index.add(x)
    got = index.search(x[:3], 4)
    reduced = rp.transform(x).astype(np.float64)
    ref = reduced[:3] @ reduced.T * (32 / 8)  # orthogonal rows shrink inner products by out_dim / dim
    np.testing.assert_allclose(got.scores, np.take_along_axis(ref, got.ids, axis=1), rtol=1e-4)


def test_reduction_report(rng):
    x = low_rank(rng, 400, 32, 6)
    q = low_rank(rng, 15, 32, 6)
    kinds = ["pca", "rp", lambda d: simdex.PCA(d)]
    report = simdex.reduction_report(x, q, dims=[16, 6, 64], kinds=kinds, repeats=1)
    rows = [(r["kind"], r["dim"]) for r in report.rows]
    want = [("full", 32), ("pca", 16), ("pca", 6), ("rp", 16), ("rp", 6), ("<lambda>", 16), ("<lambda>", 6)]
    assert rows == want
    assert report.rows[0]["recall@k"] == 1.0
    pca6 = report.rows[2]
    assert pca6["recall@k"] > 0.95  # the data has rank 6: PCA(6) loses nothing
    assert pca6["bytes/vec"] < report.rows[0]["bytes/vec"] and pca6["qps"] > 0
    table = report.table()
    assert "recall@10" in table and table.count("\n") == len(report.rows) + 1
    assert '"rows"' in report.to_json()
    with pytest.raises(ValueError, match="kinds: expected names from"):
        simdex.reduction_report(x, q, kinds=["svd"])
    with pytest.raises(ValueError, match="same column count"):
        simdex.reduction_report(x, q[:, :8])
