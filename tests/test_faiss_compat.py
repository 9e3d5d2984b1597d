"""The FAISS-style surface; where faiss-cpu is installed, the same calls on both must agree."""

import numpy as np
import pytest

import simdex


def test_flat_ip_surface(tmp_path, rng):
    x = rng.standard_normal((200, 16)).astype(np.float32)
    index = simdex.IndexFlatIP(16)
    assert (index.d, index.ntotal, index.is_trained) == (16, 0, True)
    index.add(x[:100])
    index.add_with_ids(x[100:], np.arange(1000, 1100))
    assert index.ntotal == 200
    D, I = index.search(x[:3], 4)
    assert D.shape == I.shape == (3, 4) and D.dtype == np.float32 and I.dtype == np.int64
    np.testing.assert_allclose(D, np.sort(x[:3] @ x.T, axis=1)[:, ::-1][:, :4], rtol=1e-5, atol=1e-5)
    assert index.remove_ids(np.array([0, 1000, 5000])) == 2
    assert index.ntotal == 198
    path = tmp_path / "flat.index"
    simdex.write_index(index, str(path))
    back = simdex.read_index(str(path))
    assert isinstance(back, simdex.IndexFlatIP) and back.ntotal == 198
    np.testing.assert_array_equal(back.search(x[:3], 4)[1], index.search(x[:3], 4)[1])
    index.reset()
    assert index.ntotal == 0


def test_same_results_as_faiss(rng):
    faiss = pytest.importorskip("faiss")
    x = rng.standard_normal((5000, 64)).astype(np.float32)
    q = rng.standard_normal((50, 64)).astype(np.float32)
    ours, theirs = simdex.IndexFlatIP(64), faiss.IndexFlatIP(64)
    ours.add(x)
    theirs.add(x)
    for queries in (q, q[:1]):
        D1, I1 = ours.search(queries, 10)
        D2, I2 = theirs.search(queries, 10)
        np.testing.assert_array_equal(I1, I2)
        np.testing.assert_allclose(D1, D2, rtol=1e-5, atol=1e-4)
    # With ids: FAISS needs an IndexIDMap wrapper; simdex takes them directly.
    ids = rng.choice(10**6, 5000, replace=False).astype(np.int64)
    ours2, theirs2 = simdex.IndexFlatIP(64), faiss.IndexIDMap(faiss.IndexFlatIP(64))
    ours2.add_with_ids(x, ids)
    theirs2.add_with_ids(x, ids)
    np.testing.assert_array_equal(ours2.search(q, 10)[1], theirs2.search(q, 10)[1])
