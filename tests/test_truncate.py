"""simdex.Truncate (Matryoshka truncation) against NumPy float64 references, in an Index, a file, reduction_report
and evaluate."""

import json

import numpy as np
import pytest
import simdex
from simdex.quality.evaluate import Variant, evaluate


def reference(x, out_dim):
    """float64: the first out_dim columns, rows rescaled to unit length (zero rows stay zero)."""
    y = np.asarray(x, dtype=np.float64)[:, :out_dim]
    norms = np.linalg.norm(y, axis=1, keepdims=True)
    return y / np.where(norms > 0, norms, 1.0)


def brute_force(x, q, out_dim, k):
    """Top-k ids and scores of the cosine over truncated, renormalized float64 vectors (ties to the lower id)."""
    s = reference(q, out_dim) @ reference(x, out_dim).T
    ids = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(s, ids, axis=1)


# -- the transform alone -------------------------------------------------------------------------------------
def test_truncate_matches_float64_reference(rng):
    x = rng.standard_normal((50, 24)).astype(np.float32) * 3
    x[7] = 0.0  # all zero: stays zero
    x[9, :6] = 0.0  # zero prefix, nonzero tail: zero after truncation
    x[11] = 1e30  # float32 squares would overflow: the norm is taken in float64
    x[12] = 1e-30  # and would underflow
    t = simdex.Truncate(6)
    assert not t.is_fitted and t.in_dim is None
    assert t.fit(x) is t and t.is_fitted and t.in_dim == 24 and t.out_dim == 6
    got = t.transform(x)
    assert got.shape == (50, 6) and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, reference(x, 6), rtol=1e-6, atol=1e-7)
    assert not got[7].any() and not got[9].any()
    np.testing.assert_allclose(np.linalg.norm(got[[11, 12]].astype(np.float64), axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(t.transform_query(x), got)  # the same map on both sides
    np.testing.assert_array_equal(t.transform(x[3]), got[3:4])  # a single (in_dim,) row
    np.testing.assert_array_equal(simdex.Truncate(24).fit_transform(x)[:5], reference(x[:5], 24).astype(np.float32))
    assert repr(t) == "simdex.Truncate(6)"


def test_truncate_bad_out_dim_and_input(rng):
    with pytest.raises(ValueError, match="out_dim: expected a positive integer, got 0"):
        simdex.Truncate(0)
    with pytest.raises(ValueError, match="got -3"):
        simdex.Truncate(-3)
    with pytest.raises(TypeError, match="got a bool"):
        simdex.Truncate(True)
    with pytest.raises(TypeError, match="got float"):
        simdex.Truncate(2.5)
    with pytest.raises(ValueError, match="out_dim: expected at most the input dimension 8, got 9"):
        simdex.Truncate(9).fit(rng.standard_normal((20, 8)))
    t = simdex.Truncate(2)
    with pytest.raises(ValueError, match="not fitted yet"):
        t.transform(np.ones((1, 4)))
    t.fit(np.ones((3, 5)))
    with pytest.raises(ValueError, match=r"expected 5 columns .* got shape \(3, 4\)"):
        t.transform(np.ones((3, 4)))
    bad = np.ones((4, 5), np.float32)
    bad[2, 4] = np.nan  # in the dropped tail: refused all the same, as every transform does
    with pytest.raises(ValueError, match="x: expected finite values, got NaN or Inf in rows 2..2"):
        t.transform(bad)
    with pytest.raises(ValueError, match="queries: expected finite values"):
        t.transform_query(bad)
    with pytest.raises(ValueError, match="transform: out_dim 9 is larger than the index dim 8"):
        simdex.Index(8, transform=simdex.Truncate(9))
    with pytest.raises(ValueError, match="fitted on 5-dimensional vectors, the index dim is 8"):
        simdex.Index(8, transform=t)


# -- as an index pre-transform -------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "ip"])
def test_index_search_equals_brute_force_over_truncated_vectors(metric, rng):
    # Matryoshka-like: most of the energy in the leading dims, so truncation keeps the neighbours meaningful.
    scales = np.linspace(2.0, 0.2, 768)
    x = (rng.standard_normal((2000, 768)) * scales).astype(np.float32)
    q = (x[:40] + 0.5 * rng.standard_normal((40, 768)) * scales).astype(np.float32)
    t = simdex.Truncate(256)
    index = simdex.Index(768, metric, transform=t)
    index.add(x)
    assert t.is_fitted and t.in_dim == 768 and index.dim == 768 and len(index) == 2000
    got = index.search(q, 10)
    ids, scores = brute_force(x, q, 256, 10)
    np.testing.assert_allclose(got.scores, scores, atol=2e-6)
    # Ids equal where the reference's scores are not near-tied (float32 vs float64 rounding).
    gaps = np.abs(np.diff(brute_force(x, q, 256, 11)[1], axis=1))
    clear = (gaps[:, :10] > 1e-5) & np.c_[np.ones((40, 1), bool), gaps[:, :9] > 1e-5]
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(got.ids[clear], ids[clear])


def test_index_filter_min_score_and_zero_rows(rng):
    x = rng.standard_normal((300, 32)).astype(np.float32)
    x[5, :8] = 0.0  # truncates to zero: scores 0 with every query
    index = simdex.Index(32, transform=simdex.Truncate(8))
    index.add(x)
    allow = np.arange(0, 300, 3)
    got = index.search(x[:4], 5, filter=allow, min_score=0.3)
    s = reference(x[:4], 8) @ reference(x, 8).T
    for row in range(4):
        keep = [i for i in np.argsort(-s[row], kind="stable") if i % 3 == 0 and s[row, i] >= 0.3][:5]
        found = got.ids[row][got.ids[row] >= 0]
        np.testing.assert_array_equal(found, keep)
    whole = index.search(x[:1], 300)
    assert whole.scores[0][whole.ids[0] == 5] == pytest.approx(0.0, abs=1e-7)


def test_int8_with_truncate(rng):
    x = rng.standard_normal((1500, 96)).astype(np.float32)
    q = x[:30] + 0.3 * rng.standard_normal((30, 96)).astype(np.float32)
    index = simdex.Index(96, dtype="int8", transform=simdex.Truncate(32))
    index.add(x)
    got = index.search(q, 10)
    ids, scores = brute_force(x, q, 32, 10)
    recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(got.ids, ids)])
    assert recall > 0.9
    np.testing.assert_allclose(got.scores[:, 0], scores[:, 0], atol=0.02)
    kept = simdex.Index(96, dtype="int8", keep_originals=True, transform=simdex.Truncate(32))
    kept.add(x)
    exact = kept.search(q, 10, rescore=4)
    np.testing.assert_allclose(exact.scores[:, 0], scores[:, 0], atol=2e-6)


