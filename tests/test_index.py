"""simdex.Index against a NumPy float64 brute force: both metrics, filters, removals, save/load, bad input."""

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import simdex


def brute_force(x, ids, q, k, metric, allow=None, min_score=None):
    """Exact top-k in float64, ties to the lower id, padded with (-inf, -1)."""
    x = np.asarray(x, np.float64)
    q = np.atleast_2d(np.asarray(q, np.float64))
    if metric == "cosine":
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-300)
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
    ids = np.asarray(ids)
    keep = np.ones(len(ids), bool) if allow is None else np.isin(ids, allow)
    x, ids = x[keep], ids[keep]
    s = q @ x.T
    out_s = np.full((len(q), k), -np.inf)
    out_i = np.full((len(q), k), -1, np.int64)
    for r in range(len(q)):
        order = np.lexsort((ids, -s[r]))  # score descending, then id ascending
        if min_score is not None:
            order = order[s[r, order] >= min_score]
        order = order[:k]
        out_s[r, : len(order)] = s[r, order]
        out_i[r, : len(order)] = ids[order]
    return out_s, out_i


def check(index, x, ids, q, k, **kw):
    got_s, got_i = index.search(q, k, **kw)
    ref_s, ref_i = brute_force(x, ids, q, k, index.metric, kw.get("filter"), kw.get("min_score"))
    assert got_s.dtype == np.float32 and got_i.dtype == np.int64
    assert got_s.shape == got_i.shape == (len(np.atleast_2d(q)), k)
    np.testing.assert_array_equal(got_i, ref_i)
    finite = np.isfinite(ref_s)
    np.testing.assert_array_equal(np.isfinite(got_s), finite)
    np.testing.assert_allclose(got_s[finite], ref_s[finite], atol=1e-5, rtol=0)


LEVELS = simdex.simd_info()["supported"]


@pytest.fixture(params=LEVELS)
def level(request):
    with simdex.simd_override(request.param):
        yield request.param


@pytest.mark.parametrize("metric", ["cosine", "ip"])
@pytest.mark.parametrize("dim,n,nq", [(17, 700, 1), (64, 1000, 3), (400, 1500, 130), (33, 5000, 1)])
def test_matches_brute_force(level, metric, dim, n, nq, rng):
    # Scaled so inner products are O(1), like embeddings: the 1e-5 score tolerance is absolute.
    x = (rng.standard_normal((n, dim)) / np.sqrt(dim)).astype(np.float32)
    q = (rng.standard_normal((nq, dim)) / np.sqrt(dim)).astype(np.float32)
    index = simdex.Index(dim, metric)
    ids = index.add(x)
    np.testing.assert_array_equal(ids, np.arange(n))
    for k in (1, 10, 37):
        check(index, x, ids, q, k)


@pytest.mark.parametrize("nq", [1, 20])
def test_filter_dense_and_sparse(level, nq, rng):
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    q = rng.standard_normal((nq, 32)).astype(np.float32)
    index = simdex.Index(32)
    ids = index.add(x, ids=np.arange(3000) * 7 + 5)
    for allow in (ids[::2], ids[:50], rng.choice(ids, 2000, replace=False), np.array([ids[3], 999_999])):
        check(index, x, ids, q, 10, filter=allow)
    # An empty allow-list returns nothing.
    s, i = index.search(q, 5, filter=[])
    assert (i == -1).all() and np.isneginf(s).all()


def test_removal_keeps_other_ids(level, rng):
    x = rng.standard_normal((2000, 24)).astype(np.float32)
    q = rng.standard_normal((15, 24)).astype(np.float32)
    index = simdex.Index(24, "ip")
    ids = index.add(x, ids=np.arange(2000) + 100)
    gone = rng.choice(ids, 600, replace=False)
    assert index.remove(np.concatenate([gone, gone[:10], [10**12]])) == 600
    keep = ~np.isin(ids, gone)
    assert len(index) == keep.sum()
    assert set(index.ids().tolist()) == set(ids[keep].tolist())
    check(index, x[keep], ids[keep], q, 10)
    np.testing.assert_array_equal(index.reconstruct(ids[keep][:5]), x[keep][:5])
    # New default ids continue after the largest id ever added.
    assert index.add(x[:2])[0] == 2100


