"""The query cache of simdex.Encoder (``Encoder(cache_size=...)``): the LRU itself without a model, then through the
shipped MiniLM, where a repeated query must not run the model."""

import copy
import pickle
import threading

import numpy as np
import pytest
import simdex
from simdex.text._query_cache import DEFAULT_CACHE_SIZE, CacheInfo, QueryCache

TEXTS = [f"query number {i}: how do I {verb} a process" for i, verb in enumerate(
    ["fork", "kill", "trace", "renice", "pause", "resume", "wait for", "signal", "name", "profile"])]


def vec(i: int, dim: int = 8) -> np.ndarray:
    return np.full(dim, i, np.float32)


# -- QueryCache alone: no torch ---------------------------------------------------------------------------------
def test_lru_evicts_the_least_recently_used_at_capacity():
    cache = QueryCache(2)
    cache.put("a", vec(1))
    cache.put("b", vec(2))
    assert cache.get("a") is not None  # a is now the most recent: b goes first
    cache.put("c", vec(3))
    assert cache.get("b") is None
    assert cache.get("a")[0] == 1 and cache.get("c")[0] == 3
    cache.put("d", vec(4))  # c was read last, so a goes
    assert cache.get("a") is None and cache.get("c")[0] == 3 and cache.get("d")[0] == 4
    assert len(cache) == 2
    cache.put("c", vec(30))  # re-putting a key replaces it without growing
    assert len(cache) == 2 and cache.get("c")[0] == 30


def test_capacity_zero_never_stores_but_counts_misses():
    cache = QueryCache(0)
    for _ in range(3):
        cache.put("a", vec(1))
        assert cache.get("a") is None
    assert cache.info() == CacheInfo(hits=0, misses=3, size=0, capacity=0, hit_rate=0.0)


def test_info_counts_hits_and_misses_and_clear_zeroes_them():
    cache = QueryCache()
    assert cache.capacity == DEFAULT_CACHE_SIZE
    assert cache.info() == CacheInfo(0, 0, 0, DEFAULT_CACHE_SIZE, 0.0)  # no lookups yet: rate 0, not a division
    assert cache.get("a") is None
    cache.put("a", vec(1))
    assert cache.get("a") is not None and cache.get("a") is not None
    info = cache.info()
    assert (info.hits, info.misses, info.size) == (2, 1, 1)
    assert info.hit_rate == pytest.approx(2 / 3)
    cache.clear()
    assert cache.info() == CacheInfo(0, 0, 0, DEFAULT_CACHE_SIZE, 0.0)


def test_changing_a_returned_or_stored_vector_does_not_change_the_cache():
    cache = QueryCache(4)
    original = vec(1)
    cache.put("a", original)
    original[:] = -7  # the caller's array, after put
    first = cache.get("a")
    assert first.flags.writeable and first.dtype == np.float32
    first[:] = 99  # a returned copy, changed
    np.testing.assert_array_equal(cache.get("a"), vec(1))


def test_pickle_keeps_the_capacity_and_drops_entries_counts_and_lock():
    cache = QueryCache(7)
    cache.put("a", vec(1))
    cache.get("a")
    copied = pickle.loads(pickle.dumps(cache))
    assert copied.info() == CacheInfo(0, 0, 0, 7, 0.0)
    assert copied.get("a") is None
    copied.put("b", vec(2))  # its own, working lock and entries
    assert copied.get("b")[0] == 2 and cache.get("b") is None


def test_threads_see_consistent_vectors_and_every_lookup_is_counted():
    cache = QueryCache(4)  # fewer slots than keys: evictions race with lookups
    errors = []

    def work(seed: int) -> None:
        rng = np.random.default_rng(seed)
        for _ in range(2000):
            i = int(rng.integers(10))
            got = cache.get(i)
            if got is None:
                cache.put(i, vec(i))
            elif not np.array_equal(got, vec(i)):
                errors.append((i, got))

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    info = cache.info()
    assert not errors
    assert info.hits + info.misses == 4 * 2000 and info.size == 4


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError), ("8", TypeError), (None, TypeError),
                                        (True, TypeError)])
def test_bad_cache_size_is_refused_before_the_model_loads(bad, error):
    with pytest.raises(error, match="cache_size"):
        QueryCache(bad)
    with pytest.raises(error, match="cache_size"):  # checked first: fails fast, even without torch
        simdex.Encoder(cache_size=bad)
    assert QueryCache(np.int64(3)).capacity == 3


# -- through the shipped MiniLM ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def small(minilm):
    """simdex.Encoder(cache_size=2): a second load of the shipped model, checking that the argument arrives."""
    return simdex.Encoder(device="cpu", cache_size=2)


def counting(monkeypatch, encoder):
    """Counts the encoder's model runs: compute() is the one place embed_query runs the model."""
    calls = []
    compute = encoder.compute

    def counted(prepared):
        calls.append(prepared.n)
        return compute(prepared)

    monkeypatch.setattr(encoder, "compute", counted)
    encoder.cache_clear()
    return calls