@pytest.mark.filterwarnings("ignore:this first add calibrates")  # int8 calibrated on 400 vectors: fine here
def test_save_load_round_trip(tmp_path, rng):
    x = rng.standard_normal((400, 48)).astype(np.float32)
    for metric, dtype in (("cosine", "float32"), ("ip", "float32"), ("cosine", "int8")):
        index = simdex.Index(48, metric, dtype=dtype, transform=simdex.Truncate(12))
        index.add(x)
        names = [s[0] for s in index._core.extra_sections()]
        assert names == ["transform"]  # no matrix: the parameters say it all
        state = json.loads(index._core.extra_sections()[0][5])
        assert state["kind"] == "Truncate" and state["params"] == {"out_dim": 12} and state["fitted"]
        before = index.search(x[:7], 5)
        path = tmp_path / f"truncated-{metric}-{dtype}.simdex"
        index.save(path)
        for loaded in (simdex.load(path), simdex.load(path, mmap=True), simdex.load_bytes(path.read_bytes())):
            t = loaded.transform
            assert type(t) is simdex.Truncate and repr(t) == "simdex.Truncate(12)" and t.is_fitted
            assert t.in_dim == 48 and loaded.dim == 48 and loaded.metric == metric and loaded.dtype == dtype
            after = loaded.search(x[:7], 5)
            np.testing.assert_array_equal(after.ids, before.ids)
            np.testing.assert_array_equal(after.scores, before.scores)
    empty = tmp_path / "empty.simdex"
    simdex.Index(48, transform=simdex.Truncate(12)).save(empty)
    loaded = simdex.load(empty)
    assert not loaded.transform.is_fitted and loaded.dim == 48
    loaded.add(x)
    assert loaded.transform.is_fitted and len(loaded) == 400


def crafted(index, edit_state=None, extra=()):
    """The index's bytes with its transform JSON edited and extra sections added."""
    sections = []
    for s in index._core.extra_sections():
        if s[0] == "transform" and edit_state is not None:
            state = json.loads(s[5])
            edit_state(state)
            text = json.dumps(state).encode()
            s = (s[0], s[1], len(text), 1, True, text)
        sections.append(s)
    index._core.set_extra_sections(sections + list(extra))
    try:
        return index._core.to_bytes()
    finally:
        index._store_transform()