def test_min_score_drops_results(level, rng):
    x = rng.standard_normal((1000, 16)).astype(np.float32)
    q = rng.standard_normal((4, 16)).astype(np.float32)
    index = simdex.Index(16)
    ids = index.add(x)
    for floor in (0.2, 0.5, 0.99):
        check(index, x, ids, q, 50, min_score=floor)
    s, _ = index.search(q, 1000, min_score=0.5)
    assert (s[np.isfinite(s)] >= 0.5).all()


def test_ties_go_to_lower_id(level):
    v = np.ones((5, 8), np.float32)
    index = simdex.Index(8, "ip")
    index.add(v, ids=[40, 3, 17, 8, 25])
    s, i = index.search(np.ones(8), 5)
    np.testing.assert_array_equal(i[0], [3, 8, 17, 25, 40])
    s, i = index.search(np.ones((13, 8)), 3)  # the batch path too
    assert (i == [3, 8, 17]).all()


def test_padding_and_empty_index(rng):
    index = simdex.Index(8)
    s, i = index.search(rng.standard_normal((2, 8)), 4)
    assert (i == -1).all() and np.isneginf(s).all() and s.shape == (2, 4)
    index.add(rng.standard_normal((3, 8)))
    s, i = index.search(rng.standard_normal(8), 5)
    assert (i[0, :3] >= 0).all() and (i[0, 3:] == -1).all() and np.isneginf(s[0, 3:]).all()


def test_input_forms_are_equivalent(rng):
    x64 = rng.standard_normal((300, 20))
    a, b, c = simdex.Index(20), simdex.Index(20), simdex.Index(20)
    a.add(x64.astype(np.float32))
    b.add(x64)  # float64
    c.add(np.asfortranarray(x64.astype(np.float32)))  # Fortran order
    q = x64[:5]
    for other in (b, c):
        np.testing.assert_array_equal(a.search(q, 7).ids, other.search(q, 7).ids)
    np.testing.assert_array_equal(a.search(q[0], 7).ids, a.search(q[:1], 7).ids)  # 1-D query
    d = simdex.Index(20)
    assert d.add(x64[0]).tolist() == [0]  # 1-D vector
    d.add(x64[1:3].tolist())  # nested lists
    assert len(d) == 3


def test_cosine_normalizes_and_zero_vectors_score_zero():
    index = simdex.Index(3)
    index.add(np.array([[3.0, 0, 0], [0, 0, 0]]))
    s, i = index.search([10.0, 0, 0], 2)
    np.testing.assert_allclose(s[0], [1.0, 0.0], atol=1e-7)
    np.testing.assert_allclose(np.linalg.norm(index.reconstruct([0])), 1.0, rtol=1e-6)


def test_duplicate_ids_add_nothing(rng):
    index = simdex.Index(4)
    index.add(rng.standard_normal((3, 4)), ids=[1, 2, 3])
    with pytest.raises(ValueError, match="already in the index"):
        index.add(rng.standard_normal((2, 4)), ids=[4, 2])
    with pytest.raises(ValueError, match="twice"):
        index.add(rng.standard_normal((2, 4)), ids=[7, 7])
    assert len(index) == 3 and sorted(index.ids().tolist()) == [1, 2, 3]


@pytest.mark.parametrize(
    "bad,exc,match",
    [
        (np.full((2, 4), np.nan, np.float32), ValueError, "NaN or Inf"),
        (np.array([[1, 2, 3, np.inf]]), ValueError, "NaN or Inf"),
        (np.ones((2, 5), np.float32), ValueError, "expected 4 columns"),
        (np.ones((2, 2, 4), np.float32), ValueError, "3-D"),
        (np.ones((0, 4), np.float32), ValueError, "empty"),
        (np.ones((2, 4), np.int64), TypeError, "integer"),
        (np.ones((2, 4), np.complex64), TypeError, "complex"),
        (np.array([["a"] * 4]), TypeError, "string"),
        (np.array([[object()] * 4]), TypeError, "object"),
        (np.ones((2, 4), bool), TypeError, "bool"),
        ([[1.0, 2.0], [3.0]], ValueError, "could not convert"),
    ],
)
def test_bad_vectors(bad, exc, match):
    index = simdex.Index(4)
    with pytest.raises(exc, match=match):
        index.add(bad)
    assert len(index) == 0
    if exc is TypeError or "columns" in match or "NaN" in match:
        index.add(np.ones((1, 4)))
        with pytest.raises(exc, match=match.replace("vectors", "queries")):
            index.search(bad, 1)