def uncached(encoder):
    """The same model and weights, with cache_size 0 (a copy shares the model; only the cache is its own)."""
    other = copy.copy(encoder)
    other._cache = QueryCache(0)
    return other


@pytest.mark.encoder
def test_a_repeated_query_returns_the_same_vector_without_running_the_model(minilm, monkeypatch):
    calls = counting(monkeypatch, minilm)
    first = minilm.embed_query(TEXTS[0])
    second = minilm.embed_query(TEXTS[0])
    assert calls == [1]
    np.testing.assert_array_equal(first, second)
    assert second.shape == (384,) and second.dtype == np.float32 and second.flags.writeable
    np.testing.assert_array_equal(second, uncached(minilm).embed_query(TEXTS[0]))  # what the model gives
    assert minilm.cache_info() == (1, 1, 1, DEFAULT_CACHE_SIZE, 0.5)
    minilm.embed_batch(TEXTS[:3])  # documents do not go through the query cache
    assert minilm.cache_info().size == 1


@pytest.mark.encoder
def test_encoder_cache_evicts_in_lru_order(small, monkeypatch):
    assert small.cache_size == 2
    calls = counting(monkeypatch, small)
    a, b, c = TEXTS[:3]
    for text in (a, b, a, c):  # c evicts b, the least recently used
        small.embed_query(text)
    assert len(calls) == 3
    small.embed_query(a)
    assert len(calls) == 3  # a stayed
    small.embed_query(b)
    assert len(calls) == 4  # b was evicted
    info = small.cache_info()
    assert (info.hits, info.misses, info.size, info.capacity) == (2, 4, 2, 2)
    assert info.hit_rate == pytest.approx(2 / 6)


@pytest.mark.encoder
def test_cache_size_zero_runs_the_model_every_time(minilm, monkeypatch):
    off = uncached(minilm)
    calls = counting(monkeypatch, off)
    for _ in range(3):
        off.embed_query(TEXTS[1])
    assert calls == [1, 1, 1]
    assert off.cache_info() == (0, 3, 0, 0, 0.0)


@pytest.mark.encoder
def test_changing_a_returned_vector_does_not_change_later_results(minilm):
    minilm.cache_clear()
    first = minilm.embed_query(TEXTS[2])  # the miss
    expected = first.copy()
    first[:] = 0
    second = minilm.embed_query(TEXTS[2])  # a hit
    np.testing.assert_array_equal(second, expected)
    second *= -1
    np.testing.assert_array_equal(minilm.embed_query(TEXTS[2]), expected)


@pytest.mark.encoder
def test_entries_are_keyed_by_the_model_identity(minilm, monkeypatch):
    minilm.cache_clear()
    minilm.embed_query(TEXTS[3])
    other = copy.copy(minilm)  # shares the cache object: only the model identity tells entries apart
    assert other._cache is minilm._cache
    monkeypatch.setattr(other, "_cache_identity", other._cache_identity[:1] + ("0" * 64,) + other._cache_identity[2:])
    calls = counting(monkeypatch, other)
    other.embed_query(TEXTS[3])
    assert calls == [1]


@pytest.mark.encoder
@pytest.mark.parametrize("module", ["pickle", "cloudpickle"])
def test_pickled_encoder_keeps_its_cache_size_and_starts_empty(small, module):
    dumps = pytest.importorskip(module).dumps
    small.cache_clear()
    q = small.embed_query(TEXTS[4])
    copied = pickle.loads(dumps(small))
    assert copied.cache_info() == (0, 0, 0, 2, 0.0)
    np.testing.assert_array_equal(copied.embed_query(TEXTS[4]), q)
    assert copied.cache_info().misses == 1
    assert small.cache_info() == (0, 1, 1, 2, 0.0)  # the original's cache is its own


@pytest.mark.encoder
def test_threads_get_consistent_vectors_and_every_call_is_counted(minilm):
    minilm.cache_clear()
    expected = {t: v for t, v in zip(TEXTS, uncached(minilm).embed_batch(TEXTS))}
    results, errors = [], []

    def work(seed: int) -> None:
        try:
            for j in range(200):
                text = TEXTS[(seed * 7 + j) % len(TEXTS)]
                results.append((text, minilm.embed_query(text)))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 800
    for text, v in results:
        np.testing.assert_allclose(v, expected[text], atol=1e-5)  # batch vs one: same up to float rounding
    first = {}
    for text, v in results:
        np.testing.assert_array_equal(v, first.setdefault(text, v))  # every call for a text: the identical vector
    info = minilm.cache_info()
    assert info.hits + info.misses == 800 and info.size == len(TEXTS)
    assert len(TEXTS) <= info.misses <= 4 * len(TEXTS)  # a text may miss in several threads at once, no more
