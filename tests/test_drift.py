"""Drift reports on synthetic embeddings: quiet on a held-out sample of the corpus, "shift" for a corpus of other
topics, "model change" for vectors of another model (another coordinate system, or a different fingerprint); the
profile saved with the index; and the search-side monitor (Prometheus export skip-tested)."""

import json

import numpy as np
import pytest

import simdex
from simdex._profile import PROFILE_KEY, PROFILE_MIN_VECTORS, build_profile
from simdex.quality.drift import drift_report, ks_2samp

from quality_standin import WordEncoder

D = 48


def topics(seed: int, count: int = 6) -> np.ndarray:
    """Topic centres sharing a common direction, as sentence embeddings do."""
    rng = np.random.default_rng(seed)
    common = np.zeros(D)
    common[0] = 1.0
    return 0.8 * common + 0.6 * rng.standard_normal((count, D)) / np.sqrt(D) * 3


def sample(centres: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(centres), n)
    # Each topic varies more along a few directions than others: an anisotropic spread.
    scale = np.r_[np.full(8, 0.35), np.full(D - 8, 0.08)]
    x = centres[which] + rng.standard_normal((n, D)) * scale
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    index = simdex.Index(D)
    index.add(sample(topics(1), 3000, 2))
    path = tmp_path_factory.mktemp("drift") / "ref.simdex"
    index.save(path)
    return path


def test_the_profile_is_recorded_on_save_and_travels_in_the_file(saved):
    back = simdex.load(saved)
    profile = back.metadata.get(PROFILE_KEY)
    assert profile is not None
    assert profile["n"] == 3000 and profile["dim"] == D and len(profile["top1"]) == 256
    assert 0 < profile["captured"] < 1 and len(profile["eigenvalues"]) == 32
    assert len(json.dumps(back.metadata)) < 40_000  # small beside the vectors


def test_small_indexes_get_no_profile_and_growth_refreshes_it(tmp_path, rng):
    index = simdex.Index(8)
    index.add(rng.standard_normal((PROFILE_MIN_VECTORS - 1, 8)))
    index.save(tmp_path / "a.simdex")
    assert index.metadata.get(PROFILE_KEY) is None
    index.add(rng.standard_normal((1, 8)))
    index.save(tmp_path / "a.simdex")
    first = index.metadata.get(PROFILE_KEY)
    assert first["n"] == PROFILE_MIN_VECTORS
    index.add(rng.standard_normal((500, 8)))
    index.save(tmp_path / "a.simdex")
    assert index.metadata.get(PROFILE_KEY) == first  # grown by half: the reference stays
    index.add(rng.standard_normal((600, 8)))
    index.save(tmp_path / "a.simdex")
    assert index.metadata.get(PROFILE_KEY)["n"] == 2100


def test_quiet_on_a_held_out_sample_of_the_same_corpus(saved):
    index = simdex.load(saved)
    for n, seed in ((1000, 10), (200, 11), (50, 12)):
        report = drift_report(index, sample(topics(1), n, seed))
        assert report.verdict == "no drift", report


def test_a_corpus_of_other_topics_is_a_shift(saved):
    report = drift_report(simdex.load(saved), sample(topics(99), 500, 13))
    assert report.verdict == "shift", report
    assert "corpus or query mix has shifted" in report.summary and report.findings
    assert "Vectors alone cannot rule out" in report.summary  # vectors given: a fine-tuned model looks the same
    assert report.figures["top-1 KS statistic"] > 0.3


def test_half_the_mix_moved_is_a_shift(saved):
    mixed = np.r_[sample(topics(1), 300, 14), sample(topics(99), 300, 15)]
    assert drift_report(simdex.load(saved), mixed).verdict == "shift"


def test_another_models_vectors_are_a_model_change(saved):
    rotation = np.linalg.qr(np.random.default_rng(5).standard_normal((D, D)))[0]
    report = drift_report(simdex.load(saved), sample(topics(1), 500, 16) @ rotation.astype(np.float32))
    assert report.verdict == "model change", report
    assert "different model" in report.summary and report.figures["captured / random directions"] < 1.5
    other_dim = drift_report(simdex.load(saved), np.ones((10, D + 2)))
    assert other_dim.verdict == "model change" and "dimensions" in other_dim.summary