@pytest.mark.parametrize(
    "ids,exc,match",
    [
        ([1.5, 2.0], TypeError, "integer ids"),
        (["a", "b"], TypeError, "integer ids"),
        ([2**63, 1], ValueError, "int64"),
        ([2**70, 1], ValueError, "int64"),
        ([-3, 1], ValueError, "non-negative"),
        ([1, 2, 3], ValueError, "expected 2 ids"),
        ([[1, 2]], ValueError, "1-D"),
    ],
)
def test_bad_ids(ids, exc, match, rng):
    index = simdex.Index(4)
    with pytest.raises(exc, match=match):
        index.add(rng.standard_normal((2, 4)), ids=ids)
    assert len(index) == 0


@pytest.mark.parametrize("k,exc", [(0, ValueError), (-1, ValueError), (2.5, TypeError), ("3", TypeError), (True, TypeError)])
def test_bad_k(k, exc, rng):
    index = simdex.Index(4)
    index.add(rng.standard_normal((3, 4)))
    with pytest.raises(exc, match="k"):
        index.search(np.ones(4), k)


def test_bad_constructor_args():
    with pytest.raises(ValueError, match="metric"):
        simdex.Index(4, "hamming")
    with pytest.raises(ValueError, match="dim"):
        simdex.Index(0)
    with pytest.raises(TypeError, match="dim"):
        simdex.Index(4.0)


def test_save_load_round_trip(tmp_path, rng):
    x = rng.standard_normal((500, 12)).astype(np.float32)
    index = simdex.Index(12, "ip")
    ids = index.add(x, ids=rng.choice(10**9, 500, replace=False))
    index.remove(ids[:100])
    index.metadata = {"note": "kept"}
    path = tmp_path / "a.simdex"
    index.save(path)
    back = simdex.load(path)
    assert (back.dim, back.metric, len(back)) == (12, "ip", 400)
    assert back.metadata == {"note": "kept"}
    np.testing.assert_array_equal(np.sort(back.ids()), np.sort(ids[100:]))
    check(back, x[100:], ids[100:], rng.standard_normal((6, 12)), 10)
    assert back.add(x[:1])[0] == index.add(x[:1])[0]  # default ids continue the same way
    assert not list(tmp_path.glob("*.tmp*"))


def test_memory_usage_counts_vectors(rng):
    index = simdex.Index(64)
    base = index.memory_usage()
    index.add(rng.standard_normal((1000, 64)))
    assert index.memory_usage() - base >= 1000 * 64 * 4 + 1000 * 8


def test_threads_search_while_another_adds(rng):
    import threading

    dim = 16
    x = rng.standard_normal((4000, dim)).astype(np.float32)
    q = rng.standard_normal((5, dim)).astype(np.float32)
    index = simdex.Index(dim, "ip")
    index.add(x[:1000])
    errors = []

    def searcher():
        try:
            for _ in range(40):
                s, i = index.search(q, 5)
                n = len(index)
                # Every returned id exists in the data added so far and scores match the vector.
                assert (i >= 0).all() and (i < 4000).all()
                np.testing.assert_allclose(s, np.einsum("qd,qkd->qk", q, x[i]), atol=1e-4)
                assert n >= 1000
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    for start in range(1000, 4000, 500):
        index.add(x[start : start + 500])
    for t in threads:
        t.join()
    assert not errors, errors
    check(index, x, np.arange(4000), q, 10)


# -- row storage past 1 MiB: rows live in an mremap-grown mapping there (Linux) -------------------------------


def test_growth_past_the_large_buffer_threshold_keeps_every_row(rng, tmp_path):
    # 384-d float32 rows reach 1 MiB at 683 rows: the adds below go from heap storage to a mapping and then grow
    # the mapping several times (to 69 MB); removals, save/load and reset must see the same rows as NumPy.
    dim, chunk = 384, 4999
    index = simdex.Index(dim, "ip")
    parts = []
    for _ in range(9):
        parts.append((rng.standard_normal((chunk, dim)) / np.sqrt(dim)).astype(np.float32))
        index.add(parts[-1])
    x, ids = np.concatenate(parts), np.arange(9 * chunk)
    q = (rng.standard_normal((4, dim)) / np.sqrt(dim)).astype(np.float32)
    check(index, x, ids, q, 7)
    gone = rng.choice(ids, 3000, replace=False)  # each fills its hole with the last row
    assert index.remove(gone) == 3000
    keep = ~np.isin(ids, gone)
    check(index, x[keep], ids[keep], q, 7, filter=ids[keep][::3])
    index.save(tmp_path / "big.simdex")
    for mmap in (False, True):
        check(simdex.load(tmp_path / "big.simdex", mmap=mmap), x[keep], ids[keep], q, 7)
    loaded = simdex.load(tmp_path / "big.simdex")
    loaded.add(x[:10])  # a file image turned into owned rows, then grown
    check(loaded, np.concatenate([x[keep], x[:10]]), np.concatenate([ids[keep], 9 * chunk + np.arange(10)]), q, 7)
    index.reset()
    assert len(index) == 0
    index.add(x[:30_000])
    check(index, x[:30_000], np.arange(30_000), q, 5)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM is Linux's; elsewhere growth copies")
