"""The FAISS-style surface. The recipe suite (tests/faiss_recipes.py) runs twice, with ``import faiss`` and with
``import simdex as faiss``, and every result must agree; then what FAISS code meets when it goes wrong."""

import types
from pathlib import Path

import numpy as np
import pytest

import simdex

RECIPES_FILE = Path(__file__).with_name("faiss_recipes.py")


def _recipes(import_line: str) -> types.ModuleType:
    """tests/faiss_recipes.py as a module, its `import faiss` line replaced by import_line."""
    source = RECIPES_FILE.read_text()
    assert source.count("\nimport faiss\n") == 1
    module = types.ModuleType(f"faiss_recipes_{import_line.split()[1]}")
    module.__file__ = str(RECIPES_FILE)
    exec(compile(source.replace("\nimport faiss\n", f"\n{import_line}\n"), str(RECIPES_FILE), "exec"),
         module.__dict__)
    return module


def _data():
    """Rows near a 16-d subspace of 32-d (so a PCA to 16 is well defined), plus radii that catch ~1% of rows."""
    rng = np.random.default_rng(2024)
    mix = rng.standard_normal((16, 32))
    scales = np.linspace(3.0, 0.5, 16)

    def rows(n):
        return (rng.standard_normal((n, 16)) * scales @ mix + 0.05 * rng.standard_normal((n, 32)) + 0.2).astype(
            np.float32)

    xt, xb, xq = rows(3000), rows(2000), rows(20)
    ids = rng.choice(10**6, len(xb), replace=False).astype(np.int64)
    d2 = ((xq[:, None, :].astype(np.float64) - xb[None]) ** 2).sum(-1)
    return {"xt": xt, "xb": xb, "xq": xq, "ids": ids, "radius_l2": float(np.quantile(d2, 0.01)),
            "radius_ip": float(np.quantile(xq.astype(np.float64) @ xb.T, 0.99))}


OURS = _recipes("import simdex as faiss")


def _same_range(theirs, ours, radius):
    (l1, d1, i1), (l2, d2, i2) = theirs, ours
    assert l1.dtype == l2.dtype == np.uint64 and d2.dtype == np.float32 and i2.dtype == np.int64
    assert len(l1) == len(l2)
    for q in range(len(l1) - 1):
        a = dict(zip(i1[l1[q]:l1[q + 1]].tolist(), d1[l1[q]:l1[q + 1]].tolist()))
        b = dict(zip(i2[l2[q]:l2[q + 1]].tolist(), d2[l2[q]:l2[q + 1]].tolist()))
        for i in set(a) ^ set(b):  # only float32 rounding at the radius may separate them
            assert abs(a.get(i, b.get(i)) - radius) <= 1e-4 * max(1.0, abs(radius)), (q, i)
        for i in set(a) & set(b):
            assert a[i] == pytest.approx(b[i], rel=1e-4, abs=1e-4)


def _compare(key, theirs, ours):
    if key.startswith("approx_ids"):  # different 8-bit quantizers: the same neighbours, mostly
        overlap = np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(theirs, ours)])
        assert overlap >= 0.85, overlap
    elif key.startswith("approx_dist"):
        np.testing.assert_allclose(ours, theirs, rtol=0.05, atol=0.05)
    elif key.startswith("dist"):
        assert ours.dtype == np.float32 and ours.shape == theirs.shape
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-4)
    elif key.startswith("vec"):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    else:  # ids, counts, flags, shapes: exactly
        if isinstance(theirs, np.ndarray):
            assert ours.dtype == theirs.dtype, (ours.dtype, theirs.dtype)
        np.testing.assert_array_equal(ours, theirs)


def test_the_recipe_suite_is_large_enough():
    assert len(OURS.RECIPES) >= 25


