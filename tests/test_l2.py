"""Metric "l2": squared Euclidean distances, nearest first, against a NumPy float64 brute force; float32 and int8
(distances to the decoded rows, or exact with rescore), filters, removal, max_distance, files."""

import struct

import numpy as np
import pytest

import simdex
from sdxfile import F32, REQUIRED, Section, build, parse

LEVELS = simdex.simd_info()["supported"]


@pytest.fixture(params=LEVELS)
def level(request):
    with simdex.simd_override(request.param):
        yield request.param


def l2_brute_force(x, ids, q, k, allow=None, max_distance=None):
    """Exact top-k by float64 squared distance, ties to the lower id, padded with (+inf, -1)."""
    x = np.asarray(x, np.float64)
    q = np.atleast_2d(np.asarray(q, np.float64))
    ids = np.asarray(ids)
    keep = np.ones(len(ids), bool) if allow is None else np.isin(ids, allow)
    x, ids = x[keep], ids[keep]
    d = ((q[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    out_d = np.full((len(q), k), np.inf)
    out_i = np.full((len(q), k), -1, np.int64)
    for r in range(len(q)):
        order = np.lexsort((ids, d[r]))
        if max_distance is not None:
            order = order[d[r, order] <= max_distance]
        order = order[:k]
        out_d[r, : len(order)] = d[r, order]
        out_i[r, : len(order)] = ids[order]
    return out_d, out_i


def check(index, x, ids, q, k, rtol=2e-5, **kw):
    got_d, got_i = index.search(q, k, **kw)
    ref_d, ref_i = l2_brute_force(x, ids, q, k, kw.get("filter"), kw.get("max_distance"))
    assert got_d.dtype == np.float32 and got_i.dtype == np.int64
    # Ids agree, except where float32 cannot separate two distances (adjacent float64 ones within rtol).
    padded = np.pad(ref_d, ((0, 0), (1, 1)), constant_values=np.inf)
    with np.errstate(invalid="ignore"):
        tied = (np.abs(padded[:, 1:-1] - padded[:, :-2]) <= rtol * padded[:, 1:-1]) | (
            np.abs(padded[:, 1:-1] - padded[:, 2:]) <= rtol * padded[:, 1:-1])
    np.testing.assert_array_equal(got_i[~tied], ref_i[~tied])
    np.testing.assert_array_equal(np.isinf(got_d), np.isinf(ref_d))
    assert (got_d[np.isinf(got_d)] > 0).all()  # padding is +inf
    fin = np.isfinite(ref_d)
    np.testing.assert_allclose(got_d[fin], ref_d[fin], rtol=rtol, atol=1e-30)
    assert (got_d[:, 1:] >= got_d[:, :-1]).all()  # nearest first


@pytest.mark.parametrize("dim,n,nq", [(17, 700, 1), (64, 1000, 3), (400, 1500, 130), (33, 5000, 1)])
def test_float32_matches_float64(level, dim, n, nq, rng):
    # An offset and uneven scales: the norms differ a lot from row to row, unlike unit embeddings.
    x = (rng.standard_normal((n, dim)) * rng.uniform(0.1, 3.0, (n, 1)) + 0.5).astype(np.float32)
    q = (rng.standard_normal((nq, dim)) + 0.5).astype(np.float32)
    index = simdex.Index(dim, metric="l2")
    ids = index.add(x)
    check(index, x, ids, q, 10)
    check(index, x, ids, q, n + 3)  # k past the size: padded with (+inf, -1)


def test_near_duplicates_keep_relative_accuracy(level, rng):
    # ||q||^2 - 2<q,x> + ||x||^2 would cancel to noise here; the distance is recomputed from q - x.
    x = (rng.standard_normal((2000, 96)) * 30).astype(np.float32)
    q = x[:20] + np.float32(1e-3) * rng.standard_normal((20, 96)).astype(np.float32)
    index = simdex.Index(96, metric="l2")
    index.add(x)
    d, i = index.search(q, 1)
    np.testing.assert_array_equal(i[:, 0], np.arange(20))
    ref = ((q.astype(np.float64) - x[:20].astype(np.float64)) ** 2).sum(1)
    np.testing.assert_allclose(d[:, 0], ref, rtol=1e-5)


def test_no_normalization_and_zero_query(rng):
    x = np.array([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]], np.float32)
    index = simdex.Index(2, metric="l2")
    index.add(x)
    d, i = index.search(np.zeros(2, np.float32), 3)
    np.testing.assert_array_equal(i, [[2, 1, 0]])
    np.testing.assert_allclose(d, [[0.0, 0.25, 25.0]], rtol=1e-6)
    np.testing.assert_array_equal(index.reconstruct([0]), x[:1])  # stored as given


def test_filter_remove_and_max_distance(level, rng):
    x = rng.standard_normal((3000, 40)).astype(np.float32)
    q = rng.standard_normal((7, 40)).astype(np.float32)
    index = simdex.Index(40, metric="l2")
    ids = index.add(x, np.arange(3000) * 3 + 1)
    check(index, x, ids, q, 12, filter=ids[::2])      # a row mask inside the scan
    check(index, x, ids, q, 12, filter=ids[:50:3])    # few allowed rows: a gathered copy
    radius = float(np.median(l2_brute_force(x, ids, q, 5)[0]))
    check(index, x, ids, q, 12, max_distance=radius)
    assert index.remove(ids[:1000]) == 1000           # the last rows (and their norms) move into the holes
    check(index, x[1000:], ids[1000:], q, 12)


def test_thresholds_are_checked():
    index = simdex.Index(4, metric="l2")
    index.add(np.eye(4, dtype=np.float32))
    with pytest.raises(ValueError, match="max_distance"):
        index.search(np.ones(4), 2, min_score=0.5)
    with pytest.raises(ValueError, match="NaN"):
        index.search(np.ones(4), 2, max_distance=float("nan"))
    with pytest.raises(ValueError, match="max_distance applies"):
        simdex.Index(4, metric="ip").search(np.ones(4), 2, max_distance=1.0)
    with pytest.raises(ValueError, match="not 'l2'"):
        index.search(np.ones(4), 2, diagnostics=True)
    with pytest.raises(ValueError, match="2\\*\\*62"):
        index.add(np.full((1, 4), 2.0**62, np.float32))
    with pytest.raises(ValueError, match="2\\*\\*62"):
        index.search(np.full(4, 2.0**62, np.float32), 1)
    assert len(index) == 4


@pytest.mark.parametrize("nq", [1, 9, 4100])  # 4100: two passes of the batched scan, each with its own scales
def test_int8_distances_are_to_the_decoded_rows(level, nq, rng):
    x = (rng.standard_normal((1500, 16)) * rng.uniform(0.2, 2.0, 16) + 1.0).astype(np.float32)
    q = (rng.standard_normal((nq, 16)) + 1.0).astype(np.float32)
    index = simdex.Index(16, metric="l2", dtype="int8")
    index.train(x)
    ids = index.add(x)
    decoded = index.reconstruct(ids)  # no originals kept: offset + step * code
    d, i = index.search(q, 10)
    ref_d, ref_i = l2_brute_force(decoded, ids, q, 10)
    # The ranking uses the int8 query too (an approximation); the distances reported are exact for the ids given.
    found = np.take_along_axis(((q[:, None, :].astype(np.float64) - decoded[None]) ** 2).sum(-1), i, 1)
    np.testing.assert_allclose(d, found, rtol=2e-5)
    assert (d[:, 1:] >= d[:, :-1]).all()
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i, ref_i)])
    assert recall >= 0.9
    for j in (0, nq - 1):  # alone or in a batch (past the first 4096 queries too): the same codes, the same result
        alone = index.search(q[j], 10)
        np.testing.assert_array_equal(alone.ids[0], i[j])
        np.testing.assert_array_equal(alone.scores[0], d[j])


