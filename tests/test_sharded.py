"""ShardedIndex with the threads backend: exact equality with one index, routing, persistence, open errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import simdex
from simdex.shard import MANIFEST_NAME, merge_topk, shard_of

DIM = 24


def _split(x, ids, num_shards, metric="cosine", route=None):
    """Shards over the given vectors: by routing (default) or by an explicit shard number per row."""
    route = shard_of(ids, num_shards) if route is None else route
    shards = []
    for s in range(num_shards):
        index = simdex.Index(x.shape[1], metric)
        if (route == s).any():
            index.add(x[route == s], ids[route == s])
        shards.append(index)
    return shards


def _single(x, ids, metric="cosine"):
    index = simdex.Index(x.shape[1], metric)
    index.add(x, ids)
    return index


@pytest.fixture
def data(rng):
    x = rng.standard_normal((3000, DIM)).astype(np.float32)
    ids = rng.permutation(10_000)[:3000].astype(np.int64)
    return x, ids


def _assert_same(a, b):
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)


@pytest.mark.parametrize("metric", ["cosine", "ip", "l2"])
@pytest.mark.parametrize("nq", [1, 5, 100])
@pytest.mark.parametrize("k", [1, 10, 50])
def test_equals_single_index(data, rng, metric, nq, k):
    x, ids = data
    one = _single(x, ids, metric)
    with simdex.ShardedIndex(_split(x, ids, 4, metric)) as sharded:
        q = rng.standard_normal((nq, DIM)).astype(np.float32)
        _assert_same(sharded.search(q, k), one.search(q, k))


def test_ties_go_to_the_lower_id_across_shards(rng):
    # 40 copies of 5 distinct vectors: every result list is full of exact ties spread over all shards.
    base = rng.standard_normal((5, DIM)).astype(np.float32)
    x = np.repeat(base, 40, axis=0)
    ids = rng.permutation(1000)[:200].astype(np.int64)
    one = _single(x, ids)
    # Round-robin by position, so tied ids land in shards out of id order.
    route = np.arange(200) % 3
    with simdex.ShardedIndex(_split(x, ids, 3, route=route)) as sharded:
        q = base + 0.01 * rng.standard_normal(base.shape).astype(np.float32)
        got, want = sharded.search(q, 60), one.search(q, 60)
        _assert_same(got, want)
        # The tie rule itself: within equal scores, ids ascend.
        for s_row, i_row in zip(got.scores, got.ids):
            for a in range(59):
                if s_row[a] == s_row[a + 1]:
                    assert i_row[a] < i_row[a + 1]


def test_padding_filter_and_min_score(data, rng):
    x, ids = data
    one = _single(x, ids)
    with simdex.ShardedIndex(_split(x, ids, 4)) as sharded:
        q = rng.standard_normal((8, DIM)).astype(np.float32)
        allow = rng.choice(ids, 7, replace=False).tolist() + [10**9]  # one id that is nowhere
        got = sharded.search(q, 10, filter=allow)
        _assert_same(got, one.search(q, 10, filter=allow))
        assert (got.ids[:, 7:] == -1).all() and np.isneginf(got.scores[:, 7:]).all()
        assert set(got.ids[:, :7].ravel()) <= set(allow)
        _assert_same(sharded.search(q, 20, min_score=0.3), one.search(q, 20, min_score=0.3))
        # k above the total size pads every row.
        small = simdex.ShardedIndex(_split(x[:6], ids[:6], 4))
        res = small.search(q, 9)
        assert (res.ids[:, 6:] == -1).all() and sorted(res.ids[0, :6]) == sorted(ids[:6])


def test_l2_shards_merge_nearest_first(data, rng):
    """l2 shards: squared distances merged nearest first, ties to the lower id, padded with (+inf, -1); the cut
    is max_distance (min_score is refused up front, as by Index.search); checked against NumPy float64 too."""
    x, ids = data
    one = _single(x, ids, "l2")
    with simdex.ShardedIndex(_split(x, ids, 4, "l2")) as sharded:
        q = rng.standard_normal((6, DIM)).astype(np.float32)
        got = sharded.search(q, 10)
        _assert_same(got, one.search(q, 10))
        d = ((q.astype(np.float64)[:, None, :] - x.astype(np.float64)[None]) ** 2).sum(-1)
        np.testing.assert_allclose(got.scores, np.sort(d, axis=1)[:, :10], rtol=1e-4)
        cut = float(np.median(got.scores[:, 4]))
        near = sharded.search(q, 10, max_distance=cut)
        _assert_same(near, one.search(q, 10, max_distance=cut))
        assert ((near.scores <= cut) | (near.ids == -1)).all() and (near.ids == -1).any()
        assert np.isposinf(near.scores[near.ids == -1]).all()
        allow = rng.choice(ids, 5, replace=False)
        _assert_same(sharded.search(q, 8, filter=allow), one.search(q, 8, filter=allow))
        with pytest.raises(ValueError, match="min_score does not apply"):
            sharded.search(q, 5, min_score=0.5)
    with simdex.ShardedIndex(_split(x, ids, 3)) as cosine, pytest.raises(ValueError, match="max_distance applies"):
        cosine.search(q, 5, max_distance=1.0)


def test_merge_topk_orders_by_score_then_id():
    a = (np.array([[0.9, 0.5, -np.inf]], np.float32), np.array([[7, 3, -1]]))
    b = (np.array([[0.9, 0.5, 0.1]], np.float32), np.array([[2, 8, 1]]))
    got = merge_topk([a, b], 5)
    assert got.ids.tolist() == [[2, 7, 3, 8, 1]]
    assert got.scores.tolist()[0][:2] == [pytest.approx(0.9)] * 2
    near = (np.array([[0.1, 0.5, np.inf]], np.float32), np.array([[7, 3, -1]]))
    far = (np.array([[0.1, 0.4, 0.9]], np.float32), np.array([[2, 8, 1]]))
    assert merge_topk([near, far], 5, smallest_first=True).ids.tolist() == [[2, 7, 8, 3, 1]]


def _splitmix64(z):
    m = (1 << 64) - 1
    z = (z + 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    return z ^ (z >> 31)


def test_routing_is_stable_and_balanced():
    # The rule is part of the on-disk contract (distributed_ingest writes shards with it): pin it to a plain
    # Python splitmix64, whose first output from seed 0 is the published 0xE220A8397B1DCDAF.
    assert _splitmix64(0) == 0xE220A8397B1DCDAF
    some = [0, 1, 2, 3, 4, 5, 977, 2**62, 2**63 - 1]
    for n in (1, 3, 4, 7):
        assert shard_of(some, n).tolist() == [_splitmix64(i) % n for i in some]
    counts = np.bincount(shard_of(np.arange(100_000), 8), minlength=8)
    assert counts.min() > 0.95 * 100_000 / 8
    strided = np.bincount(shard_of(np.arange(0, 800_000, 8), 8), minlength=8)
    assert strided.min() > 0.95 * 100_000 / 8
    with pytest.raises(ValueError, match="num_shards"):
        shard_of([1], 0)


def test_add_routes_by_id_hash_and_matches_single(data, rng):
    x, ids = data
    shards = [simdex.Index(DIM) for _ in range(4)]
    sharded = simdex.ShardedIndex(shards)
    got_ids = sharded.add(x, ids)
    np.testing.assert_array_equal(got_ids, ids)
    route = shard_of(ids, 4)
    for s, index in enumerate(shards):
        assert sorted(index.ids().tolist()) == sorted(ids[route == s].tolist())
    # Default ids continue after the largest id ever held, like Index.add.
    more = sharded.add(rng.standard_normal((3, DIM)))
    assert more.tolist() == [int(ids.max()) + 1 + i for i in range(3)]
    assert len(sharded) == 3003 and int(more[0]) in sharded
    q = rng.standard_normal((10, DIM)).astype(np.float32)
    one = _single(x, ids)
    one.add(np.vstack([shards[shard_of([i], 4)[0]].reconstruct([i]) for i in more]), more)
    _assert_same(sharded.search(q, 15), one.search(q, 15))


def test_add_rejects_bad_ids_before_touching_any_shard(data):
    x, ids = data
    shards = _split(x, ids, 3)
    sharded = simdex.ShardedIndex(shards)
    before = [len(s) for s in shards]
    fresh = np.array([10_001, 10_002], np.int64)
    with pytest.raises(ValueError, match="already stored"):
        sharded.add(x[:3], np.concatenate([fresh, ids[:1]]))
    with pytest.raises(ValueError, match="more than once"):
        sharded.add(x[:2], [10_005, 10_005])
    with pytest.raises(ValueError, match="non-negative"):
        sharded.add(x[:1], [-4])
    with pytest.raises(ValueError, match="columns"):
        sharded.add(np.zeros((2, DIM + 1)))
    assert [len(s) for s in shards] == before


def test_remove_and_contains(data, rng):
    x, ids = data
    sharded = simdex.ShardedIndex(_split(x, ids, 4))
    gone = ids[:50]
    assert sharded.remove(np.concatenate([gone, [10**9]])) == 50
    assert not sharded.contains(gone).any() and sharded.contains(ids[50:]).all()
    q = rng.standard_normal((6, DIM)).astype(np.float32)
    _assert_same(sharded.search(q, 10), _single(x[50:], ids[50:]).search(q, 10))


def test_save_and_open_round_trip(data, rng, tmp_path):
    x, ids = data
    sharded = simdex.ShardedIndex(_split(x, ids, 4))
    manifest_path = sharded.save(tmp_path / "idx")
    manifest = json.loads(Path(manifest_path).read_text())
    assert manifest["format"] == "simdex-sharded" and manifest["routing"] == "splitmix64"
    assert sum(s["count"] for s in manifest["shards"]) == 3000 and manifest["dim"] == DIM
    q = rng.standard_normal((9, DIM)).astype(np.float32)
    want = _single(x, ids).search(q, 12)
    for mmap in (False, True):
        with simdex.ShardedIndex.open(tmp_path / "idx", mmap=mmap) as reopened:
            _assert_same(reopened.search(q, 12), want)
    # Opened from its files, save() writes back over them.
    opened = simdex.ShardedIndex(str(tmp_path / "idx"))
    opened.add(rng.standard_normal((4, DIM)))
    assert opened.save() is None
    files = [str(tmp_path / "idx" / s["file"]) for s in manifest["shards"]]
    assert sum(len(simdex.load(f)) for f in files) == 3004
    # A list of paths works too.
    assert len(simdex.ShardedIndex(files)) == 3004


def test_save_without_folder_needs_files(data):
    x, ids = data
    with pytest.raises(ValueError, match="in-memory"):
        simdex.ShardedIndex(_split(x, ids, 2)).save()


def test_fingerprint_is_shared(data, tmp_path):
    x, ids = data
    shards = _split(x, ids, 2)
    for s in shards:
        s.metadata = {"fingerprint": {"model": "m", "dim": DIM}}
    sharded = simdex.ShardedIndex(shards)
    assert sharded.fingerprint == {"model": "m", "dim": DIM}
    path = sharded.save(tmp_path / "fp")
    assert json.loads(Path(path).read_text())["fingerprint"] == {"model": "m", "dim": DIM}
    shards[1].metadata = {"fingerprint": {"model": "other", "dim": DIM}}
    with pytest.raises(ValueError, match="disagree on fingerprint.*shard 1"):
        simdex.ShardedIndex(shards)


def test_mismatched_shards_are_rejected(data):
    x, ids = data
    with pytest.raises(ValueError, match="disagree on dim"):
        simdex.ShardedIndex([simdex.Index(DIM), simdex.Index(DIM + 1)])
    with pytest.raises(ValueError, match="disagree on metric"):
        simdex.ShardedIndex([simdex.Index(DIM), simdex.Index(DIM, "ip")])
    a, b = _single(x[:10], ids[:10]), _single(x[5:15], ids[5:15])
    with pytest.raises(ValueError, match=r"share ids \(5 in all\).*shards \[0, 1\]"):
        simdex.ShardedIndex([a, b])
    with pytest.raises(ValueError, match="at least one shard"):
        simdex.ShardedIndex([])
    with pytest.raises(ValueError, match="backend"):
        simdex.ShardedIndex([a], backend="dask")
    with pytest.raises(TypeError, match="wrap it in a list"):
        simdex.ShardedIndex(a)
    with pytest.raises(TypeError, match=r"shards\[1\]"):
        simdex.ShardedIndex([a, 3])


@pytest.fixture
def saved(data, tmp_path):
    x, ids = data
    simdex.ShardedIndex(_split(x, ids, 3)).save(tmp_path / "s")
    return tmp_path / "s"


def test_missing_shard_reported_at_open(saved):
    os.unlink(saved / "shard-00001.simdex")
    with pytest.raises(FileNotFoundError, match="shard 1 .*shard-00001.simdex"):
        simdex.ShardedIndex.open(saved)


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_shard_reported_at_open(saved, damage):
    path = saved / "shard-00002.simdex"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(simdex.FormatError, match="shard 2 .*shard-00002.simdex"):
        simdex.ShardedIndex.open(saved)


def test_manifest_problems_reported_at_open(saved, tmp_path, rng):
    with pytest.raises(FileNotFoundError, match="no shard manifest"):
        simdex.ShardedIndex.open(tmp_path)
    # A shard file replaced by one from another save.
    other = simdex.Index(DIM)
    other.add(rng.standard_normal((2, DIM)), [10**6, 10**6 + 1])
    other.save(saved / "shard-00000.simdex")
    with pytest.raises(simdex.FormatError, match="shard 0 .*holds 2 vectors, the manifest says"):
        simdex.ShardedIndex.open(saved)
    (saved / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(simdex.FormatError, match="not a valid JSON manifest"):
        simdex.ShardedIndex.open(saved)
    (saved / MANIFEST_NAME).write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(simdex.FormatError, match="simdex-sharded"):
        simdex.ShardedIndex.open(saved)


@pytest.mark.parametrize("max_workers", [1, 4])
def test_concurrent_searches_agree(data, rng, max_workers):
    from concurrent.futures import ThreadPoolExecutor

    x, ids = data
    one = _single(x, ids)
    sharded = simdex.ShardedIndex(_split(x, ids, 4), max_workers=max_workers)
    qs = [rng.standard_normal((7, DIM)).astype(np.float32) for _ in range(8)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda q: sharded.search(q, 5), qs))
    for q, got in zip(qs, results):
        _assert_same(got, one.search(q, 5))


def test_closed_index_refuses_calls(data):
    x, ids = data
    sharded = simdex.ShardedIndex(_split(x, ids, 2))
    sharded.close()
    with pytest.raises(ValueError, match="closed"):
        sharded.search(x[:1], 3)


def test_import_simdex_does_not_import_ray():
    code = ("import sys, simdex; simdex.ShardedIndex; simdex.ShardError; "
            "assert 'ray' not in sys.modules, 'ray was imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_ray_backend_without_ray_says_how_to_install():
    # sys.modules["ray"] = None makes `import ray` fail, as on a machine without it.
    code = ("import sys; sys.modules['ray'] = None\n"
            "import simdex\n"
            "for call in (lambda: simdex.ShardedIndex([simdex.Index(4)], backend='ray'),\n"
            "             lambda: simdex.distributed_ingest(['x.jsonl'], 'out')):\n"
            "    try:\n"
            "        call()\n"
            "    except ImportError as e:\n"
            "        print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 2 and all("pip install 'simdex[ray]'" in line for line in lines), lines


def test_int8_shards_with_one_calibration_equal_one_int8_index(data, rng):
    x, ids = data
    sample = x[rng.choice(len(x), 1000, replace=False)]

    def int8_index(rows):
        index = simdex.Index(DIM, dtype="int8", keep_originals=True)
        index.train(sample)  # one calibration for all: int8 scores are then comparable across shards
        if len(rows):
            index.add(x[rows], ids[rows])
        return index

    route = shard_of(ids, 3)
    sharded = simdex.ShardedIndex([int8_index(np.flatnonzero(route == s)) for s in range(3)])
    one = int8_index(np.arange(len(x)))
    assert sharded.dtype == "int8"
    q = rng.standard_normal((12, DIM)).astype(np.float32)
    _assert_same(sharded.search(q, 10), one.search(q, 10))
    # With rescore the scores are the exact float ones (candidates are chosen per shard, so only scores are
    # compared with the float vectors, not ids with the single index).
    got = sharded.search(q, 5, rescore=4)
    exact = simdex.Index(DIM)
    exact.add(x, ids)
    for row_q, row_ids, row_scores in zip(q, got.ids, got.scores):
        want = exact.search(row_q, 1, filter=row_ids).scores  # any allowed id's exact score is <= the best
        assert row_scores[0] == pytest.approx(float(want[0, 0]), abs=1e-5)
    with pytest.raises(ValueError, match="disagree on dtype"):
        simdex.ShardedIndex([int8_index(np.arange(5)), simdex.Index(DIM)])


# -- all-or-nothing add --------------------------------------------------------------------------------------

def _state(shards):
    return [(len(s), sorted(s.ids().tolist())) for s in shards]


@pytest.mark.parametrize("max_workers", [1, 3])
@pytest.mark.parametrize("failing", [0, 2])
def test_add_that_fails_in_one_shard_changes_no_shard(data, rng, monkeypatch, max_workers, failing):
    x, ids = data
    shards = _split(x, ids, 3)
    before = _state(shards)
    new_ids = np.arange(20_000, 20_030, dtype=np.int64)  # routed to all three shards
    assert set(shard_of(new_ids, 3).tolist()) == {0, 1, 2}
    new = rng.standard_normal((30, DIM)).astype(np.float32)
    with simdex.ShardedIndex(shards, max_workers=max_workers) as sharded:
        worker = sharded._backend.workers[failing]

        def broken(vectors, ids):
            raise MemoryError("injected: shard out of memory")

        monkeypatch.setattr(worker, "add", broken)
        with pytest.raises(MemoryError, match="injected"):
            sharded.add(new, new_ids)
        assert _state(shards) == before and len(sharded) == len(ids)
        assert not sharded.contains(new_ids).any()
        # The batch's ids are free again: once the shard works, the same add goes through whole.
        monkeypatch.undo()
        assert sharded.add(new, new_ids).tolist() == new_ids.tolist()
        assert sharded.contains(new_ids).all() and len(sharded) == len(ids) + 30


def test_add_whose_rollback_fails_names_the_shards_to_repair(data, rng, monkeypatch):
    # Shard 2 fails its add and shard 0 then fails to undo its part: the one state that keeps part of a batch.
    x, ids = data
    shards = _split(x, ids, 3)
    before = _state(shards)
    new_ids = np.arange(20_000, 20_030, dtype=np.int64)
    with simdex.ShardedIndex(shards) as sharded:
        workers = sharded._backend.workers

        def fail(*args):
            raise OSError("injected")

        monkeypatch.setattr(workers[2], "add", fail)
        monkeypatch.setattr(workers[0], "remove", fail)
        with pytest.raises(simdex.ShardError, match=r"add failed on shard 2 .*except shard\(s\) 0 .*remove\(ids\)") as err:
            sharded.add(rng.standard_normal((30, DIM)).astype(np.float32), new_ids)
        assert isinstance(err.value.__cause__, OSError) and err.value.shard == 2
        assert _state(shards)[1:] == before[1:] and len(shards[0]) > before[0][0]  # shard 1 rolled back
        monkeypatch.undo()
        sharded.remove(new_ids)  # the repair the message names
        assert _state(shards) == before


def test_add_that_fails_naturally_mid_way_is_rolled_back(rng):
    # Shard 1 has an untrained PCA and gets too few vectors to fit it: its add raises after shard 0's succeeded.
    trained = simdex.Index(DIM, transform=simdex.PCA(8))
    trained.add(rng.standard_normal((50, DIM)).astype(np.float32), np.arange(50))
    untrained = simdex.Index(DIM, transform=simdex.PCA(8))
    new_ids = np.arange(1000, 1006, dtype=np.int64)
    assert sorted(set(shard_of(new_ids, 2).tolist())) == [0, 1] and (shard_of(new_ids, 2) == 1).sum() < 8
    with simdex.ShardedIndex([trained, untrained]) as sharded:
        with pytest.raises(ValueError, match="PCA"):
            sharded.add(rng.standard_normal((6, DIM)).astype(np.float32), new_ids)
        assert len(trained) == 50 and len(untrained) == 0 and not sharded.contains(new_ids).any()


def test_nan_in_one_row_changes_no_shard(data):
    x, ids = data
    shards = _split(x, ids, 3)
    before = _state(shards)
    bad = np.ones((9, DIM), np.float32)
    bad[7, 3] = np.nan
    with simdex.ShardedIndex(shards) as sharded:
        with pytest.raises(ValueError, match="NaN or Inf") as err:
            sharded.add(bad, np.arange(50_000, 50_009))
        assert _state(shards) == before
        assert "row 7, column 3 is NaN or Inf; nothing was added" in str(err.value)  # the batch's row, not a shard's
        with pytest.raises(ValueError, match="NaN or Inf"):
            sharded.add(np.full(DIM, np.inf, np.float32))
    assert _state(shards) == before


def test_read_only_shard_fails_add_and_remove_before_any_shard_changes(data, tmp_path):
    x, ids = data
    shards = _split(x, ids, 3)
    shards[2].save(tmp_path / "s2.simdex")
    shards[2] = simdex.load(tmp_path / "s2.simdex", mmap=True)
    before = _state(shards)
    with simdex.ShardedIndex(shards) as sharded:
        with pytest.raises(ValueError, match="memory-mapped") as err:
            sharded.add(np.ones((30, DIM), np.float32), np.arange(20_000, 20_030))
        assert _state(shards) == before and "shard 2 (" in str(err.value)
        with pytest.raises(ValueError, match="memory-mapped") as err:
            sharded.remove(ids[:30])  # ids in all three shards
        assert _state(shards) == before and "shard 2 (" in str(err.value)
        # A batch that only routes to writable shards still goes in.
        ok = np.array([i for i in range(30_000, 30_100) if shard_of([i], 3)[0] != 2][:5], np.int64)
        sharded.add(np.ones((5, DIM), np.float32), ok)
    assert _state(shards)[2] == before[2] and len(shards[0]) + len(shards[1]) == before[0][0] + before[1][0] + 5


def test_default_ids_skip_ids_added_to_a_shard_directly(data, rng):
    # A shard changed behind the sharded index's back (an Index used as it is): default ids must not collide.
    x, ids = data
    shards = _split(x, ids, 3)
    sharded = simdex.ShardedIndex(shards)
    taken = int(ids.max()) + 1
    shards[1].add(rng.standard_normal((1, DIM)).astype(np.float32), [taken])
    before = _state(shards)
    got = sharded.add(rng.standard_normal((12, DIM)).astype(np.float32))
    assert not np.isin(got, before[1][1]).any()  # no id in two shards
    assert got.tolist() == list(range(taken + 1, taken + 13))
    assert sum(n for n, _ in _state(shards)) == sum(n for n, _ in before) + 12