@pytest.mark.parametrize("name", [r.__name__ for r in OURS.RECIPES])
def test_recipe_matches_faiss(name):
    pytest.importorskip("faiss")
    theirs_module = _recipes("import faiss")
    data = _data()
    theirs = getattr(theirs_module, name)(**{k: (v.copy() if isinstance(v, np.ndarray) else v)
                                              for k, v in data.items()})
    ours = getattr(OURS, name)(**data)
    assert set(ours) == set(theirs)
    for key in theirs:
        if key == "range":
            radius = data["radius_ip"] if name.endswith("_ip") else data["radius_l2"] * (1.5 if "ids" in name else 1)
            _same_range(theirs[key], ours[key], radius)
        else:
            _compare(key, theirs[key], ours[key])


def test_flat_ip_surface(tmp_path, rng):
    x = rng.standard_normal((200, 16)).astype(np.float32)
    index = simdex.IndexFlatIP(16)
    assert (index.d, index.ntotal, index.is_trained) == (16, 0, True)
    index.add(x[:100])
    index.add_with_ids(x[100:], np.arange(1000, 1100))
    assert index.ntotal == 200
    D, I = index.search(x[:3], 4)
    assert D.shape == I.shape == (3, 4) and D.dtype == np.float32 and I.dtype == np.int64
    np.testing.assert_allclose(D, np.sort(x[:3] @ x.T, axis=1)[:, ::-1][:, :4], rtol=1e-5, atol=1e-5)
    assert index.remove_ids(np.array([0, 1000, 5000])) == 2
    assert index.ntotal == 198
    path = tmp_path / "flat.index"
    simdex.write_index(index, str(path))
    back = simdex.read_index(str(path))
    assert isinstance(back, simdex.IndexFlatIP) and back.ntotal == 198
    np.testing.assert_array_equal(back.search(x[:3], 4)[1], index.search(x[:3], 4)[1])
    index.reset()
    assert index.ntotal == 0


def test_same_results_as_faiss(rng):
    faiss = pytest.importorskip("faiss")
    x = rng.standard_normal((5000, 64)).astype(np.float32)
    q = rng.standard_normal((50, 64)).astype(np.float32)
    ours, theirs = simdex.IndexFlatIP(64), faiss.IndexFlatIP(64)
    ours.add(x)
    theirs.add(x)
    for queries in (q, q[:1]):
        D1, I1 = ours.search(queries, 10)
        D2, I2 = theirs.search(queries, 10)
        np.testing.assert_array_equal(I1, I2)
        np.testing.assert_allclose(D1, D2, rtol=1e-5, atol=1e-4)
    # With ids: FAISS needs an IndexIDMap wrapper; simdex takes them directly.
    ids = rng.choice(10**6, 5000, replace=False).astype(np.int64)
    ours2, theirs2 = simdex.IndexFlatIP(64), faiss.IndexIDMap(faiss.IndexFlatIP(64))
    ours2.add_with_ids(x, ids)
    theirs2.add_with_ids(x, ids)
    np.testing.assert_array_equal(ours2.search(q, 10)[1], theirs2.search(q, 10)[1])


# -- what FAISS code meets when it goes wrong, and the simdex-only extras ------------------------------------


def test_every_faiss_name_is_at_the_top_level():
    from simdex import faiss_compat

    missing = [name for name in faiss_compat.__all__ if getattr(simdex, name, None) is not getattr(faiss_compat, name)]
    assert not missing and set(faiss_compat.__all__) <= set(simdex.__all__)


def test_index_factory_says_what_it_supports(monkeypatch):
    from simdex.faiss import _factory

    with pytest.raises(ValueError, match="supports index types 'Flat', 'SQ8'.*'PCA384,Flat'.*'IDMap,Flat'"):
        simdex.index_factory(64, "HNSW32")
    with pytest.raises(ValueError, match="PCA128 must keep between 1 and d = 64"):
        simdex.index_factory(64, "PCA128,Flat")
    with pytest.raises(ValueError, match="metric"):
        simdex.index_factory(64, "Flat", 7)
    # The hook a partitioned index uses: a new index part, with the PCA and IDMap prefixes for free.
    monkeypatch.setattr(_factory, "_TYPES", list(_factory._TYPES))
    made = []

    def build(d, m, metric, pca):
        made.append((d, int(m.group(1)), pca))
        return simdex.IndexFlat(d, metric)

    _factory.register_index_type(r"HNSW(\d+)", build, "HNSW<M>")
    index = simdex.index_factory(64, "IDMap,HNSW32")
    assert isinstance(index, simdex.IndexIDMap) and made == [(64, 32, None)]
    with pytest.raises(ValueError, match="'IVF<nlist>,Flat'.*'HNSW<M>'"):
        simdex.index_factory(64, "IVF4096,PQ8")