def test_int8_rescore_is_exact(level, rng):
    x = (rng.standard_normal((2000, 48)) + 0.3).astype(np.float32)
    q = rng.standard_normal((25, 48)).astype(np.float32)
    index = simdex.Index(48, metric="l2", dtype="int8", keep_originals=True)
    ids = index.add(x)
    # With k * R >= n every row is a candidate, so the result is the exact top-k.
    check(index, x, ids, q, 10, rescore=200)
    d, i = index.search(q, 10, rescore=4)
    ref_i = l2_brute_force(x, ids, q, 10)[1]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i, ref_i)]) >= 0.97
    exact = ((q[:, None].astype(np.float64) - x[None]) ** 2).sum(-1)
    np.testing.assert_allclose(d, np.take_along_axis(exact, i, 1), rtol=2e-5)  # against the originals


@pytest.mark.parametrize("dtype", ["float32", "int8"])
def test_files_round_trip(tmp_path, dtype, rng):
    x = (rng.standard_normal((1200, 24)) * 2).astype(np.float32)
    q = rng.standard_normal((5, 24)).astype(np.float32)
    index = simdex.Index(24, metric="l2", dtype=dtype, keep_originals=dtype == "int8")
    index.add(x)
    index.remove(np.arange(0, 1200, 7))
    want = index.search(q, 8)
    path = str(tmp_path / "l2.sdx")
    index.save(path)
    assert parse(open(path, "rb").read()).get("l2.norms").flags & REQUIRED
    for back in (simdex.load(path), simdex.load(path, mmap=True), simdex.load_bytes(open(path, "rb").read())):
        assert back.metric == "l2"
        got = back.search(q, 8)
        np.testing.assert_array_equal(got.ids, want.ids)
        np.testing.assert_array_equal(got.scores, want.scores)
    back = simdex.load(path)  # a loaded image becomes writable: its norms are copied with the rows
    new = back.add(x[:3] + 0.5)
    back.remove(back.ids()[:10])
    if dtype == "float32":
        check(back, back.reconstruct(back.ids()), back.ids(), q, 8)
    assert back.search(x[:3] + 0.5, 1).ids[:, 0].tolist() == new.tolist()
    back.save(path)  # and saved again from memory
    mapped = simdex.load(path, mmap=True)
    np.testing.assert_array_equal(mapped.search(q, 8).ids, back.search(q, 8).ids)
    mapped.save(str(tmp_path / "copy.sdx"))  # the mapped norms are checked, then copied unchanged
    np.testing.assert_array_equal(simdex.load(str(tmp_path / "copy.sdx")).search(q, 8).ids, back.search(q, 8).ids)


