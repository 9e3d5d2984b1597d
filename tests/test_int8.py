"""int8: kernels against the scalar reference (exactly), the quantizer's properties, the index against a NumPy
reference of the same quantization, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

import simdex
from simdex import _core

SIZES = [1, 2, 3, 4, 5, 7, 8, 15, 16, 17, 31, 33, 64, 97, 384, 768, 1023]
ISAS = simdex.simd_info()["supported"]


@pytest.fixture
def rng():
    return np.random.default_rng(20240611)


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
