"""dtype="binary": 1-bit codes around a learned centre, the asymmetric score, rescoring with kept originals, and
everything the other dtypes do (ids, remove, filter, min_score, files), against a NumPy float64 model."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import sdxfile
import simdex
from sdxfile import build, parse

LEVELS = simdex.simd_info()["supported"]
# Most tests add a few hundred rows to an untrained index on purpose; test_small_first_add_warns checks the warning.
pytestmark = pytest.mark.filterwarnings("ignore:this first add calibrates the binary index")


def clustered(rng, n, dim, centers=20):
    c = rng.standard_normal((centers, dim)).astype(np.float32)
    return (c[rng.integers(0, centers, n)] + 0.5 * rng.standard_normal((n, dim))).astype(np.float32)


def unit(x):
    x = np.asarray(x, np.float64)
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1)


def model(index, stored, queries, metric="cosine"):
    """NumPy float64 scores of every stored row (codes read back from the index) for every query."""
    center, scale = index.calibration.astype(np.float64)
    q = unit(queries) if metric == "cosine" else np.asarray(queries, np.float64)
    bits = index.codes(stored)
    signs = np.unpackbits(bits, axis=1, bitorder="little")[:, :index.dim].astype(np.float64) * 2 - 1
    return (q @ center)[:, None] + ((q - center) * scale) @ signs.T


def check_against_model(index, ids, queries, k, metric="cosine", tol=1e-4):
    res = index.search(queries, k)
    full = model(index, ids, queries, metric)
    pos = {int(i): j for j, i in enumerate(ids)}
    for qi in range(len(queries)):
        got = res.ids[qi][res.ids[qi] >= 0]
        want = np.sort(full[qi])[::-1][: len(got)]
        exp = np.array([full[qi, pos[int(i)]] for i in got])
        np.testing.assert_allclose(res.scores[qi][: len(got)], exp, atol=tol)  # each score is the model's
        np.testing.assert_allclose(exp, want, atol=tol)  # and they are the model's top k (up to near-ties)
    return res


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize("dim", [1, 7, 8, 13, 64, 100, 384])
def test_scores_are_the_asymmetric_model(isa, dim, rng):
    x = clustered(rng, 700, dim)
    index = simdex.Index(dim, dtype="binary")
    index.add(x)
    q = clustered(rng, 5, dim)
    with simdex.simd_override(isa):
        check_against_model(index, np.arange(700), q, 10)
        check_against_model(index, np.arange(700), q[:1], 10)  # the single-query path


def test_codes_and_centre_follow_numpy(rng):
    x = clustered(rng, 500, 45)
    index = simdex.Index(45, dtype="binary")
    index.add(x)
    xn = unit(x)
    center, scale = index.calibration
    np.testing.assert_allclose(center, xn.mean(axis=0), atol=1e-6)
    np.testing.assert_allclose(scale, np.abs(xn - center.astype(np.float64)).mean(axis=0), atol=1e-6)
    want = np.packbits(xn.astype(np.float32) > center, axis=1, bitorder="little")
    np.testing.assert_array_equal(index.codes(np.arange(500)), want)
    assert index.codes([0]).shape == (1, 6) and index.codes([0]).dtype == np.uint8


def test_ip_metric_and_batches_equal_single_queries(rng):
    x = clustered(rng, 900, 33)
    index = simdex.Index(33, metric="ip", dtype="binary")
    index.add(x)
    q = clustered(rng, 7, 33)
    res = check_against_model(index, np.arange(900), q, 5, metric="ip")
    for i in range(7):
        one = index.search(q[i], 5)
        np.testing.assert_array_equal(one.ids[0], res.ids[i])
        np.testing.assert_allclose(one.scores[0], res.scores[i], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("R", [1, 4, 10])
def test_rescore_equals_float32_on_the_candidates(R, rng):
    x = clustered(rng, 2000, 48)
    index = simdex.Index(48, dtype="binary", keep_originals=True)
    index.add(x)
    exact = simdex.Index(48)
    exact.add(x)
    q = clustered(rng, 6, 48)
    k = 5
    cand = index.search(q, k * R).ids  # the binary search's candidates
    res = index.search(q, k, rescore=R)
    for i in range(6):
        c = cand[i][cand[i] >= 0]
        s = unit(x[c]) @ unit(q[i : i + 1])[0]
        order = np.lexsort((c, -s))[:k]
        np.testing.assert_array_equal(res.ids[i], c[order])
        np.testing.assert_allclose(res.scores[i], s[order], atol=1e-5)
    # with every row a candidate, rescoring is the float32 index
    full = index.search(q, k, rescore=2000)
    np.testing.assert_array_equal(full.ids, exact.search(q, k).ids)
    np.testing.assert_allclose(full.scores, exact.search(q, k).scores, atol=1e-6)


def test_filter_remove_min_score_and_ids(rng):
    x = clustered(rng, 1200, 40)
    ids = np.arange(1200, dtype=np.int64) * 3 + 7
    index = simdex.Index(40, dtype="binary", keep_originals=True)
    index.train(x)
    index.add(x, ids=ids)
    q = clustered(rng, 4, 40)
    for allow in (ids[::2], ids[:50]):  # the row mask, and the gathered copy of a selective filter
        res = index.search(q, 10, filter=allow)
        assert np.isin(res.ids, allow).all()
        sub = simdex.Index(40, dtype="binary")
        sub.train(x)
        sub.add(x[np.isin(ids, allow)], ids=ids[np.isin(ids, allow)])
        np.testing.assert_array_equal(res.ids, sub.search(q, 10).ids)
        res_r = index.search(q, 10, filter=allow, rescore=4)
        assert np.isin(res_r.ids, allow).all()
    gone = ids[:600]
    assert index.remove(gone) == 600
    assert len(index) == 600
    res = check_against_model(index, ids[600:], q, 10)
    assert not np.isin(res.ids, gone).any()
    assert not np.isin(index.search(q, 10, rescore=3).ids, gone).any()
    floor = float(np.median(res.scores))
    low = index.search(q, 10, min_score=floor)
    for i in range(4):
        keep = res.scores[i] >= floor
        np.testing.assert_array_equal(low.ids[i][: keep.sum()], res.ids[i][keep])
        assert (low.ids[i][keep.sum():] == -1).all() and np.isneginf(low.scores[i][keep.sum():]).all()
    high = index.search(q, 10, rescore=2, min_score=0.5)
    assert (high.scores[high.ids >= 0] >= 0.5).all()


def test_reconstruct_memory_and_empty(rng):
    x = clustered(rng, 300, 20)
    index = simdex.Index(20, dtype="binary")
    assert index.search(x[:2], 3).ids.tolist() == [[-1] * 3] * 2  # empty and untrained
    index.add(x)
    center, scale = index.calibration
    bits = np.unpackbits(index.codes([4]), axis=1, bitorder="little")[:, :20]
    np.testing.assert_allclose(index.reconstruct([4])[0], np.where(bits[0], center + scale, center - scale))
    mem = index.memory_usage(detail=True)
    assert mem["vectors"] == 300 * 3  # ceil(20 / 8) bytes per vector, no float copy
    kept = simdex.Index(20, dtype="binary", keep_originals=True)
    kept.add(x)
    np.testing.assert_allclose(kept.reconstruct([4])[0], unit(x[4:5])[0], atol=1e-6)
    assert kept.memory_usage(detail=True)["vectors"] == 300 * (3 + 80)
    index.reset()
    assert len(index) == 0 and index.is_trained  # the centre stays, as int8's calibration does


@pytest.mark.parametrize("how", ["path", "mmap", "bytes"])
@pytest.mark.parametrize("keep", [False, True])
def test_save_load_round_trip(tmp_path, rng, how, keep):
    x = clustered(rng, 400, 27)
    index = simdex.Index(27, metric="ip", dtype="binary", keep_originals=keep)
    index.add(x, ids=np.arange(400) + 1000)
    index.remove([1000, 1005])
    path = str(tmp_path / "b.sdx")
    index.save(path)
    if how == "bytes":
        loaded = simdex.load_bytes(open(path, "rb").read())
    else:
        loaded = simdex.load(path, mmap=how == "mmap")
    assert (loaded.dtype, loaded.keep_originals, loaded.metric, len(loaded)) == ("binary", keep, "ip", 398)
    q = clustered(rng, 3, 27)
    a, b = index.search(q, 8), loaded.search(q, 8)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)
    np.testing.assert_array_equal(index.calibration, loaded.calibration)
    np.testing.assert_array_equal(index.codes(index.ids()), loaded.codes(index.ids()))
    if keep:
        np.testing.assert_array_equal(index.search(q, 8, rescore=4).ids, loaded.search(q, 8, rescore=4).ids)
    if how == "mmap":
        with pytest.raises(ValueError, match="memory-mapped"):
            loaded.add(x[:1])
        loaded.save(str(tmp_path / "again.sdx"))  # a mapped index saves its (checked) sections unchanged
        np.testing.assert_array_equal(simdex.load(str(tmp_path / "again.sdx")).search(q, 8).ids, a.ids)
    else:
        loaded.add(x[:5])  # a loaded file becomes writable
        assert len(loaded) == 403


def _binary_file(rng, dim=13, n=20):
    index = simdex.Index(dim, dtype="binary")
    index.add(clustered(rng, n, dim))
    return parse(index._core.to_bytes())


def _with(f, name, data=None, drop=False, **changes):
    out = []
    for s in f.sections:
        if s.name == name:
            if drop:
                continue
            s = sdxfile.Section(s.name, changes.get("dtype", s.dtype), changes.get("rows", s.rows),
                                changes.get("cols", s.cols), s.data if data is None else data, s.flags)
        out.append(s)
    return build(out)


def _header(f, flags=None, metric=None):
    dim, count, nid, m, fl, res = sdxfile.INDEX_HEADER.unpack(f.get("index").data)
    return sdxfile.INDEX_HEADER.pack(dim, count, nid, m if metric is None else metric, fl if flags is None else flags,
                                     res)


def test_hostile_binary_files_raise_format_error(rng):
    f = _binary_file(rng)
    assert simdex.load_bytes(build(f.sections)).dtype == "binary"  # the rebuilt file itself is fine
    codes = bytearray(f.get("binary.codes").data)
    codes[1] |= 0x80  # dim 13: bits 13..15 of each row's second byte are padding
    center = np.frombuffer(f.get("binary.center").data, np.float32).copy()
    center[0] = np.nan
    scale = np.frombuffer(f.get("binary.scale").data, np.float32).copy()
    scale[2] = -1
    bad = [
        _with(f, "binary.codes", bytes(codes)),
        _with(f, "binary.codes", drop=True),
        _with(f, "binary.center", drop=True),
        _with(f, "binary.scale", drop=True),
        _with(f, "binary.center", center.tobytes()),
        _with(f, "binary.scale", scale.tobytes()),
        _with(f, "binary.codes", f.get("binary.codes").data[:-2], rows=19),
        _with(f, "index", _header(f, flags=4 | 1)),  # binary and int8
        _with(f, "index", _header(f, metric=2)),  # binary under l2
        _with(f, "index", _header(f, flags=0)),  # binary sections in a float32 index
    ]
    for data in bad:
        with pytest.raises(simdex.FormatError):
            simdex.load_bytes(data)
    flipped = bytearray(build(f.sections))
    flipped[parse(bytes(flipped)).get("binary.codes").offset] ^= 1  # a checksum catches a damaged code byte
    with pytest.raises(simdex.FormatError):
        simdex.load_bytes(bytes(flipped))


def test_bad_input_is_refused(rng):
    with pytest.raises(ValueError, match="l2"):
        simdex.Index(8, metric="l2", dtype="binary")
    with pytest.raises(ValueError, match="dtype"):
        simdex.Index(8, dtype="bits")
    x = clustered(rng, 100, 8)
    index = simdex.Index(8, dtype="binary")
    index.add(x)
    with pytest.raises(ValueError, match="keep_originals"):
        index.search(x[:1], 3, rescore=4)
    with pytest.raises(ValueError, match="exact"):
        index.search(x[:1], 3, exact=True)
    with pytest.raises(ValueError, match="already trained"):
        index.train(x)
    with pytest.raises(ValueError):
        index.add(np.full((1, 8), np.nan, np.float32))
    with pytest.raises(ValueError):
        index.search(np.zeros((1, 9), np.float32), 3)
    with pytest.raises(ValueError, match="rescore"):
        simdex.Index(8).search(x[:1], 3, rescore=2)
    assert "dtype='binary'" in repr(index)


def test_sizes_around_byte_and_row_block_edges(rng):
    """Row counts around the scan's 4-row passes and tasks, and dims around byte boundaries, through search."""
    for dim in (9, 16, 17):
        for n in (1, 3, 4, 5, 4095, 4097):
            x = clustered(rng, n, dim)
            index = simdex.Index(dim, dtype="binary")
            index.add(x)
            check_against_model(index, np.arange(n), clustered(rng, 2, dim), 7)
            check_against_model(index, np.arange(n), clustered(rng, 1, dim), 7)


