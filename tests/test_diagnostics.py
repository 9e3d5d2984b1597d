"""Query diagnostics: a specific query stands out, a query close to everything is flagged, ties are flagged."""

import numpy as np

import simdex
from simdex.diagnostics import CorpusStats, diagnose


def test_z_scores_match_a_full_scan(rng):
    x = rng.standard_normal((2000, 12))
    q = rng.standard_normal((5, 12))
    stats = CorpusStats(x)
    s = q @ x.T
    best = s.max(axis=1)
    want = (best - s.mean(axis=1)) / s.std(axis=1, ddof=1)
    np.testing.assert_allclose(stats.z_scores(q, best), want, rtol=1e-9)


def test_search_diagnostics_flags_collapsed_and_tied_queries(rng):
    # Clustered corpus with a strong common direction, like sentence embeddings.
    common = rng.standard_normal(32)
    x = (common + 0.6 * rng.standard_normal((3000, 32))).astype(np.float32)
    index = simdex.Index(32)
    index.add(x)
    specific = x[7] + 0.01 * rng.standard_normal(32)
    collapsed = common  # close to everything
    res = index.search(np.stack([specific, collapsed]), 10, diagnostics=True)
    assert isinstance(res, simdex.DiagnosedResult) and res.ids[0, 0] == 7
    d_specific, d_collapsed = res.diagnostics
    assert d_specific.specificity > d_collapsed.specificity
    assert "unspecific" not in d_specific.flags and "unspecific" in d_collapsed.flags
    # Unpacking the first two fields still works like a plain search.
    np.testing.assert_array_equal(res.ids, index.search(np.stack([specific, collapsed]), 10).ids)

    tied = simdex.Index(4)
    tied.add(np.tile([1.0, 0, 0, 0], (5, 1)) + 1e-4 * rng.standard_normal((5, 4)))
    tied.add(rng.standard_normal((50, 4)))
    assert "tied" in tied.search([1.0, 0, 0, 0], 5, diagnostics=True).diagnostics[0].flags


def test_diagnose_flags_short_queries():
    out = diagnose(np.array([[0.9, 0.5, 0.4]]), np.array([10.0]), ["hi there"])
    assert out[0].flags == ["short"] and out[0].gap > 0
