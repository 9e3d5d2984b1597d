"""The binary batch prefilter (where the CPU has VPOPCNTDQ, at 256 dims or more and 4,000 rows or more): a batch
keeps each query's 500 rows nearest in Hamming distance to its weights' signs, then ranks them as a single query
ranks its pool, and keeps that answer only when the rows returned lie in the nearer quarter of the pool (else the
full scan answers the query). The queries here come from other centres than the rows (unlike the data: the
prefilter's hard case, where most queries must fall back). Checked against NumPy float64 and against single
queries, with rescoring, a filter, removals and k past the Hamming pool. Where the CPU has no VPOPCNTDQ these run
the int8 GEMM path, and must pass all the same."""

import numpy as np
import pytest

import simdex

from test_ivf import brute, clustered

DIM, N = 384, 12_000


@pytest.fixture(scope="module")
def data():
    return clustered(N, dim=DIM, centers=60), clustered(60, dim=DIM, centers=60, seed=7)


@pytest.fixture(scope="module")
def index(data):
    x, _ = data
    ix = simdex.Index(DIM, dtype="binary", keep_originals=True)
    ix.add(x)
    return ix


def recall(found, truth):
    return float(np.mean([len(np.intersect1d(f[f >= 0], t)) / t.size for f, t in zip(found, truth)]))


@pytest.mark.parametrize("rescore", [None, 4, 10])
def test_batch_agrees_with_single_queries(index, data, rescore):
    x, q = data
    kw = {} if rescore is None else {"rescore": rescore}
    batch = index.search(q, 10, **kw)
    single = np.vstack([index.search(q[i], 10, **kw).ids for i in range(len(q))])
    same = (batch.ids == single).all(axis=1).mean()
    assert same >= 0.95, same
    truth = brute(x, q, 10, "cosine")[0]
    assert recall(batch.ids, truth) >= recall(single, truth) - 0.01
    if rescore:  # exact float scores of the returned rows, best first
        x64 = x.astype(np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
        q64 = q.astype(np.float64) / np.linalg.norm(q, axis=1, keepdims=True)
        np.testing.assert_allclose(batch.scores, np.take_along_axis(q64 @ x64.T, batch.ids, 1), atol=1e-5)
        assert (np.diff(batch.scores, axis=1) <= 1e-6).all()


def test_filter_and_removals(data):
    x, q = data
    ix = simdex.Index(DIM, dtype="binary", keep_originals=True)
    ids = ix.add(x)
    allow = ids[ids % 3 == 0]  # a third of the rows: the Hamming starting threshold, set on all rows, runs short
    res = ix.search(q, 10, rescore=4, filter=allow)
    assert np.isin(res.ids, allow).all()
    single = np.vstack([ix.search(q[i], 10, rescore=4, filter=allow).ids for i in range(len(q))])
    assert (res.ids == single).all(axis=1).mean() >= 0.9
    truth = brute(x[allow], q, 10, "cosine")[0]
    assert recall(np.searchsorted(allow, res.ids), truth) >= recall(np.searchsorted(allow, single), truth) - 0.01
    gone = ids[: N // 2]
    ix.remove(gone)
    after = ix.search(q, 10, rescore=4)
    assert not np.isin(after.ids, gone).any() and (after.ids >= 0).all()


def test_k_past_the_pool(index, data):
    _, q = data
    batch = index.search(q[:8], 700)  # 2 * 700 + 16 rows ranked per query: more than the 500 of the pool
    single = np.vstack([index.search(q[i], 700).ids for i in range(8)])
    assert (batch.ids >= 0).all() and len(np.unique(batch.ids[0])) == 700
    assert np.mean([len(np.intersect1d(a, b)) / 700 for a, b in zip(batch.ids, single)]) >= 0.99


@pytest.mark.parametrize("rescore", [None, 4])
def test_queries_like_the_data(index, data, rescore):
    """Queries near stored rows: the case the prefilter serves from its pools; the same rows as single queries."""
    x, _ = data
    q = x[::200] + 0.05 * np.random.default_rng(3).standard_normal((len(x[::200]), DIM)).astype(np.float32)
    kw = {} if rescore is None else {"rescore": rescore}
    batch = index.search(q, 10, **kw)
    single = np.vstack([index.search(q[i], 10, **kw).ids for i in range(len(q))])
    assert (batch.ids == single).all(axis=1).mean() >= 0.98
    truth = brute(x, q, 10, "cosine")[0]
    assert recall(batch.ids, truth) >= recall(single, truth) - 0.005
    assert np.isin(np.arange(0, len(x), 200), batch.ids).mean() >= 0.95  # each query's own row comes back
