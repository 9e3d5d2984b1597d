"""Score-threshold calibration against a hand-computed precision/recall curve, the held-out split, the three ways
in (EvalResult, Index + vectors, Index + texts), the plot, and `simdex eval --calibrate`."""

import json

import numpy as np
import pytest

import simdex
from simdex.quality.calibrate import ScoredHits, calibrate, choose, measure, pr_curve
from simdex.quality.evaluate import evaluate

from quality_standin import WordEncoder

# Two queries, two relevant documents each (one never retrieved). Sorted hits: 0.9 R, 0.8 N, 0.7 R, 0.6 R, 0.5 N.
HAND = ScoredHits([[0.9, 0.8, 0.7], [0.6, 0.5, -np.inf]], [[True, False, True], [True, False, False]], [2, 2])


def test_curve_matches_the_hand_computed_one():
    t, p, r = pr_curve(HAND)
    np.testing.assert_allclose(t, [0.9, 0.8, 0.7, 0.6, 0.5])
    np.testing.assert_allclose(p, [1, 1 / 2, 2 / 3, 3 / 4, 3 / 5])
    np.testing.assert_allclose(r, [1 / 4, 1 / 4, 2 / 4, 3 / 4, 3 / 4])


@pytest.mark.parametrize("target,value,expected", [
    ("precision", 0.7, 0.6),    # 0.9 (P 1) and 0.6 (P 0.75) qualify; 0.6 keeps more recall
    ("precision", 0.8, 0.9),
    ("precision", 0.6, 0.6),    # 0.5 reaches 0.6 too, with no more recall: the higher threshold, more precise
    ("recall", 0.5, 0.7),       # the highest threshold reaching recall 0.5
    ("recall", 0.25, 0.9),
])
def test_threshold_choice(target, value, expected):
    cal = calibrate(HAND, holdout=0, **{f"target_{target}": value})
    assert cal.min_score == pytest.approx(expected)
    assert cal.fit == cal.holdout == measure(HAND, expected)
    assert cal.fit[target] >= value


def test_measure_counts_hits_at_and_above_the_threshold():
    m = measure(HAND, 0.7)
    assert (m["precision"], m["recall"], m["kept"], m["hits kept"], m["queries"]) == (pytest.approx(2 / 3), 0.5, 0.6, 3, 2)
    assert m["precision se"] == pytest.approx((2 / 3 * 1 / 3 / 3) ** 0.5)


def test_ties_form_one_point():
    hits = ScoredHits([[0.5, 0.5, 0.4]], [[False, True, False]], [1])
    t, p, r = pr_curve(hits)
    np.testing.assert_allclose(t, [0.5, 0.4])
    np.testing.assert_allclose(p, [0.5, 1 / 3])


def test_unreachable_targets_and_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="raise k"):
        calibrate(HAND, target_recall=1.0, holdout=0)
    with pytest.raises(ValueError, match="exactly one"):
        calibrate(HAND, target_precision=0.5, target_recall=0.5)
    with pytest.raises(ValueError, match="exactly one"):
        calibrate(HAND)
    with pytest.raises(ValueError, match="target_precision"):
        calibrate(HAND, target_precision=1.5)
    with pytest.raises(ValueError, match="holdout"):
        calibrate(HAND, target_precision=0.5, holdout=1.0)
    with pytest.raises(ValueError, match="same queries"):
        ScoredHits([[0.1, 0.2]], [[True]], [1])
    with pytest.raises(TypeError, match="EvalResult"):
        calibrate("nope", target_precision=0.5)


def synthetic_hits(n: int, seed: int) -> ScoredHits:
    """Relevant hits score around 0.7, others around 0.4: a threshold near 0.55 separates them."""
    rng = np.random.default_rng(seed)
    rel = np.zeros((n, 10), bool)
    rel[np.arange(n), rng.integers(0, 10, n)] = rng.random(n) < 0.9
    scores = np.where(rel, rng.normal(0.7, 0.08, (n, 10)), rng.normal(0.4, 0.08, (n, 10)))
    return ScoredHits(-np.sort(-scores, axis=1), np.take_along_axis(rel, np.argsort(-scores, axis=1), 1),
                      np.ones(n, int))