def test_texts_embedded_by_the_same_or_another_model():
    enc = WordEncoder(dim=64)
    words = [f"w{j}" for j in range(300)]
    rng = np.random.default_rng(3)
    texts = [" ".join(rng.choice(words[:150], 12)) for _ in range(1500)]
    index = simdex.Index(enc.dim)
    index.add(enc.embed_batch(texts), fingerprint=enc.fingerprint)
    held = [" ".join(rng.choice(words[:150], 12)) for _ in range(300)]
    assert drift_report(index, held, encoder=enc).verdict == "no drift"
    other_topics = [" ".join(rng.choice(words[150:], 12)) for _ in range(300)]
    shifted = drift_report(index, other_topics, encoder=enc)
    assert shifted.verdict == "shift" and "Vectors alone" not in shifted.summary  # the model was checked
    renamed = WordEncoder(dim=64, salt=1)  # other word directions: another model
    renamed.embed_batch = lambda *a, **k: pytest.fail("the fingerprint decides before anything is embedded")
    report = drift_report(index, held, encoder=renamed)
    assert report.verdict == "model change" and "weights_sha256" in report.findings[0]  # its fingerprint differs


def test_bad_input_is_refused(saved):
    index = simdex.load(saved)
    with pytest.raises(ValueError, match="at least 3"):
        drift_report(index, np.ones((2, D)))
    with pytest.raises(ValueError, match="NaN"):
        drift_report(index, np.full((5, D), np.nan))
    with pytest.raises(ValueError, match="shape"):
        drift_report(index, np.ones(D))
    with pytest.raises(ValueError, match="no model"):
        drift_report(index, ["some text", "more", "text"])


def test_an_index_without_a_profile_is_profiled_on_the_spot(rng):
    index = simdex.Index(D)
    index.add(sample(topics(1), 500, 20))
    assert index.metadata.get(PROFILE_KEY) is None
    assert drift_report(index, sample(topics(1), 200, 21)).verdict == "no drift"
    assert build_profile(index)["n"] == 500


def test_ks_without_scipy_matches_scipy(monkeypatch):
    scipy_stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(0)
    a, b = rng.normal(0, 1, 300), rng.normal(0.3, 1, 200)
    ref = scipy_stats.ks_2samp(a, b)
    import builtins

    real_import = builtins.__import__

    def no_scipy(name, *args, **kwargs):
        if name.startswith("scipy"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_scipy)
    stat, p = ks_2samp(a, b)
    assert stat == pytest.approx(ref.statistic) and p == pytest.approx(ref.pvalue, rel=0.2, abs=1e-4)


def test_cli_drift(saved, tmp_path, capsys):
    from simdex.cli import main

    np.save(tmp_path / "new.npy", sample(topics(99), 300, 30))
    assert main(["drift", str(saved), str(tmp_path / "new.npy"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["verdict"] == "shift"
    (tmp_path / "q.txt").write_text("a query\nanother one\n")
    assert main(["drift", str(saved), str(tmp_path / "q.txt")]) == 2  # texts, and no model recorded
    assert "--model" in capsys.readouterr().err


# -- the search-side monitor --------------------------------------------------------------------------------------
def test_monitor_keeps_rolling_figures_and_calls_back(saved):
    index = simdex.load(saved)
    events = []
    mon = index.monitor(window=50, callback=events.append)
    q = sample(topics(1), 40, 40)
    for i in range(0, 40, 10):
        scores, ids = mon.search(q[i:i + 10], 5)
        assert scores.shape == (10, 5)
    s = mon.stats()
    assert s["searches"] == 40 and s["window"] == 40 and len(events) == 4
    assert 0 < s["latency ms p50"] <= s["latency ms p99"]
    assert s["top-1 mean"] == pytest.approx(np.mean([e["top1"] for e in events]))
    rotation = np.linalg.qr(np.random.default_rng(5).standard_normal((D, D)))[0].astype(np.float32)
    mon.search(sample(topics(1), 50, 41) @ rotation, 5)  # another model's queries fill the window
    after = mon.stats()
    assert after["window"] == 50 and after["top-1 mean"] < s["top-1 mean"]
    assert {"flagged rate", "unspecific rate", "tied rate"} <= set(after)
    mon.reset()
    assert mon.stats() == {"searches": 0, "window": 0}
    with pytest.raises(ValueError, match="window"):
        index.monitor(window=0)


def test_monitor_exports_to_prometheus(saved):
    pc = pytest.importorskip("prometheus_client")
    registry = pc.CollectorRegistry()
    mon = simdex.load(saved).monitor(prometheus=registry)
    mon.search(sample(topics(1), 12, 50), 5)
    assert registry.get_sample_value("simdex_search_queries_total") == 12
    assert registry.get_sample_value("simdex_search_latency_seconds_count") == 12
    assert registry.get_sample_value("simdex_search_top1_score_count") == 12
