"""Every SIMD kernel against the scalar reference, at sizes that hit every tail, at every supported level."""

import numpy as np
import pytest

import simdex
from simdex import _core

LEVELS = simdex.simd_info()["supported"]
SIZES = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 31, 33, 64, 97, 384, 768, 1023]
EPS = np.finfo(np.float32).eps


def bound(a, b, n):
    """Float32 summation error bound for a dot product of length n (any summation order)."""
    return 4 * n * EPS * float(np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)) + 1e-30


def test_simd_info_reports_levels():
    info = simdex.simd_info()
    assert "scalar" in info["compiled"] and "scalar" in info["supported"]
    assert set(info["supported"]) <= set(info["compiled"])
    assert info["active"] in info["supported"]


@pytest.mark.parametrize("n", SIZES)
def test_scalar_dot_matches_float64(n, rng):
    a, b = rng.standard_normal((2, n), dtype=np.float32)
    ref = float(a.astype(np.float64) @ b.astype(np.float64))
    assert abs(_core.dot_f32(a, b, "scalar") - ref) <= bound(a, b, n)


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize("n", SIZES)
def test_dot_f32_matches_scalar(isa, n, rng):
    a, b = rng.standard_normal((2, n), dtype=np.float32)
    ref, got = _core.dot_f32(a, b, "scalar"), _core.dot_f32(a, b, isa)
    assert abs(got - ref) <= 2 * bound(a, b, n)


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize("dim", SIZES)
def test_dot_rows_matches_scalar(isa, dim, rng):
    rows = 9  # not a multiple of the 4-row block: hits the row tail too
    q = rng.standard_normal(dim, dtype=np.float32)
    x = rng.standard_normal((rows, dim), dtype=np.float32)
    ref, got = _core.dot_rows_f32(q, x, "scalar"), _core.dot_rows_f32(q, x, isa)
    for r in range(rows):
        assert abs(got[r] - ref[r]) <= 2 * bound(q, x[r], dim)


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize("dim", [1, 3, 16, 17, 33, 64, 97, 384, 1023])
@pytest.mark.parametrize("nq,n", [(1, 1), (5, 7), (13, 45), (25, 97)])
def test_gemm_micro_kernel_matches_float64(isa, dim, nq, n, rng):
    q = rng.standard_normal((nq, dim), dtype=np.float32)
    x = rng.standard_normal((n, dim), dtype=np.float32)
    ref = q.astype(np.float64) @ x.T.astype(np.float64)
    tol = 4 * dim * EPS * (np.abs(q).astype(np.float64) @ np.abs(x).T.astype(np.float64)) + 1e-30
    got = _core.gemm_scores_f32(q, x, isa)
    assert got.shape == (nq, n)
    assert np.all(np.abs(got - ref) <= tol)
    scalar = _core.gemm_scores_f32(q, x, "scalar")
    assert np.all(np.abs(got - scalar) <= 2 * tol)


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize("n", SIZES + [4096])
def test_select_ge_matches_scalar(isa, n, rng):
    s = rng.standard_normal(n).astype(np.float32)
    s[::5] = 0.25  # values equal to the threshold must be selected
    for t in (-np.inf, 0.25, 1.5, np.inf):
        ref = _core.select_ge_f32(s, t, "scalar")
        got = _core.select_ge_f32(s, t, isa)
        np.testing.assert_array_equal(got, ref)
        np.testing.assert_array_equal(ref, np.flatnonzero(s >= t))


def test_unknown_level_is_rejected():
    with pytest.raises(ValueError, match="unknown SIMD level"):
        _core.dot_f32(np.ones(3, np.float32), np.ones(3, np.float32), "sse9")
    with pytest.raises(ValueError, match="unknown SIMD level"):
        with simdex.simd_override("sse9"):
            pass


def test_simd_override_restores_level():
    before = simdex.simd_info()["active"]
    with simdex.simd_override("scalar"):
        assert simdex.simd_info()["active"] == "scalar"
    assert simdex.simd_info()["active"] == before


@pytest.mark.parametrize("isa", LEVELS)
@pytest.mark.parametrize("n", [1, 5, 16, 17, 33, 64, 70])
@pytest.mark.parametrize("dim", [1, 7, 8, 15, 16, 17, 33, 384])
def test_pack_matches_layout(isa, n, dim, rng):
    x = rng.standard_normal((n, dim), dtype=np.float32)
    got = _core.pack_nr_f32(x, isa)
    panels, _, nr = got.shape
    padded = np.zeros((panels * nr, dim), np.float32)
    padded[:n] = x
    np.testing.assert_array_equal(got, padded.reshape(panels, nr, dim).transpose(0, 2, 1))