def test_holdout_is_measured_on_queries_not_fitted():
    hits = synthetic_hits(2000, 1)
    cal = calibrate(hits, target_precision=0.9, holdout=0.4, seed=3)
    fit, held = hits.split(0.4, 3)
    assert (cal.fit["queries"], cal.holdout["queries"]) == (1200, 800)
    assert cal.min_score == choose(fit, "precision", 0.9)[0]
    assert cal.holdout == measure(held, cal.min_score)
    assert abs(cal.holdout["precision"] - 0.9) < 0.03  # the chosen threshold carries over to new queries
    assert "held out" in str(cal) and json.dumps(cal.as_dict())


CORPUS = [{"id": f"d{i}", "text": f"topic{i} word{i} extra{i % 7} common"} for i in range(60)]
QUERIES = [{"query": f"topic{i} word{i}", "doc_id": f"d{i}"} for i in range(0, 60, 2)]


def test_from_an_eval_result_and_the_plot(tmp_path):
    res = evaluate(CORPUS, QUERIES, models=[WordEncoder()], variants=["float32", "float32+rrf"], k=10)
    assert res.hits[1] is None  # fusion ranks by rank: nothing for a min_score to cut
    cal = calibrate(res, target_precision=0.5, holdout=0)
    assert cal.min_score == choose(res.hits[0], "precision", 0.5)[0] and "float32" in cal.label
    assert res.hits[0].relevant[:, 0].all()  # each query's own document first
    with pytest.raises(ValueError, match="row"):
        calibrate(res, target_precision=0.5, row=1)
    png = res.plot(tmp_path / "e.png", min_score=cal.min_score)
    assert open(png, "rb").read(4) == b"\x89PNG"


def test_from_an_index_and_labeled_vectors(rng):
    x = rng.standard_normal((200, 16)).astype(np.float32)
    index = simdex.Index(16)
    index.add(x)
    q = x[:50] + 0.3 * rng.standard_normal((50, 16)).astype(np.float32)
    relevant = [[i] for i in range(50)]
    cal = calibrate(index, (q, relevant), target_precision=0.8, holdout=0, k=5)
    scores, ids = index.search(q, 5)
    direct = ScoredHits.from_rankings([list(r) for r in ids], scores, relevant, 5)
    assert cal.min_score == choose(direct, "precision", 0.8)[0]


def test_from_an_index_with_texts():
    enc = WordEncoder()
    index = simdex.Index(enc.dim)
    simdex.ingest(CORPUS, index, encoder=enc)
    queries = [{"query": "topic4 word4", "doc_id": "d4"}, {"query": "topic8 word8", "doc_id": "d9"}]
    cal = calibrate(index, queries, encoder=enc, target_precision=0.5, holdout=0, k=3)
    top = index.search_text("topic4 word4", 1, encoder=enc)
    assert cal.fit["recall"] == 0.5 and cal.min_score == pytest.approx(float(top.scores[0]), abs=1e-6)
    with pytest.raises(ValueError, match="no texts"):
        bare = simdex.Index(enc.dim)
        bare.add(enc.embed_batch([d["text"] for d in CORPUS]), fingerprint=enc.fingerprint)
        calibrate(bare, queries, encoder=enc, target_precision=0.5)


def test_cli_eval_prints_a_calibration(tmp_path, capsys, monkeypatch):
    from simdex import cli
    from simdex.quality import evaluate as ev

    corpus, queries = tmp_path / "c.jsonl", tmp_path / "q.jsonl"
    corpus.write_text("\n".join(json.dumps(d) for d in CORPUS))
    queries.write_text("\n".join(json.dumps(q) for q in QUERIES))
    monkeypatch.setattr(ev, "_encoder", lambda model: WordEncoder())
    assert cli.main(["eval", "--corpus", str(corpus), "--queries", str(queries), "--variants", "float32",
                     "--calibrate", "precision=0.5", "--holdout", "0.3", "--plot", str(tmp_path / "p.png")]) == 0
    out = capsys.readouterr().out
    assert "calibration" in out and "min_score" in out and "held out" in out
    with pytest.raises(SystemExit) as exit_:
        cli.main(["eval", "--corpus", str(corpus), "--queries", str(queries), "--calibrate", "f1=2"])
    assert exit_.value.code == 2 and "precision=P" in capsys.readouterr().err
