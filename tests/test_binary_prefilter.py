"""The Hamming prefilter of binary indexes (where the CPU has VPOPCNTDQ, at 256 dims or more and 4,000 rows or
more; single queries and batches alike): each query keeps its 500 rows nearest in Hamming distance to its weights'
signs and ranks them as the full scan ranks every row, and keeps that answer only when the rows it returns lie in
the nearer quarter of the pool (else the full scan answers the query). Checked against the full asymmetric scan
(NumPy, the test_binary model), NumPy float64 and single queries, for queries near the rows (what the pools serve)
and queries from other centres (unlike the data: most must fall back), with rescoring, a filter, removals and k
past the pool. Where the CPU has no VPOPCNTDQ these run the full scan, and must pass all the same."""

import numpy as np
import pytest

import simdex

from test_binary import model
from test_ivf import brute, clustered

DIM, N = 384, 12_000


@pytest.fixture(scope="module")
def data():
    x = clustered(N, dim=DIM, centers=60)
    near = x[::200] + 0.05 * np.random.default_rng(3).standard_normal((N // 200, DIM)).astype(np.float32)
    return x, {"near the rows": near, "other centres": clustered(60, dim=DIM, centers=60, seed=7)}


@pytest.fixture(scope="module")
def index(data):
    x, _ = data
    ix = simdex.Index(DIM, dtype="binary", keep_originals=True)
    ix.add(x)
    return ix


def recall(found, truth):
    return float(np.mean([len(np.intersect1d(f[f >= 0], t)) / t.size for f, t in zip(found, truth)]))


def full_scan(index, x, q, k, rescore):
    """What ranking every row returns: the model's k * R best, rescored by the exact cosine when R is given."""
    top = np.argsort(-model(index, np.arange(len(x)), q), axis=1, kind="stable")[:, : k * (rescore or 1)]
    if not rescore:
        return top
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    exact = np.einsum("qd,qkd->qk", qn.astype(np.float64), xn[top].astype(np.float64))
    return np.take_along_axis(top, np.argsort(-exact, axis=1, kind="stable")[:, :k], 1)


@pytest.mark.parametrize("kind", ["near the rows", "other centres"])
@pytest.mark.parametrize("rescore", [None, 4, 10])
def test_against_the_full_scan_and_single_queries(index, data, kind, rescore):
    x, queries = data
    q = queries[kind]
    kw = {} if rescore is None else {"rescore": rescore}
    batch = index.search(q, 10, **kw)
    single = np.vstack([index.search(q[i], 10, **kw).ids for i in range(len(q))])
    assert (batch.ids == single).all(axis=1).mean() >= 0.95
    full = full_scan(index, x, q, 10, rescore)
    same = np.mean([set(a) == set(b) for a, b in zip(batch.ids, full)])
    assert same >= 0.95, same
    truth = brute(x, q, 10, "cosine")[0]
    assert recall(batch.ids, truth) >= recall(full, truth) - 0.01
    if rescore:  # exact float scores of the returned rows, best first
        x64 = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
        q64 = q.astype(np.float64) / np.linalg.norm(q, axis=1, keepdims=True)
        np.testing.assert_allclose(batch.scores, np.take_along_axis(q64 @ x64.T, batch.ids, 1), atol=1e-5)
        assert (np.diff(batch.scores, axis=1) <= 1e-6).all()
    if kind == "near the rows":  # each query's own row comes back
        assert np.isin(np.arange(0, N, 200), batch.ids).mean() >= 0.95


def test_filter_and_removals(data):
    x, queries = data
    q = queries["other centres"]
    ix = simdex.Index(DIM, dtype="binary", keep_originals=True)
    ids = ix.add(x)
    allow = ids[ids % 3 == 0]  # a third of the rows: the Hamming starting threshold, set on all rows, runs short
    res = ix.search(q, 10, rescore=4, filter=allow)
    assert np.isin(res.ids, allow).all()
    single = np.vstack([ix.search(q[i], 10, rescore=4, filter=allow).ids for i in range(len(q))])
    assert (res.ids == single).all(axis=1).mean() >= 0.95
    truth = brute(x[allow], q, 10, "cosine")[0]
    full = full_scan(ix, x[allow], q, 10, 4)
    assert recall(np.searchsorted(allow, res.ids), truth) >= recall(full, truth) - 0.01
    gone = ids[: N // 2]
    ix.remove(gone)
    after = ix.search(q, 10, rescore=4)
    assert not np.isin(after.ids, gone).any() and (after.ids >= 0).all()


def test_k_past_the_pool(index, data):
    x, queries = data
    q = queries["near the rows"][:8]
    batch = index.search(q, 700)  # 2 * 700 + 16 rows ranked per query: more than the 500 of the pool
    assert (batch.ids >= 0).all() and all(len(np.unique(r)) == 700 for r in batch.ids)
    full = full_scan(index, x, q, 700, None)
    assert np.mean([len(np.intersect1d(a, b)) / 700 for a, b in zip(batch.ids, full)]) >= 0.99