def test_crafted_truncate_files_are_refused(rng):
    index = simdex.Index(24, transform=simdex.Truncate(6))
    index.add(rng.standard_normal((50, 24)).astype(np.float32))

    def out_dim(n):
        def edit(state):
            state["out_dim"] = state["params"]["out_dim"] = n
        return edit

    with pytest.raises(simdex.FormatError, match="maps 24 to 8 dimensions but the stored vectors have 6"):
        simdex.load_bytes(crafted(index, out_dim(8)))

    def params_only(state):
        state["params"]["out_dim"] = 5

    with pytest.raises(simdex.FormatError, match="parameters say out_dim 5, the section says 6"):
        simdex.load_bytes(crafted(index, params_only))

    def bad_param(state):
        state["params"] = {"out_dim": 6, "whiten": True}

    with pytest.raises(simdex.FormatError, match="bad parameters"):
        simdex.load_bytes(crafted(index, bad_param))

    def in_dim(state):
        state["in_dim"] = 4

    with pytest.raises(simdex.FormatError, match="maps 4 to 6 dimensions"):
        simdex.load_bytes(crafted(index, in_dim))
    mat = np.eye(6, 24, dtype=np.float32)
    with pytest.raises(simdex.FormatError, match="Truncate transform has no matrix.*transform.mat"):
        simdex.load_bytes(crafted(index, extra=[("transform.mat", "float32", 6, 24, True, mat.tobytes())]))

    def kind(state):
        state["kind"] = "Slice"

    with pytest.raises(simdex.FormatError, match="unknown transform kind 'Slice'"):
        simdex.load_bytes(crafted(index, kind))
    assert simdex.load_bytes(index._core.to_bytes()).transform.in_dim == 24  # the untouched file loads


# -- reduction_report and evaluate ---------------------------------------------------------------------------
def test_reduction_report_accepts_truncate(rng):
    scales = np.r_[np.ones(8), np.full(24, 1e-3)]  # all but nothing in the first 8 dims
    x = (rng.standard_normal((400, 32)) * scales).astype(np.float32)
    q = (rng.standard_normal((15, 32)) * scales).astype(np.float32)
    report = simdex.reduction_report(x, q, dims=[16, 8], kinds=["truncate", "pca"], repeats=1)
    assert [(r["kind"], r["dim"]) for r in report.rows] == [
        ("full", 32), ("truncate", 16), ("truncate", 8), ("pca", 16), ("pca", 8)]
    assert report.rows[2]["recall@k"] > 0.9
    assert report.rows[2]["transform KB"] < 1  # just the parameters


def test_evaluate_accepts_truncate_variants(rng):
    assert Variant.parse("truncate256") == Variant("truncate256", "float32", "truncate", 256)
    assert Variant.parse("truncate64+int8+rescore") == Variant("truncate64+int8+rescore", "int8", "truncate", 64, 4)
    assert type(Variant.parse("truncate8").build(16).transform) is simdex.Truncate
    with pytest.raises(ValueError, match="truncate256"):
        Variant.parse("truncate")

    class LookupEncoder:
        fingerprint = {"model": "lookup"}

        def __init__(self, table):
            self.table = table

        def embed_batch(self, texts):
            return np.stack([self.table[t] for t in texts])

        def embed_query(self, text):
            return self.table[text]

    docs = [f"doc {i}" for i in range(200)]
    vecs = rng.standard_normal((200, 16)).astype(np.float32)
    table = dict(zip(docs, vecs))
    queries = []
    for j in range(40):
        target = int(rng.integers(200))
        table[f"q{j}"] = vecs[target] + 0.8 * rng.standard_normal(16).astype(np.float32)
        queries.append({"query": f"q{j}", "doc_id": str(target)})
    corpus = [{"id": str(i), "text": t} for i, t in enumerate(docs)]
    res = evaluate(corpus, queries, models=[LookupEncoder(table)], variants=["truncate8"], k=10)
    row = res.rows[0]
    d = reference(vecs, 8)
    hits = []
    for qu in queries:
        order = np.argsort(-(d @ reference(table[qu["query"]][None], 8)[0]), kind="stable")[:10]
        hits.append(int(qu["doc_id"]) in order)
    assert row["variant"] == "truncate8" and row["dim"] == 8
    assert row["recall@10"] == pytest.approx(np.mean(hits), abs=1e-9)
