"""Partitioned binary indexes, `Index(dtype="binary", partitions=N)`: at nprobe=partitions the same results as the
exact binary index with the same centre (and, with rescoring, as NumPy float64), filter / remove / min_score /
rescore with either tier, files, rebalance without float rows. Recall monotone in nprobe: test_ivf.py, for every
dtype."""

import numpy as np
import pytest

import simdex

from test_ivf import DIM, P, brute, clustered

TIERS = [True, "int8"]  # keep_originals: float rows, or int8 codes


@pytest.fixture(scope="module")
def data():
    return clustered(3000), clustered(40, seed=1)


def pair(x, metric="cosine", keep=True, train=None):
    """A partitioned and an exact binary index over x with the same centre (trained on the same rows)."""
    ivf = simdex.Index(DIM, metric=metric, dtype="binary", keep_originals=keep, partitions=P)
    flat = simdex.Index(DIM, metric=metric, dtype="binary", keep_originals=keep)
    sample = x if train is None else train
    ivf.train(sample)
    flat.train(sample)
    np.testing.assert_array_equal(ivf.calibration, flat.calibration)
    ivf.add(x)
    flat.add(x)
    return ivf, flat


@pytest.mark.parametrize("metric", ["cosine", "ip"])
@pytest.mark.parametrize("keep", TIERS)
@pytest.mark.parametrize("rescore", [None, 3])
def test_all_partitions_matches_exact_binary(data, metric, keep, rescore):
    x, q = data
    ivf, flat = pair(x, metric, keep)
    for nq in (1, len(q)):
        a = ivf.search(q[:nq], 10, nprobe=P, rescore=rescore)
        b = flat.search(q[:nq], 10, rescore=rescore)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-6)
    for i in range(0, len(q), 7):  # a single query returns its row of the batch
        np.testing.assert_array_equal(ivf.search(q[i], 10, nprobe=4).ids[0], ivf.search(q, 10, nprobe=4).ids[i])


@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_rescored_against_float64(data, metric):
    """With the float rows kept and a rescore as deep as the index (24-d bits rank coarsely), every partition
    probed gives the float64 top-k: every row reaches the exact rescore."""
    x, q = data
    ivf, _ = pair(x, metric)
    res = ivf.search(q, 10, nprobe=P, rescore=300)
    ids, scores = brute(x, q, 10, metric)
    np.testing.assert_allclose(res.scores, scores, rtol=1e-4, atol=1e-4)
    assert (res.ids == ids).mean() > 0.99


@pytest.mark.parametrize("keep", TIERS)
def test_filter_remove_min_score(data, keep):
    x, q = data
    ids = np.arange(5_000, 5_000 + len(x)) * 7
    ivf = simdex.Index(DIM, dtype="binary", keep_originals=keep, partitions=P)
    flat = simdex.Index(DIM, dtype="binary", keep_originals=keep)
    ivf.train(x)
    flat.train(x)
    ivf.add(x, ids)
    flat.add(x, ids)
    allow = ids[::3]
    a, b = ivf.search(q, 10, nprobe=P, filter=allow, rescore=2), flat.search(q, 10, filter=allow, rescore=2)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert np.isin(a.ids, allow).all()
    few = ids[:50]  # a selective filter is scanned exactly
    np.testing.assert_array_equal(ivf.search(q, 10, nprobe=1, filter=few).ids, flat.search(q, 10, filter=few).ids)
    gone = ids[::2]
    assert ivf.remove(gone) == flat.remove(gone) == len(gone)
    a, b = ivf.search(q, 10, nprobe=P, min_score=0.5, rescore=2), flat.search(q, 10, min_score=0.5, rescore=2)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert not np.isin(a.ids, gone).any()
    assert (a.scores[a.ids >= 0] >= 0.5).all()
    kept = ids[1::2][:20]  # rows moved by the removals keep their codes
    np.testing.assert_array_equal(ivf.codes(kept), flat.codes(kept))


@pytest.mark.parametrize("keep", [False, True, "int8"])
@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(tmp_path, data, keep, mmap):
    x, q = data
    ix = simdex.Index(DIM, dtype="binary", keep_originals=keep, partitions=P)
    ix.add(x)
    ix.nprobe = 5
    ix.save(tmp_path / "b.sdx")
    back = simdex.load(tmp_path / "b.sdx", mmap=mmap)
    assert back.partitions == P and back.nprobe == 5 and back.dtype == "binary"
    np.testing.assert_array_equal(back.stats()["list_sizes"], ix.stats()["list_sizes"])
    rescore = 2 if keep else None
    for nprobe in (None, 2, P):
        a, b = ix.search(q, 10, nprobe=nprobe, rescore=rescore), back.search(q, 10, nprobe=nprobe, rescore=rescore)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.filterwarnings("ignore:training 16 partitions")
@pytest.mark.parametrize("keep", [False, "int8"])
def test_rebalance_from_codes(data, keep):
    """Without float rows, rebalance assigns the decoded codes (bits, or the int8 tier); every code, kept tier row
    and id moves with its row, so probing everything still equals the exact binary index."""
    x, q = data
    ivf, flat = pair(x, keep=keep, train=x[:400])
    before = ivf.search(q, 10, nprobe=P, rescore=2 if keep else None)
    ivf.rebalance()
    after = ivf.search(q, 10, nprobe=P, rescore=2 if keep else None)
    np.testing.assert_array_equal(after.ids, before.ids)
    np.testing.assert_array_equal(after.ids, flat.search(q, 10, rescore=2 if keep else None).ids)
    assert ivf.stats()["list_sizes"].sum() == len(x)


def test_tune_and_sharded(data):
    x, q = data
    ix = simdex.Index(DIM, dtype="binary", keep_originals=True, partitions=P)
    ix.add(x)
    curve = ix.tune(q, target_recall=0.9, k=10)
    assert ix.nprobe == min(c["nprobe"] for c in curve if c["recall"] >= 0.9)
    shards = [simdex.Index(DIM, dtype="binary", keep_originals=True, partitions=P) for _ in range(2)]
    shards[0].add(x[:1500], np.arange(1500))
    shards[1].add(x[1500:], np.arange(1500, len(x)))
    res = simdex.ShardedIndex(shards).search(q, 10, nprobe=P, rescore=300)
    ids, scores = brute(x, q, 10, "cosine")
    np.testing.assert_allclose(res.scores, scores, rtol=1e-4, atol=1e-4)
    assert (res.ids == ids).mean() > 0.99