def test_growing_an_index_does_not_hold_two_copies_of_it():
    # A vector-style buffer peaks at old + new rows while it grows (about 2x the index); mremap keeps it near 1x.
    script = textwrap.dedent("""
        import json, numpy as np, simdex
        def status(field):
            with open("/proc/self/status") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
        x = np.random.default_rng(0).standard_normal((4096, 384), dtype=np.float32)
        index = simdex.Index(384)
        before = status("VmRSS:")
        for _ in range(49):
            index.add(x)
        print(json.dumps({"growth": status("VmHWM:") - before, "rows": 49 * 4096 * 384 * 4}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout.strip().splitlines()[-1])
    assert got["growth"] <= 1.1 * got["rows"] + 40 * 2**20, got  # 2x would be 616 MB against 308 MB of rows


@pytest.mark.parametrize("spread", [1, 1 << 20, 1 << 40])
def test_id_table_through_many_adds_and_removals(spread, rng):
    # The id -> slot table (open addressing, removed entries marked gone) against a dict, through growth and long
    # runs of removals; ids a power of two apart collide in any hash that keeps only low bits.
    dim = 4
    index, model = simdex.Index(dim, "ip"), {}
    next_id = 0
    for _ in range(40):
        n = int(rng.integers(1, 400))
        ids = np.arange(next_id, next_id + n, dtype=np.int64) * spread
        next_id += n
        x = rng.standard_normal((n, dim)).astype(np.float32)
        index.add(x, ids)
        model.update(zip(ids.tolist(), x))
        gone = rng.choice(np.fromiter(model, np.int64), min(len(model), int(rng.integers(0, 300))), replace=False)
        assert index.remove(np.concatenate([gone, [next_id * spread + 7]])) == len(gone)  # plus one never added
        for i in gone.tolist():
            del model[i]
    assert len(index) == len(model)
    assert sorted(index.ids().tolist()) == sorted(model)
    probe = np.arange(next_id, dtype=np.int64) * spread
    assert [int(i) in index for i in probe] == [int(i) in model for i in probe]
    some = np.fromiter(model, np.int64)[:500]
    np.testing.assert_array_equal(index.reconstruct(some), np.stack([model[i] for i in some.tolist()]))
    with pytest.raises(ValueError, match="already in the index"):
        index.add(np.zeros((1, dim), np.float32), some[:1])


def test_id_positions_through_removals_and_readds(rng):
    # Automatic ids need no table while each sits at slot id - first; a removal lists only the row moved into its
    # slot, re-added ids are listed, and past a quarter listed every id is. Checked against a dict at each step,
    # through emptying the index and starting again at another id.
    dim = 4
    index, model = simdex.Index(dim, "ip"), {}

    def check():
        assert len(index) == len(model)
        probe = np.arange(0, index._core.next_id + 3, dtype=np.int64)
        assert [int(i) in index for i in probe] == [int(i) in model for i in probe]
        if model:
            some = np.fromiter(model, np.int64)
            np.testing.assert_array_equal(index.reconstruct(some), np.stack([model[i] for i in some.tolist()]))

    for round_ in range(3):
        x = rng.standard_normal((3000, dim)).astype(np.float32)
        model.update(zip(index.add(x).tolist(), x))
        check()
        for step in range(12):
            gone = rng.choice(np.fromiter(model, np.int64), int(rng.integers(1, 120)), replace=False)
            assert index.remove(gone) == len(gone)
            back = gone[: len(gone) // 2]  # half of them come back, out of order
            y = rng.standard_normal((len(back), dim)).astype(np.float32)
            index.add(y, back)
            for i in gone.tolist():
                del model[i]
            model.update(zip(back.tolist(), y))
            check()
        assert index.remove(np.fromiter(model, np.int64)) == len(model)  # empty: the next add starts a new run
        model.clear()
        check()
