"""Binary (1-bit) kernels against the scalar reference, and the reference against NumPy, at every supported level and
at sizes that hit every tail: dims around multiples of 8 (one code byte), 16 / 8 (a float vector), 64 (a popcount
vector), 64 / 32 / 16 / 8 int16 weights (the scan's lanes), 512 (its int16 chunk) and 512 bits, row counts around
the 8- and 4-row passes."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simdex
from simdex import _core

LEVELS = simdex.simd_info()["supported"]
DIMS = [1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 383, 384, 385, 511,
        512, 513, 767, 1000, 1023, 1024, 1025, 1056, 1537]
WMAX = 511  # kernels::kB1WeightMax
ROWS = [1, 3, 4, 5, 7, 8, 9, 13]
EPS = np.finfo(np.float32).eps


def random_codes(rng, rows, dim):
    """Random codes with the bits past dim cleared, as the encoder writes them."""
    codes = rng.integers(0, 256, size=(rows, (dim + 7) // 8), dtype=np.uint8)
    if dim % 8:
        codes[:, -1] &= (1 << (dim % 8)) - 1
    return codes


def signs(codes, dim):
    return np.unpackbits(codes, axis=1, bitorder="little")[:, :dim].astype(np.float64) * 2 - 1


def bound(q):
    return 4 * q.size * EPS * float(np.abs(q).astype(np.float64).sum()) + 1e-30


def test_simd_info_names_binary_kernels():
    assert isinstance(simdex.simd_info()["binary"], str)


def random_weights(rng, dim, extreme=False):
    """int16 scan weights; extreme: every weight WMAX (or every one -WMAX), the largest lane sums the kernels must
    hold."""
    if extreme:
        return np.full(dim, WMAX if rng.random() < 0.5 else -WMAX, dtype=np.int16)
    return rng.integers(-WMAX, WMAX + 1, size=dim).astype(np.int16)


@pytest.mark.parametrize("dim", DIMS)
def test_scalar_dot_b1_matches_float64(dim, rng):
    q = rng.standard_normal(dim).astype(np.float32)
    codes = random_codes(rng, 5, dim)
    ref = signs(codes, dim) @ q.astype(np.float64)
    for r in range(5):
        assert abs(_core.dot_b1(q, codes[r], isa="scalar") - ref[r]) <= bound(q)


@pytest.mark.parametrize("dim", DIMS)
def test_scalar_sums_match_numpy(dim, rng):
    w = random_weights(rng, dim)
    codes = random_codes(rng, 5, dim)
    bits = np.unpackbits(codes, axis=1, bitorder="little")[:, :dim].astype(np.int64)
    assert np.array_equal(_core.sums_rows_b1(w, codes, isa="scalar"), bits @ w.astype(np.int64))


@pytest.mark.parametrize("nbytes", [1, 2, 7, 8, 9, 31, 32, 33, 48, 63, 64, 65, 96, 127, 128, 129, 200])
def test_scalar_hamming_matches_numpy(nbytes, rng):
    a = rng.integers(0, 256, size=nbytes, dtype=np.uint8)
    x = rng.integers(0, 256, size=(6, nbytes), dtype=np.uint8)
    ref = np.unpackbits(x ^ a, axis=1).sum(axis=1)
    assert np.array_equal(_core.hamming_rows_b1(a, x, isa="scalar"), ref)
    assert _core.hamming_b1(a, x[0], isa="scalar") == ref[0]


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize("dim", DIMS)
def test_dot_b1_matches_scalar(isa, dim, rng):
    q = rng.standard_normal(dim).astype(np.float32)
    codes = random_codes(rng, 3, dim)
    for code in codes:
        assert abs(_core.dot_b1(q, code, isa=isa) - _core.dot_b1(q, code, isa="scalar")) <= 2 * bound(q)


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize("dim", DIMS)
def test_sums_rows_b1_match_scalar_exactly(isa, dim, rng):
    for rows in ROWS:
        for extreme in (False, True):
            w = random_weights(rng, dim, extreme)
            codes = random_codes(rng, rows, dim)
            if extreme:  # all bits set in the first rows: every lane adds its largest sum
                codes[: (rows + 1) // 2] = np.packbits(np.arange(codes.shape[1] * 8) < dim, bitorder="little")
            ref = _core.sums_rows_b1(w, codes, isa="scalar")
            assert np.array_equal(_core.sums_rows_b1(w, codes, isa=isa), ref), (rows, extreme)


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize("dim", [9, 17, 100, 385])
def test_binary_kernels_ignore_bits_past_dim(isa, dim, rng):
    """Bits past dim in the last byte are not dimensions: the AVX-512 tail masks them off, the others never read
    them."""
    q = rng.standard_normal(dim).astype(np.float32)
    w = random_weights(rng, dim)
    codes = random_codes(rng, 5, dim)
    dirty = codes.copy()
    dirty[:, -1] |= np.uint8((0xFF << (dim % 8)) & 0xFF)
    assert np.array_equal(_core.sums_rows_b1(w, dirty, isa=isa), _core.sums_rows_b1(w, codes, isa="scalar"))
    for r in range(5):
        assert abs(_core.dot_b1(q, dirty[r], isa=isa) - _core.dot_b1(q, codes[r], isa="scalar")) <= 2 * bound(q)


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize("nbytes", [1, 2, 7, 8, 9, 15, 16, 17, 31, 32, 33, 48, 63, 64, 65, 96, 127, 128, 129, 200])
def test_hamming_b1_matches_scalar_exactly(isa, nbytes, rng):
    a = rng.integers(0, 256, size=nbytes, dtype=np.uint8)
    for rows in ROWS:
        x = rng.integers(0, 256, size=(rows, nbytes), dtype=np.uint8)
        ref = _core.hamming_rows_b1(a, x, isa="scalar")
        assert np.array_equal(_core.hamming_rows_b1(a, x, isa=isa), ref)
        assert _core.hamming_b1(a, x[-1], isa=isa) == ref[-1]


@pytest.mark.parametrize("isa", LEVELS)
def test_hamming_b1_extremes(isa):
    """All bits equal and all bits different, at a size with full vectors and a tail."""
    ones = np.full(200, 255, dtype=np.uint8)
    zeros = np.zeros(200, dtype=np.uint8)
    assert _core.hamming_b1(ones, zeros, isa=isa) == 1600
    assert _core.hamming_b1(ones, ones, isa=isa) == 0


def test_binary_kernels_refuse_bad_shapes():
    with pytest.raises(ValueError):
        _core.dot_b1(np.zeros(9, np.float32), np.zeros(1, np.uint8))
    with pytest.raises(ValueError):
        _core.sums_rows_b1(np.zeros(9, np.int16), np.zeros((3, 1), np.uint8))
    with pytest.raises(ValueError, match="-511..511, got 512"):
        _core.sums_rows_b1(np.full(8, 512, np.int16), np.zeros((3, 1), np.uint8))
    with pytest.raises(ValueError):
        _core.hamming_b1(np.zeros(3, np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(ValueError):
        _core.hamming_rows_b1(np.zeros(3, np.uint8), np.zeros((2, 4), np.uint8))


@given(dim=st.integers(1, 700), rows=st.integers(1, 12), seed=st.integers(0, 2**32 - 1))
@settings(max_examples=60, deadline=None)
def test_every_level_matches_numpy_for_any_shape(dim, rows, seed):
    """Property: for any dim and row count, every level's asymmetric score is the float64 sum of +-q within the
    float32 bound, the scan's integer sums are exact, and Hamming is the exact count of differing bits."""
    rng = np.random.default_rng(seed)
    q = rng.standard_normal(dim).astype(np.float32)
    codes = random_codes(rng, rows, dim)
    w = rng.integers(-WMAX, WMAX + 1, size=dim).astype(np.int16)
    ref = signs(codes, dim) @ q.astype(np.float64)
    sums = np.unpackbits(codes, axis=1, bitorder="little")[:, :dim].astype(np.int64) @ w.astype(np.int64)
    ham = np.unpackbits(codes ^ codes[0], axis=1).sum(axis=1)
    for isa in LEVELS:
        assert all(abs(_core.dot_b1(q, code, isa=isa) - r) <= 3 * bound(q) for code, r in zip(codes, ref))
        assert np.array_equal(_core.sums_rows_b1(w, codes, isa=isa), sums)
        assert np.array_equal(_core.hamming_rows_b1(codes[0], codes, isa=isa), ham)


