"""int8: kernels against the scalar reference (exactly), the quantizer's properties, the index against a NumPy
reference of the same quantization, save/load, the FAISS-style surface, and bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import simdex
from hypothesis import given, settings
from hypothesis import strategies as st
from simdex import _core

SIZES = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 64, 97, 384, 768, 1023]
ISAS = simdex.simd_info()["supported"]


def codes(rng, *shape):
    return rng.integers(-127, 128, size=shape, dtype=np.int8)


# -- kernels -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_dot_i8_scalar_matches_int64(n, rng):
    a, b = codes(rng, n), codes(rng, n)
    assert _core.dot_i8(a, b, isa="scalar") == int(a.astype(np.int64) @ b.astype(np.int64))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", SIZES)
def test_dot_i8_matches_scalar(isa, n, rng):
    a, b = codes(rng, n), codes(rng, n)
    assert _core.dot_i8(a, b, isa=isa) == _core.dot_i8(a, b, isa="scalar")


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", [384, 1023, 4099])
@pytest.mark.parametrize("signs", [(127, 127), (-127, 127), (127, -127), (-127, -127)])
def test_dot_i8_extremes(isa, n, signs):
    # |a| * sign(b, a) and the VNNI bias must stay exact at the ends of the code range.
    a, b = np.full(n, signs[0], np.int8), np.full(n, signs[1], np.int8)
    assert _core.dot_i8(a, b, isa=isa) == signs[0] * signs[1] * n


@pytest.mark.parametrize("isa", ISAS)
def test_dot_i8_longest_exact_depth(isa):
    n = 133144  # 127 * 127 * n < 2**31: the documented bound
    a = np.full(n, 127, np.int8)
    assert _core.dot_i8(a, a, isa=isa) == 127 * 127 * n
    assert _core.dot_i8(a, -a, isa=isa) == -127 * 127 * n


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", SIZES)
def test_dot_rows_i8_matches_scalar(isa, n, rng):
    q, x = codes(rng, n), codes(rng, 13, n)
    want = _core.dot_rows_i8(q, x, isa="scalar")
    np.testing.assert_array_equal(want, (x.astype(np.int64) @ q.astype(np.int64)).astype(np.float32))
    np.testing.assert_array_equal(_core.dot_rows_i8(q, x, isa=isa), want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kc", [4, 64, 1024])
def test_gemm_i8_matches_scalar(isa, n, kc, rng):
    # Odd row counts leave ragged query and database panels; kc < n splits the depth across calls.
    q, x = codes(rng, 29, n), codes(rng, 37, n)
    want = (q.astype(np.int64) @ x.T.astype(np.int64)).astype(np.float32)
    np.testing.assert_array_equal(_core.gemm_scores_i8(q, x, kc, isa="scalar"), want)
    np.testing.assert_array_equal(_core.gemm_scores_i8(q, x, kc, isa=isa), want)


def test_kernels_reject_minus_128():
    a = np.zeros(8, np.int8)
    b = a.copy()
    b[3] = -128
    with pytest.raises(ValueError, match=r"\[-127, 127\].*-128"):
        _core.dot_i8(a, b)
    with pytest.raises(ValueError, match="-128"):
        _core.dot_rows_i8(a, b.reshape(1, 8))


def test_simd_info_names_int8_kernels():
    info = simdex.simd_info()
    assert info["active"] in info["supported"]
    assert info["int8"] in ("scalar", "avx2", "avx_vnni", "avx512_vnni", "neon", "neon_dotprod")
    with simdex.simd_override("scalar"):
        assert simdex.simd_info()["int8"] == "scalar"


# -- a NumPy reference of the same quantization ---------------------------------------------------------------


def ref_encode(x, calibration):
    """Codes of x (float32 rows) under a (2, dim) calibration, computed the way docs/int8.md states it."""
    offset, step = calibration
    safe = np.where(step > 0, step, np.float32(1))
    c = np.clip(np.rint((x.astype(np.float32) - offset) / safe), -127, 127)
    c[:, step == 0] = 0
    return c.astype(np.int8)


def ref_encode_queries(q, calibration):
    """Query weights u (int8), their step t (float32) and the constant <q, offset> per query."""
    offset, step = calibration
    w = q.astype(np.float32) * step
    t = (np.abs(w).max(axis=1) / np.float32(127)).astype(np.float32)
    safe_t = np.where(t > 0, t, np.float32(1))[:, None]
    u = np.clip(np.rint(w / safe_t), -127, 127)
    u[t == 0] = 0
    return u.astype(np.int8), t, q.astype(np.float64) @ offset.astype(np.float64)


def ref_search(index, x_codes, ids, q, k, allow=None, rescore=None, originals=None):
    """Top-k by exact integer dot products (ties to the lower id), scores t * dot + <q, offset>; with rescore,
    the k * rescore best are rescored in float64 against the originals."""
    u, t, off = ref_encode_queries(q, index.calibration)
    keep = np.ones(len(ids), bool) if allow is None else np.isin(ids, allow)
    codes, ids_k = x_codes[keep], np.asarray(ids)[keep]
    dots = u.astype(np.int64) @ codes.astype(np.int64).T
    out_s = np.full((len(q), k), -np.inf, np.float32)
    out_i = np.full((len(q), k), -1, np.int64)
    for r in range(len(q)):
        order = np.lexsort((ids_k, -dots[r]))
        if rescore is None:
            order = order[:k]
            scores = t[r] * dots[r, order].astype(np.float64) + off[r]
        else:
            cand = order[: k * rescore]
            exact = originals[keep][cand].astype(np.float64) @ q[r].astype(np.float64)
            sub = np.lexsort((ids_k[cand], -exact))[:k]
            order, scores = cand[sub], exact[sub]
        out_s[r, : len(order)] = scores
        out_i[r, : len(order)] = ids_k[order]
    return out_s, out_i


def clustered(rng, n, dim, clusters=20, spread=0.15):
    """Unit vectors around a few random centres: the shape real embeddings have."""
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    x = centres[rng.integers(0, clusters, n)] + spread * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def quiet_index(dim, metric="ip", keep_originals=False, train=None):
    index = simdex.Index(dim, metric=metric, dtype="int8", keep_originals=keep_originals)
    if train is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            index.train(train)
    return index


# -- quantizer properties -------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    dim=st.integers(1, 40),
    n=st.integers(1, 300),
    scale=st.floats(1e-3, 1e3),
    shift=st.floats(-100, 100),
)
def test_round_trip_within_half_a_step_inside_the_clip_range(seed, dim, n, scale, shift):
    rng = np.random.default_rng(seed)
    train = (shift + scale * rng.standard_normal((n, dim))).astype(np.float32)
    index = quiet_index(dim, train=train)
    offset, step = index.calibration
    assert np.all(step >= 0) and np.all(np.isfinite(offset))
    # Any vector inside [offset - 127 step, offset + 127 step] decodes to within half a step.
    x = (offset + step * rng.uniform(-127, 127, (50, dim))).astype(np.float32)
    index.add(x)
    decoded = index.reconstruct(np.arange(50))
    err = np.abs(decoded.astype(np.float64) - x)
    slack = 4 * np.finfo(np.float32).eps * (np.abs(offset) + 127 * step)  # float32 rounding of the decode
    assert np.all(err <= step / 2 + slack)
    np.testing.assert_array_equal(index.codes(np.arange(50)), ref_encode(x, index.calibration))


def test_training_range_covers_the_sample_and_clips_outliers(rng):
    x = rng.standard_normal((20000, 8)).astype(np.float32)
    x[123, 3] = 1000.0  # one wild value must not stretch the range
    index = quiet_index(8, train=x)
    offset, step = index.calibration
    lo, hi = offset - 127 * step, offset + 127 * step
    assert hi[3] < 10
    assert np.all(lo <= np.quantile(x, 1e-3, axis=0)) and np.all(hi >= np.quantile(x, 1 - 1e-3, axis=0))
    index.add(x[120:125])
    assert index.codes([3])[0, 3] == 127  # clipped to the top code


@pytest.mark.parametrize("m", [10, 200, 2000])
def test_small_samples_are_widened_beyond_their_own_range(m, rng):
    x = rng.standard_normal((m, 4)).astype(np.float32)
    index = quiet_index(4, train=x)
    offset, step = index.calibration
    widen = 4.5 - np.sqrt(2 * np.log(m))  # the shortfall of a small sample's extremes, in standard deviations
    lo, hi = offset - 127 * step, offset + 127 * step
    srt = np.sort(x, axis=0)
    sd = np.clip(x, srt[1], srt[-2]).std(axis=0)  # winsorized at the second most extreme values
    assert np.all(lo <= x.min(axis=0) - 0.99 * widen * sd) and np.all(hi >= x.max(axis=0) + 0.99 * widen * sd)


def test_large_samples_use_their_range(rng):
    x = rng.standard_normal((131072, 3)).astype(np.float32)
    offset, step = quiet_index(3, train=x).calibration
    np.testing.assert_allclose(offset - 127 * step, x.min(axis=0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(offset + 127 * step, x.max(axis=0), rtol=1e-5, atol=1e-5)


def test_rounds_to_nearest_instead_of_truncating():
    train = np.array([[-127.0], [127.0]] * 600, np.float32)
    index = quiet_index(1, train=train)
    offset, step = index.calibration
    x = (offset + step * np.array([[0.6], [-0.6], [0.4], [2.5], [3.5], [126.7]], np.float32)).astype(np.float32)
    index.add(x)
    assert index.codes(np.arange(6))[:, 0].tolist() == [1, -1, 0, 2, 4, 127]  # ties to even, like numpy.rint


def test_zero_range_dimensions_store_their_constant(rng):
    x = rng.standard_normal((2000, 6)).astype(np.float32)
    x[:, 2] = 0.0
    x[:, 4] = 7.25
    index = quiet_index(6, train=x)
    offset, step = index.calibration
    assert step[2] == 0 and step[4] == 0 and offset[2] == 0 and offset[4] == 7.25
    assert np.all(step[[0, 1, 3, 5]] > 0)
    index.add(x[:100])
    assert not index.codes(np.arange(100))[:, [2, 4]].any()
    decoded = index.reconstruct(np.arange(100))
    assert np.all(decoded[:, 2] == 0) and np.all(decoded[:, 4] == 7.25)
    # A later vector off the constant still encodes to 0 there (the range is fixed).
    y = x[:1].copy()
    y[0, 4] = 9.0
    index.add(y)
    assert index.codes([100])[0, 4] == 0


@pytest.mark.parametrize("value", [0.0, 3.5, -1e6])
def test_constant_vectors(value):
    x = np.full((1500, 5), value, np.float32)
    index = quiet_index(5)
    index.add(x)
    np.testing.assert_array_equal(index.calibration[1], np.zeros(5, np.float32))
    np.testing.assert_array_equal(index.reconstruct(np.arange(1500)), x)
    s, i = index.search(np.ones(5, np.float32), 4)
    np.testing.assert_array_equal(i, [[0, 1, 2, 3]])  # all tie: lowest ids first
    np.testing.assert_allclose(s, 5 * value, rtol=1e-6)


def test_first_add_calibrates_and_later_batches_are_encoded_the_same_way(rng):
    x = clustered(rng, 3000, 24)
    streamed = quiet_index(24, metric="cosine")
    streamed.add(x[:1000])
    cal = streamed.calibration.copy()
    streamed.add(x[1000:2000])
    streamed.add(x[2000:])
    np.testing.assert_array_equal(streamed.calibration, cal)  # fixed after the first add
    one = quiet_index(24, metric="cosine", train=x[:1000])
    one.add(x)
    np.testing.assert_array_equal(one.calibration, cal)
    np.testing.assert_array_equal(streamed.codes(np.arange(3000)), one.codes(np.arange(3000)))


def test_single_query_is_not_all_zeros(rng):
    # A lone query gets its own step: it is never flattened to zeros.
    x = clustered(rng, 2000, 32)
    index = quiet_index(32, metric="cosine")
    index.add(x)
    u, t, _ = ref_encode_queries(x[:1] / np.linalg.norm(x[:1]), index.calibration)
    assert t[0] > 0 and np.abs(u).max() == 127
    _, i = index.search(x[0], 1)
    assert i[0, 0] == 0


# -- the index against the NumPy reference --------------------------------------------------------------------


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("nq", [1, 7, 40])
def test_search_matches_numpy_reference(isa, nq, rng):
    n, dim, k = 1237, 97, 11  # odd sizes: ragged panels, tiles and depth
    x = (rng.standard_normal((n, dim)) * rng.uniform(0.1, 2, dim) + rng.uniform(-1, 1, dim)).astype(np.float32)
    ids = rng.permutation(10 * n)[:n].astype(np.int64)
    index = quiet_index(dim, metric="ip")
    index.add(x, ids)
    codes = ref_encode(x, index.calibration)
    np.testing.assert_array_equal(index.codes(ids), codes)
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    with simdex.simd_override(isa):
        got_s, got_i = index.search(q, k)
    ref_s, ref_i = ref_search(index, codes, ids, q, k)
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_allclose(got_s, ref_s, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("isa", ISAS)
def test_single_queries_and_batches_agree(isa, rng):
    x = clustered(rng, 4000, 64)
    index = quiet_index(64, metric="cosine")
    index.add(x)
    q = x[:25] + 0.02 * rng.standard_normal((25, 64)).astype(np.float32)
    with simdex.simd_override(isa):
        batch = index.search(q, 10)
        single = [index.search(row, 10) for row in q]
    np.testing.assert_array_equal(batch.ids, np.vstack([s.ids for s in single]))
    np.testing.assert_array_equal(batch.scores, np.vstack([s.scores for s in single]))
    with simdex.simd_override("scalar"):
        np.testing.assert_array_equal(index.search(q, 10).ids, batch.ids)  # every level ranks the same integers


@pytest.mark.parametrize("nq", [1, 13])
def test_filter_and_remove_match_numpy_reference(nq, rng):
    n, dim, k = 3001, 40, 7
    x = rng.standard_normal((n, dim)).astype(np.float32)
    index = quiet_index(dim, metric="ip")
    ids = index.add(x)
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    codes = ref_encode(x, index.calibration)
    for allow in (rng.choice(ids, 50, replace=False), rng.choice(ids, 2000, replace=False)):  # gathered / masked
        got_s, got_i = index.search(q, k, filter=allow)
        ref_s, ref_i = ref_search(index, codes, ids, q, k, allow=allow)
        np.testing.assert_array_equal(got_i, ref_i)
        np.testing.assert_allclose(got_s, ref_s, rtol=1e-5, atol=1e-5)
    gone = rng.choice(ids, 1000, replace=False)
    assert index.remove(gone) == 1000
    left = np.setdiff1d(ids, gone)
    assert len(index) == len(left) and not np.isin(gone, index.ids()).any()
    got_s, got_i = index.search(q, k)
    ref_s, ref_i = ref_search(index, codes[left], left, q, k)
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_allclose(got_s, ref_s, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(index.codes(left[:5]), codes[left[:5]])


@pytest.mark.parametrize("rescore", [1, 4])
@pytest.mark.parametrize("nq", [1, 9])
def test_rescore_matches_numpy_reference(rescore, nq, rng):
    n, dim, k = 2500, 48, 10
    x = clustered(rng, n, dim)
    index = quiet_index(dim, metric="ip", keep_originals=True)
    ids = index.add(x)
    q = x[rng.integers(0, n, nq)] + 0.05 * rng.standard_normal((nq, dim)).astype(np.float32)
    got_s, got_i = index.search(q, k, rescore=rescore)
    ref_s, ref_i = ref_search(index, ref_encode(x, index.calibration), ids, q, k, rescore=rescore, originals=x)
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_allclose(got_s, ref_s, rtol=0, atol=1e-5)  # exact float scores


def test_min_score_applies_to_returned_scores(rng):
    x = clustered(rng, 2000, 16)
    index = quiet_index(16, metric="cosine", keep_originals=True)
    index.add(x)
    for rescore in (None, 3):
        s, i = index.search(x[:5], 50, rescore=rescore)
        floor = float(np.median(s[np.isfinite(s)]))
        s2, i2 = index.search(x[:5], 50, rescore=rescore, min_score=floor)
        kept = s >= floor
        np.testing.assert_array_equal(i2[kept], i[kept])
        assert np.all(i2[~kept] == -1) and np.all(np.isneginf(s2[~kept]))


def test_recall_on_clustered_vectors(rng):
    x = clustered(rng, 20000, 64, clusters=50, spread=0.3)
    q = clustered(rng, 200, 64, clusters=50, spread=0.3)
    exact = simdex.Index(64)
    exact.add(x)
    index = simdex.Index(64, dtype="int8", keep_originals=True)
    index.add(x)
    _, truth = exact.search(q, 10)
    for rescore, floor in ((None, 0.95), (4, 0.999)):
        _, got = index.search(q, 10, rescore=rescore)
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, truth)])
        assert recall >= floor, (rescore, recall)


def test_int8_scores_approximate_cosine(rng):
    x = clustered(rng, 3000, 64)
    index = simdex.Index(64, dtype="int8")
    index.add(x)
    s, i = index.search(x[:20], 5)
    exact = np.einsum("qd,qkd->qk", x[:20].astype(np.float64), x[i].astype(np.float64))
    np.testing.assert_allclose(s, exact, atol=0.02)


def test_reconstruct_returns_originals_or_decoded(rng):
    x = clustered(rng, 1500, 16)
    kept = quiet_index(16, metric="cosine", keep_originals=True)
    kept.add(x)
    np.testing.assert_allclose(kept.reconstruct([3, 7]), x[[3, 7]], atol=1e-6)
    plain = quiet_index(16, metric="cosine")
    plain.add(x)
    offset, step = plain.calibration
    decoded = plain.reconstruct([3, 7])
    np.testing.assert_allclose(decoded, offset + step * plain.codes([3, 7]).astype(np.float32), rtol=1e-6)
    assert np.all(np.abs(decoded - x[[3, 7]]) <= step / 2 + 1e-6)


def test_empty_and_untrained_searches_are_padded():
    index = simdex.Index(8, dtype="int8")
    assert not index.is_trained
    s, i = index.search(np.ones(8), 3)
    assert i.tolist() == [[-1, -1, -1]] and np.all(np.isneginf(s))
    with pytest.raises(ValueError, match="not calibrated"):
        _ = index.calibration


def test_memory_is_one_byte_per_dimension(rng):
    n, dim = 5000, 96
    x = rng.standard_normal((n, dim)).astype(np.float32)
    index = simdex.Index(dim, dtype="int8")
    index.add(x)
    parts = index.memory_usage(detail=True)
    assert parts["vectors"] == n * dim
    assert parts["calibration"] == 2 * dim * 4
    assert index.memory_usage() == sum(parts.values())
    kept = simdex.Index(dim, dtype="int8", keep_originals=True)
    kept.add(x)
    assert kept.memory_usage(detail=True)["vectors"] == n * dim * 5


# -- persistence ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("keep_originals", [False, True])
@pytest.mark.parametrize("how", ["read", "mmap", "bytes"])
def test_save_load_keeps_calibration_codes_and_results(keep_originals, how, rng, tmp_path):
    x = clustered(rng, 2000, 32)
    index = simdex.Index(32, dtype="int8", keep_originals=keep_originals)
    index.add(x)
    index.remove([5, 6, 7])
    q = x[:4] + 0.01
    path = tmp_path / "i8.sdx"
    index.save(path)
    if how == "bytes":
        back = simdex.load_bytes(path.read_bytes())
    else:
        back = simdex.load(path, mmap=how == "mmap")
    assert back.dtype == "int8" and back.keep_originals == keep_originals and back.is_trained
    np.testing.assert_array_equal(back.calibration, index.calibration)
    np.testing.assert_array_equal(back.ids(), index.ids())
    np.testing.assert_array_equal(back.codes(back.ids()), index.codes(index.ids()))
    for rescore in (None, 2) if keep_originals else (None,):
        a, b = index.search(q, 10, rescore=rescore), back.search(q, 10, rescore=rescore)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.scores, b.scores)
    if how != "mmap":  # the loaded index keeps encoding new vectors with the saved calibration
        back.add(x[:3], ids=[10_000, 10_001, 10_002])
        np.testing.assert_array_equal(back.codes([10_000, 10_001]), index.codes([0, 1]))


def test_untrained_empty_int8_index_round_trips(tmp_path):
    index = simdex.Index(12, dtype="int8")
    index.save(tmp_path / "e.sdx")
    back = simdex.load(tmp_path / "e.sdx")
    assert back.dtype == "int8" and not back.is_trained and len(back) == 0


def test_float32_files_still_load_as_float32(rng, tmp_path):
    index = simdex.Index(8)
    index.add(rng.standard_normal((10, 8)))
    index.save(tmp_path / "f.sdx")
    assert simdex.load(tmp_path / "f.sdx").dtype == "float32"


# -- FAISS-style surface --------------------------------------------------------------------------------------


def test_index_scalar_quantizer_surface(rng, tmp_path):
    from simdex.faiss_compat import METRIC_INNER_PRODUCT, ScalarQuantizer

    x = clustered(rng, 3000, 32)
    sq = simdex.IndexScalarQuantizer(32, ScalarQuantizer.QT_8bit, METRIC_INNER_PRODUCT)
    assert not sq.is_trained and sq.ntotal == 0 and sq.d == 32
    sq.train(x)
    assert sq.is_trained
    sq.add(x[:1000])
    sq.add_with_ids(x[1000:1010], np.arange(50_000, 50_010))
    D, I = sq.search(x[:3], 4)
    assert D.shape == I.shape == (3, 4) and I[0, 0] == 0
    assert sq.remove_ids(np.array([0])) == 1 and sq.ntotal == 1009
    simdex.write_index(sq, tmp_path / "sq.sdx")
    back = simdex.read_index(tmp_path / "sq.sdx")
    assert isinstance(back, simdex.IndexScalarQuantizer) and back.ntotal == 1009
    np.testing.assert_array_equal(back.search(x[:3], 4)[1], sq.search(x[:3], 4)[1])


def test_index_scalar_quantizer_takes_l2_and_refuses_other_types():
    from simdex.faiss_compat import METRIC_L2

    assert simdex.IndexScalarQuantizer(8, "QT_8bit", METRIC_L2).metric_type == METRIC_L2
    with pytest.raises(ValueError, match="metric"):
        simdex.IndexScalarQuantizer(8, "QT_8bit", 5)
    with pytest.raises(ValueError, match="8-bit"):
        simdex.IndexScalarQuantizer(8, "QT_4bit")


# -- bad input and warnings -----------------------------------------------------------------------------------


def test_bad_arguments_say_what_was_expected():
    with pytest.raises(ValueError, match="dtype: expected one of"):
        simdex.Index(8, dtype="float16")
    with pytest.raises(ValueError, match="keep_originals=True applies to dtype='int8'"):
        simdex.Index(8, keep_originals=True)
    with pytest.raises(TypeError, match="keep_originals: expected a bool"):
        simdex.Index(8, dtype="int8", keep_originals="yes")
    assert simdex.Index(8, dtype=np.int8).dtype == "int8"
    f32 = simdex.Index(8)
    f32.add(np.ones((2, 8)))
    with pytest.raises(ValueError, match="rescore applies to dtype='int8'"):
        f32.search(np.ones(8), 1, rescore=2)
    with pytest.raises(ValueError, match="needs no training"):
        f32.train(np.ones((2, 8)))
    with pytest.raises(ValueError, match="no int8 calibration"):
        _ = f32.calibration
    with pytest.raises(ValueError, match="stores no int8 codes"):
        f32.codes([0])


def test_rescore_without_originals_and_bad_values(rng):
    index = quiet_index(8)
    index.add(rng.standard_normal((1200, 8)))
    with pytest.raises(ValueError, match="keep_originals=True"):
        index.search(np.ones(8), 1, rescore=4)
    kept = quiet_index(8, keep_originals=True)
    kept.add(rng.standard_normal((1200, 8)))
    for bad, err in ((0, ValueError), (-2, ValueError), (True, TypeError), (2.5, TypeError), ("4", TypeError)):
        with pytest.raises(err, match="rescore"):
            kept.search(np.ones(8), 1, rescore=bad)


def test_training_twice_or_with_bad_vectors_is_refused(rng):
    index = quiet_index(8, train=rng.standard_normal((1000, 8)))
    with pytest.raises(ValueError, match="already calibrated"):
        index.train(rng.standard_normal((1000, 8)))
    fresh = simdex.Index(8, dtype="int8")
    bad = rng.standard_normal((1000, 8))
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="row 3, column 4"):
        fresh.train(bad)
    with pytest.raises(ValueError, match="expected 8 columns"):
        fresh.train(np.ones((1000, 9)))
    with pytest.raises(TypeError, match="float32 or float64"):
        fresh.train(np.ones((1000, 8), np.int8))
    assert not fresh.is_trained
    with pytest.raises(IndexError, match="id 42 is not in the index"):
        index.codes([42])


def test_small_calibration_warns(rng):
    index = simdex.Index(8, dtype="int8")
    with pytest.warns(UserWarning, match="fewer than 1000"):
        index.add(rng.standard_normal((50, 8)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        index.add(rng.standard_normal((50, 8)))  # already calibrated: no warning
        big = simdex.Index(8, dtype="int8")
        big.add(rng.standard_normal((1000, 8)))
    with pytest.warns(UserWarning, match="fewer than 1000"):
        simdex.Index(8, dtype="int8").train(rng.standard_normal((10, 8)))


def test_dim_beyond_the_exact_int8_range_is_refused():
    with pytest.raises(ValueError, match="int8 indexes take dim up to 133144"):
        simdex.Index(200_000, dtype="int8")


def _int8_file(rng, keep_originals=False):
    import sdxfile

    index = simdex.Index(4, dtype="int8", metric="ip", keep_originals=keep_originals)
    index.add(rng.standard_normal((1200, 4)))
    return sdxfile, sdxfile.parse(index._core.to_bytes())


def test_int8_file_sections(rng):
    sdx, f = _int8_file(rng)
    names = [s.name for s in f.sections]
    assert {"index", "ids", "int8.offset", "int8.step", "int8.codes"} <= set(names) and "vectors.f32" not in names
    assert f.get("int8.codes").dtype == sdx.I8 and (f.get("int8.codes").rows, f.get("int8.codes").cols) == (1200, 4)
    assert all(f.get(n).flags & sdx.REQUIRED for n in ("int8.offset", "int8.step", "int8.codes"))
    flags = sdx.INDEX_HEADER.unpack(f.get("index").data)[4]
    assert flags == 1  # int8, no originals
    _, kept = _int8_file(rng, keep_originals=True)
    assert sdx.INDEX_HEADER.unpack(kept.get("index").data)[4] == 3 and kept.get("vectors.f32").rows == 1200


@pytest.mark.parametrize(
    "damage, message",
    [
        ("negative step", "step of dimension 2 must be finite and >= 0"),
        ("nan offset", "offset of dimension 1 is not finite"),
        ("code -128", "code -128 at row 7"),
        ("no calibration", "needs its calibration"),
        ("originals flag on float32", "flag 'originals' is set on a float32 index"),
        ("unknown flag", "unknown index flags 17"),
    ],
)
def test_damaged_int8_files_are_refused(damage, message, rng):
    sdx, f = _int8_file(rng)
    sections = f.sections
    head = list(sdx.INDEX_HEADER.unpack(f.get("index").data))
    if damage == "negative step":
        step = np.frombuffer(f.get("int8.step").data, np.float32).copy()
        step[2] = -1
        f.get("int8.step").data = step.tobytes()
    elif damage == "nan offset":
        off = np.frombuffer(f.get("int8.offset").data, np.float32).copy()
        off[1] = np.nan
        f.get("int8.offset").data = off.tobytes()
    elif damage == "code -128":
        codes = np.frombuffer(f.get("int8.codes").data, np.int8).copy()
        codes[7 * 4 + 1] = -128
        f.get("int8.codes").data = codes.tobytes()
    elif damage == "no calibration":
        sections = [s for s in sections if s.name not in ("int8.offset", "int8.step")]
    elif damage == "originals flag on float32":
        head[4] = 2
    elif damage == "unknown flag":
        head[4] = 17  # int8 and bit 4, which no version defines (bits 2 and 3 are binary and its int8 tier)
    f.get("index").data = sdx.INDEX_HEADER.pack(*head)
    with pytest.raises(simdex.FormatError, match=message):
        simdex.load_bytes(sdx.build(sections))


def test_huge_rescore_factor_is_bounded_by_the_index_size(rng):
    x = clustered(rng, 1500, 8)
    index = quiet_index(8, metric="ip", keep_originals=True)
    index.add(x)
    got = index.search(x[:2], 5, rescore=10**12)  # k * R candidates would not fit in memory; n of them do
    exact = simdex.Index(8, "ip")
    exact.add(x)
    np.testing.assert_array_equal(got.ids, exact.search(x[:2], 5).ids)


def test_empty_add_does_not_calibrate():
    index = simdex.Index(8, dtype="int8")
    index._core.add(np.zeros((0, 8), np.float32), None)  # the Python layer refuses empty arrays; the core must cope
    assert not index.is_trained and len(index) == 0


def test_codes_and_kept_floats_past_the_large_buffer_threshold(rng):
    # 384-d codes reach 1 MiB at 2,731 rows and the kept floats at 683: both move from heap storage to a grown
    # mapping over these adds (see row_store.hpp); every code and rescored score must survive the moves.
    dim, chunk = 384, 1_500
    index = quiet_index(dim, metric="ip", keep_originals=True)
    parts = []
    for _ in range(9):
        parts.append(rng.standard_normal((chunk, dim)).astype(np.float32))
        index.add(parts[-1])
    x, ids = np.concatenate(parts), np.arange(9 * chunk)
    codes = ref_encode(x, index.calibration)
    np.testing.assert_array_equal(index.codes(ids), codes)
    gone = rng.choice(ids, 500, replace=False)
    index.remove(gone)
    keep = ~np.isin(ids, gone)
    np.testing.assert_array_equal(index.codes(ids[keep]), codes[keep])
    q = rng.standard_normal((3, dim)).astype(np.float32)
    got_s, got_i = index.search(q, 10, rescore=4)
    ref_s, ref_i = ref_search(index, codes[keep], ids[keep], q, 10, rescore=4, originals=x[keep])
    np.testing.assert_array_equal(got_i, ref_i)
    np.testing.assert_allclose(got_s, ref_s, rtol=1e-5, atol=1e-5)