def test_struct_layout_assumption():
    assert struct.calcsize("<QQqII32s") == 64


def test_evaluate_variants_build_binary_indexes():
    from simdex.quality.evaluate import Variant

    plain, rescored = Variant.parse("binary"), Variant.parse("binary+rescore10")
    assert (plain.dtype, plain.rescore, plain.search_kwargs()) == ("binary", None, {})
    assert (rescored.dtype, rescored.search_kwargs()) == ("binary", {"rescore": 10})
    index = rescored.build(16)
    assert (index.dtype, index.keep_originals) == ("binary", True)
    with pytest.raises(ValueError, match="rescoring needs int8 or binary"):
        Variant.parse("float32+rescore4")


@pytest.mark.parametrize("isa", LEVELS)
def test_batches_return_what_single_queries_do(isa, rng):
    """A batch ranks a pool with the int8 GEMM on +-1 codes, then scores the pool exactly: the same results as the
    single-query scan, with filters and rescoring too."""
    x = clustered(rng, 3000, 96)
    ids = np.arange(3000, dtype=np.int64) * 2
    index = simdex.Index(96, dtype="binary", keep_originals=True)
    index.add(x, ids=ids)
    q = clustered(rng, 12, 96)
    with simdex.simd_override(isa):
        cases = ({}, {"filter": ids[::3]}, {"filter": ids[:200]}, {"rescore": 4}, {"rescore": 2, "filter": ids[1::2]})
        for kw in cases:
            batch = index.search(q, 10, **kw)
            for i in range(len(q)):
                one = index.search(q[i], 10, **kw)
                np.testing.assert_array_equal(one.ids[0], batch.ids[i])
                np.testing.assert_allclose(one.scores[0], batch.scores[i], atol=1e-5)