@pytest.mark.parametrize("isa", ["scalar"] + LEVELS)
@pytest.mark.parametrize("dim", [1, 7, 8, 9, 63, 64, 65, 127, 128, 129, 255, 256, 257, 383, 384, 385, 448, 512, 513])
def test_hamming_select_matches_numpy(isa, dim, rng):
    """The batch prefilter's panel kernel (the VPOPCNTDQ one where the CPU has it, else the scalar reference): for
    query counts around its 4-query block and row counts around its 8-row panel, each query gets exactly the rows
    within the threshold, in row order, with their distances."""
    for nq, rows, thr in [(1, 1, 0), (3, 7, dim), (4, 8, dim // 2), (5, 9, dim // 2), (9, 61, dim // 3 + 1)]:
        q, x = random_codes(rng, nq, dim), random_codes(rng, rows, dim)
        x[rows // 2] = q[0]  # a distance 0
        ref = (signs(q, dim)[:, None, :] != signs(x, dim)[None, :, :]).sum(axis=2)
        got = _core.hamming_select_b1(q, x, dim, thr, isa=isa)
        assert len(got) == nq
        for j, (found, dist) in enumerate(got):
            want = np.flatnonzero(ref[j] <= thr)
            np.testing.assert_array_equal(found, want)
            np.testing.assert_array_equal(dist, ref[j][want])
