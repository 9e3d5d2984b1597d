"""A pre-transform composed with int8: Index(d, transform=PCA(m), dtype="int8")."""

import numpy as np
import pytest

import simdex


def test_pca_int8_index_matches_its_parts(tmp_path, rng):
    basis = rng.standard_normal((64, 64)).astype(np.float32) * np.linspace(3, 0.1, 64)[:, None]
    x = (rng.standard_normal((3000, 64)).astype(np.float32) @ basis).astype(np.float32)
    q = x[:20] + 0.05 * rng.standard_normal((20, 64)).astype(np.float32)
    both = simdex.Index(64, transform=simdex.PCA(24), dtype="int8", keep_originals=True)
    both.train(x)
    both.add(x)
    reduced = simdex.Index(64, transform=simdex.PCA(24))
    reduced.train(x)
    reduced.add(x)
    np.testing.assert_allclose(both.transform.components_, reduced.transform.components_, atol=1e-6)
    exact_s, exact_i = reduced.search(q, 10)
    # Rescored with the kept (projected) float rows: the same scores as the float32 reduced index.
    s, i = both.search(q, 10, rescore=8)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i, exact_i)]) >= 0.99
    np.testing.assert_allclose(np.sort(s, axis=1), np.sort(exact_s, axis=1), atol=1e-4)
    # int8 scores alone stay close.
    s8, i8 = both.search(q, 10)
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i8, exact_i)]) >= 0.8
    path = tmp_path / "both.simdex"
    both.save(path)
    back = simdex.load(path)
    assert back.dtype == "int8" and back.transform is not None and back.dim == 64
    np.testing.assert_array_equal(back.search(q, 10, rescore=8).ids, i)
    with pytest.raises(ValueError, match="already"):
        back.train(x)
