"""Partitioned (inverted-file) indexes, `Index(partitions=N)`: exact at nprobe=partitions against NumPy float64,
recall monotone in nprobe, filter / remove / min_score / rescore as in the exact index, files, tune, bad input."""

import threading

import numpy as np
import pytest

import simdex
from simdex import FormatError

import sdxfile

DIM = 24
P = 16


def clustered(n, dim=DIM, centers=40, seed=0):
    """Rows around a few dozen centers, like real embeddings (uniform noise would make every partition alike)."""
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((centers, dim))
    return (c[rng.integers(0, centers, n)] + 0.35 * rng.standard_normal((n, dim))).astype(np.float32)


def brute(x, q, k, metric):
    """NumPy float64 top-k (ids, scores); ties to the lower id."""
    x64, q64 = x.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        x64 = x64 / np.linalg.norm(x64, axis=1, keepdims=True)
        q64 = q64 / np.linalg.norm(q64, axis=1, keepdims=True)
    if metric == "l2":
        s = -((q64[:, None, :] - x64[None, :, :]) ** 2).sum(-1)
    else:
        s = q64 @ x64.T
    order = np.lexsort((np.broadcast_to(np.arange(x.shape[0]), s.shape), -s), axis=1)[:, :k]
    best = np.take_along_axis(s, order, 1)
    return order, (-best if metric == "l2" else best)


@pytest.fixture(scope="module")
def data():
    return clustered(3000), clustered(40, seed=1)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("nq", [1, 7, 40])
def test_all_partitions_is_exact_float32(data, metric, nq):
    x, q = data
    ix = simdex.Index(DIM, metric=metric, partitions=P)
    ix.add(x)
    res = ix.search(q[:nq], 10, nprobe=P)
    ids, scores = brute(x, q[:nq], 10, metric)
    np.testing.assert_allclose(res.scores, scores, rtol=1e-4, atol=1e-4)
    # ids agree except where float32 rounding reorders near-ties
    close = np.isclose(res.scores, scores, rtol=1e-5, atol=1e-5)
    assert (res.ids == ids).mean() > 0.99 and close.all()


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("rescore", [None, 3])
def test_all_partitions_is_exact_int8(data, metric, rescore):
    """int8: with every partition probed, the same results as the exact int8 index with the same calibration."""
    x, q = data
    ivf = simdex.Index(DIM, metric=metric, dtype="int8", keep_originals=True, partitions=P)
    flat = simdex.Index(DIM, metric=metric, dtype="int8", keep_originals=True)
    ivf.train(x)
    flat.train(x)
    np.testing.assert_array_equal(ivf.calibration, flat.calibration)
    ivf.add(x)
    flat.add(x)
    a = ivf.search(q, 10, nprobe=P, rescore=rescore)
    b = flat.search(q, 10, rescore=rescore)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-6, atol=1e-6)
    if rescore:  # exact scores against float64
        _, scores = brute(x, q, 10, metric)
        np.testing.assert_allclose(a.scores, scores, rtol=1e-4, atol=1e-4)


def test_transform_all_partitions_matches_flat(data):
    x, q = data
    ivf = simdex.Index(DIM, transform=simdex.PCA(12), partitions=P)
    flat = simdex.Index(DIM, transform=simdex.PCA(12))
    ivf.add(x)
    flat.add(x)
    a, b = ivf.search(q, 10, nprobe=P), flat.search(q, 10)
    np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5)
    assert (a.ids == b.ids).mean() > 0.99


@pytest.mark.parametrize("dtype", ["float32", "int8", "binary"])
def test_recall_monotone_in_nprobe(data, dtype):
    x, q = data
    ix = simdex.Index(DIM, dtype=dtype, partitions=P)
    ix.add(x)
    truth = ix.search(q, 10, nprobe=P).ids
    prev = np.zeros(len(q))
    for nprobe in range(1, P + 1):
        found = ix.search(q, 10, nprobe=nprobe).ids
        rec = np.array([len(np.intersect1d(a, b)) for a, b in zip(found, truth)])
        assert (rec >= prev).all(), nprobe  # the probed rows only grow, per query
        prev = rec
    assert prev.min() == 10


def test_single_query_matches_batch(data):
    x, q = data
    ix = simdex.Index(DIM, partitions=P)
    ix.add(x)
    batch = ix.search(q, 5, nprobe=3)
    for i in range(len(q)):
        one = ix.search(q[i], 5, nprobe=3)
        np.testing.assert_array_equal(one.ids[0], batch.ids[i])


