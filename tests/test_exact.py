"""search(..., exact=True) on int8 indexes with kept originals: exactly the float32 index's top-k (ids, ties included,
and scores) on clustered, adversarial and filtered data, for k = 1, 10, 100."""

import numpy as np
import pytest

import simdex

DIM = 32


def clustered(n, seed=0, dim=DIM):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((30, dim))
    return (c[rng.integers(0, 30, n)] + 0.3 * rng.standard_normal((n, dim))).astype(np.float32)


def adversarial(n, seed=0):
    """Near-ties and exact duplicates, a dimension with no range, a few outliers the calibration clips."""
    rng = np.random.default_rng(seed)
    base = rng.standard_normal((n // 4, DIM)).astype(np.float32)
    x = np.concatenate([base, base, base + 1e-6 * rng.standard_normal(base.shape).astype(np.float32),
                        rng.standard_normal((n - 3 * (n // 4), DIM)).astype(np.float32)])
    x[:, 5] = 0.25  # no range
    x[::97] *= 40.0  # outliers past the calibrated range
    return x


def pair(x, metric, ids=None):
    f = simdex.Index(DIM, metric=metric)
    e = simdex.Index(DIM, metric=metric, dtype="int8", keep_originals=True)
    f.add(x, ids)
    e.add(x, ids)
    return f, e


def check_same(f, e, q, k, **kw):
    wide = f.search(q, k + 1, **kw)  # one more, to see whether the k-th is tied with the next
    b = e.search(q, k, exact=True, **kw)
    scores, ids = wide.scores[:, :k], wide.ids[:, :k]
    np.testing.assert_allclose(b.scores, scores, rtol=1e-5, atol=2e-6)
    # The float32 index's batch scores come from the GEMM kernel, exact mode's from a dot product: they may round
    # differently in the last bit, so ids are compared where the scores are not tied that closely.
    with np.errstate(invalid="ignore"):
        gap = np.nan_to_num(np.abs(np.diff(wide.scores, axis=1)), nan=np.inf)
    near = np.minimum(gap, np.concatenate([np.full((len(ids), 1), np.inf), gap[:, :-1]], axis=1))
    clear = near > 1e-5 * (1 + np.abs(np.nan_to_num(scores, neginf=0)))
    assert (b.ids[clear] == ids[clear]).all()
    return b


@pytest.mark.parametrize("metric", ["cosine", "ip"])
@pytest.mark.parametrize("k", [1, 10, 100])
@pytest.mark.parametrize("data", ["clustered", "adversarial"])
def test_exact_equals_float32(metric, k, data):
    x = clustered(4000) if data == "clustered" else adversarial(4000)
    q = (clustered(50, seed=9) if data == "clustered" else adversarial(200, seed=9)[:50])
    f, e = pair(x, metric)
    check_same(f, e, q, k)
    check_same(f, e, q[:1], k)  # single query
    # against NumPy float64 too
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x64 /= np.linalg.norm(x64, axis=1, keepdims=True)
        q64 /= np.linalg.norm(q64, axis=1, keepdims=True)
    best = np.sort(q64 @ x64.T, axis=1)[:, ::-1][:, :k]
    res = e.search(q, k, exact=True)
    np.testing.assert_allclose(res.scores, best, rtol=1e-4, atol=1e-4)
    assert (e.last_exact_rescored >= k).all() and (e.last_exact_rescored <= len(x)).all()


def test_exact_with_filter_remove_min_score():
    x = clustered(3000)
    q = clustered(30, seed=3)
    ids = np.arange(len(x)) * 7 + 11
    f, e = pair(x, "cosine", ids)
    allow = ids[::5]
    r = check_same(f, e, q, 10, filter=allow)
    assert np.isin(r.ids, allow).all()
    check_same(f, e, q, 10, filter=ids[:40])  # fewer rows allowed than the first candidate pool
    gone = ids[1::3]
    f.remove(gone)
    e.remove(gone)
    r = check_same(f, e, q, 10, min_score=0.6)
    assert not np.isin(r.ids, gone).any()
    assert (r.scores[r.ids >= 0] >= 0.6).all()
    e.add(clustered(500, seed=5))  # new rows: the error bounds are recomputed
    f.add(clustered(500, seed=5))
    check_same(f, e, q, 10)


@pytest.mark.parametrize("ties", [500, 2000])
def test_near_ties(ties):
    """`ties` rows within the bound of one another, next to 1,000 others: every tie is kept and rescored (500),
    or, past the cap of rows a query keeps (1,024 beyond its k), the query is answered by the float32 scan of all
    the originals (2,000)."""
    rng = np.random.default_rng(1)
    x = np.concatenate([np.ones((ties, DIM)) + 1e-3 * rng.standard_normal((ties, DIM)), -clustered(1000) ** 2])
    x = x.astype(np.float32)
    f, e = pair(x, "cosine")
    q = x[:5] + 1e-4
    check_same(f, e, q, 10)
    check_same(f, e, q[:1], 10)
    if ties <= 1024:
        assert (e.last_exact_rescored >= 64).all() and (e.last_exact_rescored <= ties).all()
    else:
        assert (e.last_exact_rescored == len(x)).all()
        allow = np.setdiff1d(np.arange(len(x)), np.arange(0, len(x), 10))  # still past the cap
        check_same(f, e, q, 10, filter=allow)
        assert (e.last_exact_rescored == len(allow)).all()


def test_more_queries_than_one_pass():
    """Past 4,096 queries the scan runs in passes; each query keeps its own margin."""
    x = clustered(1500)
    f, e = pair(x, "ip")
    q = clustered(4100, seed=4)
    q[4096:] *= 50.0  # the last pass's queries have far larger scores, so margins cannot be mixed up silently
    check_same(f, e, q, 5)


@pytest.mark.filterwarnings("ignore:this first add calibrates")
def test_exact_refusals():
    x = clustered(200)
    with pytest.raises(ValueError, match="keep_originals"):
        ix = simdex.Index(DIM, dtype="int8")
        ix.add(x)
        ix.search(x[:2], 5, exact=True)
    f = simdex.Index(DIM)
    f.add(x)
    with pytest.raises(ValueError, match="float32"):
        f.search(x[:2], 5, exact=True)
    e = simdex.Index(DIM, dtype="int8", keep_originals=True)
    e.add(x)
    with pytest.raises(ValueError, match="rescore or exact"):
        e.search(x[:2], 5, exact=True, rescore=2)
    with pytest.raises(TypeError, match="exact"):
        e.search(x[:2], 5, exact="yes")
