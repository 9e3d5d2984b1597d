"""Reciprocal rank fusion (simdex.text.fusion): a hand-computed case, a brute-force reference, ties, weights, input."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simdex.text.fusion import RRF, RRF_K, as_rrf_k, reciprocal_rank_fusion


def test_hand_computed_example():
    # ids:           dense ranks   bm25 ranks   score (rrf_k = 60)
    # 7              1             3            1/61 + 1/63 = 0.032266...
    # 3              2             -            1/62        = 0.016129...
    # 9              3             1            1/63 + 1/61 = 0.032266...  (ties with 7: lower id first)
    # 4              -             2            1/62        = 0.016129...  (ties with 3: 3 first)
    ids, scores = reciprocal_rank_fusion([[7, 3, 9], [9, 4, 7]], k=10)
    assert ids.tolist() == [7, 9, 3, 4]
    assert ids.dtype == np.int64 and scores.dtype == np.float64
    assert scores.tolist() == pytest.approx([1 / 61 + 1 / 63, 1 / 61 + 1 / 63, 1 / 62, 1 / 62], abs=1e-15)
    assert scores[0] == scores[1] and scores[2] == scores[3]  # exact ties, so the id decides
    top, s = reciprocal_rank_fusion([[7, 3, 9], [9, 4, 7]], k=2)
    assert top.tolist() == [7, 9] and len(s) == 2


def test_rrf_k_changes_the_order():
    # 5 is first in one list only; 6 is third in both. A small rrf_k favours the single first place.
    rankings = [[5, 7, 6], [8, 9, 6]]
    assert reciprocal_rank_fusion(rankings, 1, rrf_k=0)[0].tolist() == [5]      # 1 > 1/3 + 1/3
    assert reciprocal_rank_fusion(rankings, 1, rrf_k=60)[0].tolist() == [6]     # 1/61 < 2/63
    ids, scores = reciprocal_rank_fusion(rankings, 3, rrf_k=0)
    assert ids.tolist() == [5, 8, 6] and scores.tolist() == pytest.approx([1, 1, 2 / 3])


def test_ids_in_one_list_get_one_term_and_empty_lists_are_fine():
    ids, scores = reciprocal_rank_fusion([[1, 2], []], 5)
    assert ids.tolist() == [1, 2] and scores.tolist() == pytest.approx([1 / 61, 1 / 62])
    ids, scores = reciprocal_rank_fusion([[], []], 5)
    assert ids.size == 0 and scores.size == 0 and ids.dtype == np.int64
    assert reciprocal_rank_fusion([], 3)[0].size == 0
    assert reciprocal_rank_fusion([np.array([4, 2], np.uint32)], 3)[0].tolist() == [4, 2]


def test_weights():
    rankings = [[1, 2], [2, 1]]
    assert reciprocal_rank_fusion(rankings, 2)[0].tolist() == [1, 2]  # a tie: the lower id
    assert reciprocal_rank_fusion(rankings, 2, weights=[1, 2])[0].tolist() == [2, 1]
    ids, scores = reciprocal_rank_fusion(rankings, 2, rrf_k=0, weights=[0.5, 2.0])
    assert ids.tolist() == [2, 1] and scores.tolist() == pytest.approx([0.25 + 2, 0.5 + 1])
    # weight 0: the ranking adds nothing, but its ids still come back (after the others, score 0)
    ids, scores = reciprocal_rank_fusion([[5], [9, 5]], 3, weights=[1, 0])
    assert ids.tolist() == [5, 9] and scores.tolist() == [1 / 61, 0.0]


def test_equal_terms_in_any_order_give_equal_scores():
    # Each id holds ranks 1, 2 and 3, from different lists: the sums (taken in another order) tie exactly.
    ids, scores = reciprocal_rank_fusion([[10, 20, 30], [30, 10, 20], [20, 30, 10]], 3, rrf_k=0.1)
    assert ids.tolist() == [10, 20, 30] and scores[0] == scores[1] == scores[2]
    ids, scores = reciprocal_rank_fusion([[30, 20, 10], [20, 10, 30], [10, 30, 20]], 3, rrf_k=0.1)
    assert ids.tolist() == [10, 20, 30] and scores[0] == scores[1] == scores[2]


def reference(rankings, k, rrf_k, weights):
    """Exact rational RRF with a sort by (-score, id): no floating point at all."""
    weights = [1] * len(rankings) if weights is None else weights
    score = {}
    for ranking, w in zip(rankings, weights):
        for rank, doc in enumerate(ranking, start=1):
            score[doc] = score.get(doc, 0) + Fraction(w) / (Fraction(rrf_k) + rank)
    return sorted(score, key=lambda d: (-score[d], d))[:k], score


rankings_st = st.lists(st.lists(st.integers(0, 40), max_size=25, unique=True), max_size=4)


@settings(max_examples=300, deadline=None)
@given(rankings=rankings_st, k=st.integers(1, 30), rrf_k=st.sampled_from([0, 1, 2.5, 60, 1000]),
       use_weights=st.booleans(), data=st.data())
def test_against_an_exact_reference(rankings, k, rrf_k, use_weights, data):
    weights = None
    if use_weights and rankings:
        weights = data.draw(st.lists(st.sampled_from([0, 0.5, 1, 3]), min_size=len(rankings),
                                     max_size=len(rankings)).filter(any))
    ids, scores = reciprocal_rank_fusion(rankings, k, rrf_k, weights)
    want, exact = reference(rankings, k, rrf_k, weights)
    assert len(ids) == len(want) == min(k, len(exact))
    assert scores.tolist() == pytest.approx([float(exact[d]) for d in ids.tolist()], rel=1e-12)
    assert all(a > b or (a == b and i < j) for a, b, i, j in zip(scores, scores[1:], ids, ids[1:]))
    # The order is the exact one, except where two different sums of terms are equal as rationals but not after
    # rounding each term to a float (1/3 + 1/6 vs 1/2): such near-ties may swap.
    for got, ref in zip(ids.tolist(), want):
        assert got == ref or abs(exact[got] - exact[ref]) < Fraction(1, 10**12)


def test_strategy_object():
    fuse = RRF(rrf_k=10, weights=[1, 2])
    assert fuse.weights == (1.0, 2.0) and fuse.rrf_k == 10.0
    assert fuse.fuse([[1, 2], [2, 1]], 2)[0].tolist() == reciprocal_rank_fusion([[1, 2], [2, 1]], 2, 10,
                                                                                 [1, 2])[0].tolist()
    assert RRF().rrf_k == RRF_K == 60
    with pytest.raises(ValueError, match="rrf_k"):
        RRF(rrf_k=-1)
    with pytest.raises(TypeError, match="weights"):
        RRF(weights=3)
    with pytest.raises(ValueError, match="one weight per ranking"):
        RRF(weights=[1, 2]).fuse([[1]], 1)


@pytest.mark.parametrize("rankings,k,kwargs,error,match", [
    ("12", 1, {}, TypeError, "rankings"),
    (np.array([[1, 2]]), 1, {}, TypeError, "rankings"),
    ({1, 2}, 1, {}, TypeError, "rankings"),
    ([5], 1, {}, TypeError, r"rankings\[0\]"),
    (["12"], 1, {}, TypeError, r"rankings\[0\]"),
    ([[1.0, 2.0]], 1, {}, TypeError, "integer"),
    ([[1, "a"]], 1, {}, TypeError, "integer"),
    ([[[1, 2]]], 1, {}, ValueError, "1-D"),
    ([[1, 2, 1]], 1, {}, ValueError, "twice"),
    ([[3], [1, -1]], 1, {}, ValueError, r"rankings\[1\].*-1"),
    ([np.array([2**63], np.uint64)], 1, {}, TypeError, "int64"),
    ([[1]], 0, {}, ValueError, "k"),
    ([[1]], 1.5, {}, TypeError, "k"),
    ([[1]], True, {}, TypeError, "k"),
    ([[1]], 1, {"rrf_k": -0.5}, ValueError, "rrf_k"),
    ([[1]], 1, {"rrf_k": float("nan")}, ValueError, "rrf_k"),
    ([[1]], 1, {"rrf_k": float("inf")}, ValueError, "rrf_k"),
    ([[1]], 1, {"rrf_k": "60"}, TypeError, "rrf_k"),
    ([[1]], 1, {"rrf_k": True}, TypeError, "rrf_k"),
    ([[1]], 1, {"weights": [1, 1]}, ValueError, "one weight per ranking"),
    ([[1]], 1, {"weights": [-1]}, ValueError, r"weights\[0\]"),
    ([[1]], 1, {"weights": [float("nan")]}, ValueError, r"weights\[0\]"),
    ([[1]], 1, {"weights": ["1"]}, TypeError, r"weights\[0\]"),
    ([[1]], 1, {"weights": [0]}, ValueError, "at least one"),
    ([[1]], 1, {"weights": 1.0}, TypeError, "weights"),
])
def test_bad_input_is_refused(rankings, k, kwargs, error, match):
    with pytest.raises(error, match=match):
        reciprocal_rank_fusion(rankings, k, **kwargs)


def test_as_rrf_k_accepts_numpy_and_ints():
    assert as_rrf_k(np.float32(30)) == 30.0 and as_rrf_k(0) == 0.0 and isinstance(as_rrf_k(7), float)