def test_filter_remove_min_score(data):
    x, q = data
    ids = np.arange(10_000, 10_000 + len(x)) * 3
    ivf, flat = simdex.Index(DIM, partitions=P), simdex.Index(DIM)
    ivf.add(x, ids)
    flat.add(x, ids)
    allow = ids[::3]
    a, b = ivf.search(q, 10, nprobe=P, filter=allow), flat.search(q, 10, filter=allow)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert np.isin(a.ids, allow).all()
    few = ids[:50]  # a selective filter is scanned exactly
    a = ivf.search(q, 10, nprobe=1, filter=few)
    np.testing.assert_array_equal(a.ids, flat.search(q, 10, filter=few).ids)
    gone = ids[::2]
    assert ivf.remove(gone) == flat.remove(gone) == len(gone)
    a, b = ivf.search(q, 10, nprobe=P, min_score=0.5), flat.search(q, 10, min_score=0.5)
    np.testing.assert_array_equal(a.ids, b.ids)
    assert not np.isin(a.ids, gone).any()
    assert (a.scores[a.ids >= 0] >= 0.5).all() and (a.scores[a.ids < 0] == -np.inf).all()
    assert ivf.stats()["vectors"] == len(ivf) == len(x) - len(gone)
    for i in ids[1::2][:20]:  # every kept vector is still reachable through its partition
        assert i in ivf


@pytest.mark.filterwarnings("ignore:training 16 partitions")
def test_padding_when_few_rows_probed(data):
    x, _ = data
    ix = simdex.Index(DIM, partitions=P)
    ix.add(x[:200])
    res = ix.search(x[:3], 150, nprobe=1)
    assert ((res.ids == -1) == (res.scores == -np.inf)).all()
    assert (res.ids[:, 0] == np.arange(3)).all()


@pytest.mark.parametrize("dtype", ["float32", "int8"])
@pytest.mark.parametrize("mmap", [False, True])
def test_save_load_round_trip(tmp_path, data, dtype, mmap):
    x, q = data
    ix = simdex.Index(DIM, dtype=dtype, partitions=P)
    ix.add(x)
    ix.nprobe = 5
    path = tmp_path / "ivf.sdx"
    ix.save(path)
    back = simdex.load(path, mmap=mmap)
    assert back.partitions == P and back.nprobe == 5
    np.testing.assert_array_equal(back.stats()["list_sizes"], ix.stats()["list_sizes"])
    np.testing.assert_array_equal(back._core.centroids(), ix._core.centroids())
    for nprobe in (None, 2, P):
        a, b = ix.search(q, 10, nprobe=nprobe), back.search(q, 10, nprobe=nprobe)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.scores, b.scores)
    if not mmap:  # a loaded index keeps growing into its partitions
        back.add(x[:10])
        assert back.stats()["vectors"] == len(x) + 10


def test_tune_stores_smallest_nprobe(data, tmp_path):
    x, q = data
    ix = simdex.Index(DIM, partitions=P)
    ix.add(x)
    curve = ix.tune(q, target_recall=0.9, k=10)
    reached = [c["nprobe"] for c in curve if c["recall"] >= 0.9]
    missed = [c["nprobe"] for c in curve if c["recall"] < 0.9]
    assert ix.nprobe == min(reached)
    assert not missed or max(missed) < ix.nprobe
    assert all(0 <= c["recall"] <= 1 and c["ms_per_query"] >= 0 for c in curve)
    ix.save(tmp_path / "t.sdx")
    assert simdex.load(tmp_path / "t.sdx").nprobe == ix.nprobe


@pytest.mark.filterwarnings("ignore:training 16 partitions")
def test_rebalance_keeps_ids_and_results(data):
    x, q = data
    ix = simdex.Index(DIM, partitions=P)
    ix.train(x[:400])  # a small, early sample
    ix.add(x)
    before_ids = np.sort(ix.ids())
    exact = ix.search(q, 10, nprobe=P)
    ix.rebalance()
    np.testing.assert_array_equal(np.sort(ix.ids()), before_ids)
    after = ix.search(q, 10, nprobe=P)
    np.testing.assert_array_equal(after.ids, exact.ids)
    st = ix.stats()
    assert st["list_sizes"].sum() == len(x) and st["imbalance"] >= 1.0


@pytest.mark.filterwarnings("ignore:training 16 partitions")
def test_search_during_add(data):
    x, q = data
    ix = simdex.Index(DIM, partitions=P)
    ix.add(x[:500])
    errors = []

    def searcher():
        try:
            for _ in range(30):
                res = ix.search(q, 5)
                assert (res.ids >= 0).all()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    t = threading.Thread(target=searcher)
    t.start()
    for i in range(500, len(x), 250):
        ix.add(x[i:i + 250])
    t.join()
    assert not errors
    assert len(ix) == len(x)