def test_dims_past_the_int8_depth_use_the_float_kernel_in_batches(rng):
    dim = 133_160  # above kMaxI8Depth: batches go through the single-query kernel
    x = rng.standard_normal((12, dim)).astype(np.float32)
    index = simdex.Index(dim, dtype="binary")
    index.add(x)
    check_against_model(index, np.arange(12), x[:3] + 0.1, 4, tol=1e-3)


def test_binary_shards_with_one_centre_equal_one_binary_index(rng):
    x = clustered(rng, 1500, 32)
    ids = rng.permutation(10_000)[:1500].astype(np.int64)

    def binary_index(rows):
        index = simdex.Index(32, dtype="binary", keep_originals=True)
        index.train(x)  # one centre for all shards: their scores are comparable
        index.add(x[rows], ids=ids[rows])
        return index

    sharded = simdex.ShardedIndex([binary_index(np.arange(s, 1500, 3)) for s in range(3)])
    one = binary_index(np.arange(1500))
    assert sharded.dtype == "binary"
    q = clustered(rng, 6, 32)
    a, b = sharded.search(q, 10), one.search(q, 10)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
    got = sharded.search(q, 5, rescore=4)
    assert np.isin(got.ids, ids).all()


def test_mapped_file_with_padding_bits_is_refused_on_save(tmp_path, rng):
    """A mapped file's codes are not read at load; saving checks them before copying."""
    f = _binary_file(rng)
    codes = bytearray(f.get("binary.codes").data)
    codes[1] |= 0x80
    path = tmp_path / "pad.sdx"
    path.write_bytes(_with(f, "binary.codes", bytes(codes)))
    mapped = simdex.load(str(path), mmap=True)
    with pytest.raises(simdex.FormatError, match="bits past dim"):
        mapped.save(str(tmp_path / "copy.sdx"))