def test_normalize_l2_in_place_and_refusals():
    x = np.array([[3.0, 4.0], [0.0, 0.0]], np.float32)
    assert simdex.normalize_L2(x) is None
    np.testing.assert_allclose(x, [[0.6, 0.8], [0.0, 0.0]], rtol=1e-6)
    with pytest.raises(TypeError, match="float32"):
        simdex.normalize_L2(np.ones((2, 2)))  # float64: a converted copy could not be changed in place
    ro = np.ones((2, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        simdex.normalize_L2(ro)


def test_id_map_rules(rng):
    x = rng.standard_normal((10, 4)).astype(np.float32)
    index = simdex.IndexIDMap2(simdex.IndexFlatL2(4))
    with pytest.raises(RuntimeError, match="add_with_ids"):
        index.add(x)
    index.add_with_ids(x, np.arange(10) * 7)
    np.testing.assert_array_equal(index.reconstruct(21), x[3])
    with pytest.raises(IndexError, match="22"):
        index.reconstruct(22)
    full = simdex.IndexFlatL2(4)
    full.add(x)
    with pytest.raises(ValueError, match="must be empty"):
        simdex.IndexIDMap(full)
    with pytest.raises(TypeError, match="IndexFlatL2"):
        simdex.IndexIDMap(simdex.Index(4))


def test_scalar_quantizer_takes_l2_by_default(rng):
    x = rng.standard_normal((2000, 16)).astype(np.float32)
    sq = simdex.IndexScalarQuantizer(16, simdex.ScalarQuantizer.QT_8bit, keep_originals=True)
    assert sq.metric_type == simdex.METRIC_L2
    sq.train(x)
    sq.add(x)
    D, I = sq.search(x[:5], 3, rescore=10)  # exact distances from the kept originals
    np.testing.assert_array_equal(I[:, 0], np.arange(5))
    assert (D[:, 0] == 0).all()


def test_files_keep_the_wrapper_and_its_numbering(tmp_path, rng):
    x = rng.standard_normal((50, 8)).astype(np.float32)
    index = simdex.IndexFlatL2(8)
    index.add(x)
    index.remove_ids(simdex.IDSelectorRange(10, 20))
    blob = simdex.serialize_index(index)
    assert blob.dtype == np.uint8
    back = simdex.deserialize_index(blob)
    assert type(back) is simdex.IndexFlatL2 and back.ntotal == 40
    np.testing.assert_array_equal(back.search(x[20:23], 1)[1][:, 0], [10, 11, 12])  # renumbered, as saved
    with pytest.raises(TypeError, match="uint8"):
        simdex.deserialize_index(blob.astype(np.int16))
    # A plain simdex.Index file keeps its own ids.
    plain = simdex.Index(8, metric="l2")
    plain.add(x[:5], [100, 200, 300, 400, 500])
    plain.save(tmp_path / "plain.sdx")
    wrapped = simdex.read_index(str(tmp_path / "plain.sdx"))
    assert type(wrapped) is simdex.IndexFlatL2
    assert wrapped.search(x[2:3], 1)[1][0, 0] == 300


def test_pca_reconstruct_maps_back_to_the_input_space(rng):
    x = (rng.standard_normal((500, 4)) @ rng.standard_normal((4, 12)) + 1.0).astype(np.float32)
    index = simdex.index_factory(12, "PCA4,Flat")
    index.train(x)
    index.add(x)
    np.testing.assert_allclose(index.reconstruct_n(0, 3), x[:3], atol=1e-3)  # rank 4: PCA4 loses nothing