def test_file_checks_the_norms(tmp_path, rng):
    index = simdex.Index(8, metric="l2")
    index.add(rng.standard_normal((20, 8)).astype(np.float32))
    path = str(tmp_path / "a.sdx")
    index.save(path)
    f = parse(open(path, "rb").read())
    head = f.get("index")
    assert struct.unpack_from("<I", head.data, 24)[0] == 2  # metric code 2: l2
    norms = np.frombuffer(f.get("l2.norms").data, np.float32).copy()
    norms[3] *= 2  # a norm that is not its row's
    bad = [s if s.name != "l2.norms" else Section("l2.norms", F32, 20, 1, norms.tobytes(), REQUIRED)
           for s in f.sections]
    with pytest.raises(simdex.FormatError, match="squared norm of row 3"):
        simdex.load_bytes(build(bad))
    missing = [s for s in f.sections if s.name != "l2.norms"]
    with pytest.raises(simdex.FormatError, match="l2.norms"):
        simdex.load_bytes(build(missing))
    # A mapped file's norms are read only when it is saved: a damaged one is refused then, nothing written.
    open(path, "wb").write(build(bad))
    with pytest.raises(simdex.FormatError, match="squared norm of row 3"):
        simdex.load(path, mmap=True).save(str(tmp_path / "b.sdx"))


def test_transform_under_l2(rng):
    x = (rng.standard_normal((3000, 32)) @ rng.standard_normal((32, 32)) + 2.0).astype(np.float32)
    q = (rng.standard_normal((6, 32)) @ rng.standard_normal((32, 32)) + 2.0).astype(np.float32)
    pca = simdex.PCA(12, center="both")
    index = simdex.Index(32, metric="l2", transform=pca)
    ids = index.add(x)
    w, m = pca.components_.astype(np.float64), pca.mean_
    d, i = index.search(q, 10)
    ref_d, ref_i = l2_brute_force((x - m) @ w.T, ids, (q - m) @ w.T, 10)  # the projections' distances
    np.testing.assert_array_equal(i, ref_i)
    np.testing.assert_allclose(d, ref_d, rtol=1e-4)
    with pytest.raises(ValueError, match="l2 distances"):
        simdex.Index(32, metric="l2", transform=simdex.PCA(12))  # center="database" leaves queries uncentered
    with pytest.raises(ValueError, match="l2 distances"):
        simdex.Index(32, metric="l2", transform=simdex.Truncate(12))


def test_files_without_l2_load_as_before_and_unknown_metrics_are_refused(rng):
    from sdxfile import index_sections

    x = rng.standard_normal((6, 4)).astype(np.float32)
    old = simdex.load_bytes(build(index_sections(4, list(range(6)), x.tobytes(), metric=1)))  # a pre-l2 ip file
    assert old.metric == "ip" and old.search(x[2], 1).ids[0, 0] == 2
    with pytest.raises(simdex.FormatError, match="unknown metric code 3 \\(0 cosine, 1 ip, 2 l2\\)"):
        simdex.load_bytes(build(index_sections(4, list(range(6)), x.tobytes(), metric=3)))
    ip_file = build(index_sections(4, list(range(6)), x.tobytes(), metric=1))
    f = parse(ip_file)
    norms = Section("l2.norms", F32, 6, 1, (x.astype(np.float64) ** 2).sum(1).astype(np.float32).tobytes(), REQUIRED)
    with pytest.raises(simdex.FormatError, match="'l2.norms' in an index whose metric is not l2"):
        simdex.load_bytes(build(f.sections + [norms]))


@pytest.mark.filterwarnings("ignore:int8 calibration from|this first add calibrates")
def test_int8_calibration_keeps_distances_finite(rng):
    # Rows within the 2**62 norm limit, but a calibration that decodes past it: refused at train and at load.
    big = (2.0**61 * rng.uniform(0.3, 0.95, (50, 4))).astype(np.float32)  # norms below 2**62; ranges widen past it
    assert np.linalg.norm(big.astype(np.float64), axis=1).max() < 2.0**62
    with pytest.raises(ValueError, match="calibration decodes vectors of L2 norm above 2\\*\\*62"):
        simdex.Index(4, metric="l2", dtype="int8").train(big)
    with pytest.raises(ValueError, match="nothing was added"):
        simdex.Index(4, metric="l2", dtype="int8").add(big)  # the first add calibrates: the same check
    index = simdex.Index(4, metric="l2", dtype="int8")
    index.add(rng.standard_normal((30, 4)).astype(np.float32))
    f = parse(index._core.to_bytes())
    step = Section("int8.step", F32, 1, 4, np.full(4, 2.0**60, np.float32).tobytes(), REQUIRED)
    with pytest.raises(simdex.FormatError, match="above 2\\*\\*62"):
        simdex.load_bytes(build([s if s.name != "int8.step" else step for s in f.sections]))