def test_small_first_add_warns(rng):
    index = simdex.Index(16, dtype="binary")
    with pytest.warns(UserWarning, match="calibrates the binary index on 10 vectors"):
        index.add(clustered(rng, 10, 16))


# -- keep_originals="int8": int8 codes as the rescoring tier ----------------------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_int8_tier_rescores_with_decoded_int8_rows(metric, rng):
    x = clustered(rng, 2500, 40)
    index = simdex.Index(40, metric=metric, dtype="binary", keep_originals="int8")
    index.train(x)
    index.add(x, ids=np.arange(2500) + 10)
    assert index.keep_originals == "int8" and "keep_originals='int8'" in repr(index)
    mem = index.memory_usage(detail=True)
    assert mem["vectors"] == 2500 * (5 + 40)  # bits + int8 codes, no float rows
    q = clustered(rng, 5, 40)
    qn = unit(q) if metric == "cosine" else q.astype(np.float64)
    decoded = index.reconstruct(index.ids()).astype(np.float64)  # the int8 tier decoded
    ref = simdex.Index(40, metric=metric, dtype="int8")
    ref.train(x)
    ref.add(x, ids=np.arange(2500) + 10)
    np.testing.assert_allclose(decoded, ref.reconstruct(index.ids()), atol=1e-6)  # same calibration as int8
    for R in (1, 4, 20):
        cand = index.search(q, 5 * R).ids
        res = index.search(q, 5, rescore=R)
        for i in range(5):
            c = cand[i][cand[i] >= 0]
            s = decoded[c - 10] @ qn[i]
            order = np.lexsort((c, -s))[:5]
            np.testing.assert_array_equal(res.ids[i], c[order])
            np.testing.assert_allclose(res.scores[i], s[order], atol=1e-5)
    single = index.search(q[0], 5, rescore=4)
    np.testing.assert_array_equal(single.ids[0], index.search(q, 5, rescore=4).ids[0])