def test_bad_input(data):
    x, q = data
    with pytest.raises(ValueError, match="partitions"):
        simdex.Index(DIM, partitions=0)
    with pytest.raises(TypeError):
        simdex.Index(DIM, partitions=2.5)
    ix = simdex.Index(DIM, partitions=P)
    with pytest.raises(ValueError, match=f"at least {P} vectors"):
        ix.add(x[:P - 1])
    assert len(ix) == 0
    ix.add(x)
    for bad in (0, -1, P + 1):
        with pytest.raises(ValueError, match="nprobe"):
            ix.search(q, 5, nprobe=bad)
    with pytest.raises(ValueError, match="nprobe"):
        ix.nprobe = P + 1
    with pytest.raises(ValueError, match="partitioned"):
        simdex.Index(DIM).search(q, 5, nprobe=2)
    with pytest.raises(ValueError, match="partitioned"):
        simdex.Index(DIM).tune(q)


def test_few_training_vectors_warns(data):
    x, _ = data
    ix = simdex.Index(DIM, partitions=P)
    with pytest.warns(UserWarning, match="per partition"):
        ix.train(x[:100])


def hostile(tmp_path, edit):
    ix = simdex.Index(DIM, partitions=4)
    ix.add(clustered(200))
    f = sdxfile.parse(ix._core.to_bytes())
    edit({s.name: s for s in f.sections})
    path = tmp_path / "bad.sdx"
    path.write_bytes(sdxfile.build(f.sections))
    return path


@pytest.mark.parametrize("mmap", [False, True])
def test_hostile_partition_sections(tmp_path, mmap):
    def past_end(s):
        a = np.frombuffer(s["ivf.assign"].data, np.uint32).copy()
        a[7] = 4
        s["ivf.assign"].data = a.tobytes()

    def nprobe_too_big(s):
        s["ivf.params"].data = np.array([4, 9], np.uint64).tobytes()

    def no_partitions(s):
        s["ivf.params"].data = np.array([0, 0], np.uint64).tobytes()

    def nan_centroid(s):
        c = np.frombuffer(s["ivf.centroids"].data, np.float32).copy()
        c[3] = np.nan
        s["ivf.centroids"].data = c.tobytes()

    def short_assign(s):
        s["ivf.assign"].data = s["ivf.assign"].data[:-4]
        s["ivf.assign"].rows -= 1

    for edit in (past_end, nprobe_too_big, no_partitions, nan_centroid, short_assign):
        with pytest.raises(FormatError):
            simdex.load(hostile(tmp_path, edit), mmap=mmap)
    ix = simdex.Index(DIM, partitions=4)
    ix.add(clustered(200))
    f = sdxfile.parse(ix._core.to_bytes())
    f.sections = [s for s in f.sections if s.name != "ivf.centroids"]
    (tmp_path / "nc.sdx").write_bytes(sdxfile.build(f.sections))
    with pytest.raises(FormatError, match="centroids"):
        simdex.load(tmp_path / "nc.sdx", mmap=mmap)


@pytest.mark.filterwarnings("ignore:training 16 partitions")
def test_sharded_partitioned_shards(data):
    x, q = data
    shards = [simdex.Index(DIM, partitions=P) for _ in range(2)]
    shards[0].add(x[:1500], np.arange(1500))
    shards[1].add(x[1500:], np.arange(1500, len(x)))
    sharded = simdex.ShardedIndex(shards)
    res = sharded.search(q, 10, nprobe=P)
    ids, scores = brute(x, q, 10, "cosine")
    np.testing.assert_allclose(res.scores, scores, rtol=1e-4, atol=1e-4)
    assert (res.ids == ids).mean() > 0.99
    few = sharded.search(q, 10, nprobe=1)
    assert (few.ids >= 0).all()


@pytest.mark.filterwarnings("ignore:training")
def test_faiss_ivf_names(tmp_path, data):
    x, q = data
    ix = simdex.IndexIVFFlat(simdex.IndexFlatL2(DIM), DIM, 8)
    assert ix.nprobe == 1 and ix.nlist == 8 and not ix.is_trained
    with pytest.raises(ValueError, match="train"):
        ix.add(x)
    ix.train(x)
    ix.add(x)
    ix.nprobe = 100  # clamped to nlist, as FAISS does
    assert ix.nprobe == 8
    D, I = ix.search(q, 5)
    simdex.write_index(ix, str(tmp_path / "ivf.index"))
    back = simdex.read_index(str(tmp_path / "ivf.index"))
    assert type(back) is simdex.IndexIVFFlat and back.nprobe == 8
    np.testing.assert_array_equal(back.search(q, 5)[1], I)
    with pytest.raises(ValueError, match="quantizer has d"):
        simdex.IndexIVFFlat(simdex.IndexFlatL2(DIM + 1), DIM, 8)
    pq = simdex.index_factory(DIM, "PCA12,IVF8,SQ8", simdex.METRIC_INNER_PRODUCT)
    pq.train(x)
    pq.add(x)
    assert pq.index.partitions == 8 and pq.index.dtype == "int8" and pq.index.transform.out_dim == 12
    assert (pq.search(q, 5)[1] >= 0).all()