@pytest.mark.parametrize("how", ["path", "mmap"])
def test_int8_tier_round_trip_remove_and_filter(tmp_path, rng, how):
    x = clustered(rng, 800, 24)
    index = simdex.Index(24, dtype="binary", keep_originals="int8")
    index.add(x)
    index.remove(np.arange(0, 800, 5))
    q = clustered(rng, 3, 24)
    allow = np.arange(1, 800, 2)
    want = index.search(q, 6, rescore=4, filter=allow)
    assert np.isin(want.ids, allow).all() and not np.isin(want.ids, np.arange(0, 800, 5)).any()
    path = str(tmp_path / "tier.sdx")
    index.save(path)
    loaded = simdex.load(path, mmap=how == "mmap")
    assert loaded.keep_originals == "int8"
    got = loaded.search(q, 6, rescore=4, filter=allow)
    np.testing.assert_array_equal(got.ids, want.ids)
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(loaded.reconstruct([1, 2]), index.reconstruct([1, 2]))
    if how == "path":
        loaded.add(x[:3])
        assert len(loaded) == 643


def test_int8_tier_bad_arguments_and_files(rng):
    with pytest.raises(ValueError, match="applies to dtype='binary'"):
        simdex.Index(8, dtype="int8", keep_originals="int8")
    with pytest.raises(TypeError, match="keep_originals"):
        simdex.Index(8, dtype="binary", keep_originals="half")
    index = simdex.Index(13, dtype="binary", keep_originals="int8")
    index.add(clustered(rng, 20, 13))
    f = parse(index._core.to_bytes())
    assert simdex.load_bytes(build(f.sections)).keep_originals == "int8"
    codes = bytearray(f.get("int8.codes").data)
    codes[3] = 0x80  # -128: never written
    bad = [
        _with(f, "int8.codes", bytes(codes)),
        _with(f, "int8.codes", drop=True),
        _with(f, "int8.offset", drop=True),
        _with(f, "index", _header(f, flags=4)),  # int8 sections in a binary index without the tier flag
        _with(f, "index", _header(f, flags=4 | 8 | 2)),  # the tier with the originals flag
        _with(f, "index", _header(f, flags=8)),  # the tier without binary
    ]
    for data in bad:
        with pytest.raises(simdex.FormatError):
            simdex.load_bytes(data)
    empty = simdex.Index(13, dtype="binary", keep_originals="int8")
    empty.train(clustered(rng, 50, 13))
    g = parse(empty._core.to_bytes())
    with pytest.raises(simdex.FormatError, match="both the centre and the int8 calibration"):
        simdex.load_bytes(_with(_with_file(g, "int8.step"), "int8.offset", drop=True))


def _with_file(f, name):
    """f without section `name`, as a parsed file."""
    return parse(_with(f, name, drop=True))
