"""The Ray backend of ShardedIndex and simdex.distributed_ingest, on a small local Ray bound to 127.0.0.1.

Skipped when Ray is not installed (``pip install 'simdex[ray]'``). One Ray instance serves the whole module and is
shut down at its end.
"""

import json
import os
import signal
import tempfile

import numpy as np
import pytest

# Read by Ray at import and inherited by its processes: no usage reporting, and a node address on loopback
# (without the second variable Ray swaps 127.0.0.1 for the machine's external address).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'simdex[ray]'): Ray backend not tested")

import simdex  # noqa: E402
from simdex.sharded import shard_of  # noqa: E402

pytestmark = pytest.mark.ray

DIM = 16


@pytest.fixture(scope="module", autouse=True)
def local_ray():
    if ray.is_initialized():
        ray.shutdown()
    tmp = tempfile.mkdtemp(prefix="simdex-ray-", dir="/tmp")
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2,
             _node_ip_address="127.0.0.1", _temp_dir=tmp, log_to_driver=False, configure_logging=False)
    assert {n["NodeManagerAddress"] for n in ray.nodes()} == {"127.0.0.1"}
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def corpus():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2000, DIM)).astype(np.float32)
    x[1000:1040] = x[0]  # exact ties across shards
    ids = rng.permutation(100_000)[:2000].astype(np.int64)
    one = simdex.Index(DIM)
    one.add(x, ids)
    return x, ids, one


def _shards(x, ids, n):
    route = shard_of(ids, n)
    out = []
    for s in range(n):
        index = simdex.Index(DIM)
        index.add(x[route == s], ids[route == s])
        out.append(index)
    return out


@pytest.fixture
def saved(corpus, tmp_path):
    x, ids, _ = corpus
    simdex.ShardedIndex(_shards(x, ids, 3)).save(tmp_path / "s")
    return tmp_path / "s"


def _same(a, b):
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.scores, b.scores)


def test_ray_equals_single_index(corpus, saved):
    x, ids, one = corpus
    q = np.vstack([x[:1], np.random.default_rng(1).standard_normal((49, DIM))]).astype(np.float32)
    with simdex.ShardedIndex.open(saved, backend="ray") as sharded:
        assert sharded.backend == "ray" and len(sharded) == 2000
        for k in (1, 10, 60):
            _same(sharded.search(q, k), one.search(q, k))
        allow = ids[::7]
        _same(sharded.search(q, 10, filter=allow, min_score=0.1), one.search(q, 10, filter=allow, min_score=0.1))
        # Every actor is its own process.
        assert len(set(sharded._worker_pids())) == 3 and os.getpid() not in sharded._worker_pids()


def test_ray_in_memory_shards_add_and_save(corpus, tmp_path):
    x, ids, one = corpus
    rng = np.random.default_rng(2)
    with simdex.ShardedIndex(_shards(x, ids, 2), backend="ray") as sharded:
        new = rng.standard_normal((5, DIM)).astype(np.float32)
        new_ids = sharded.add(new)
        assert new_ids.tolist() == list(range(int(ids.max()) + 1, int(ids.max()) + 6))
        with pytest.raises(ValueError, match="already stored"):
            sharded.add(new[:1], new_ids[:1])
        manifest = sharded.save(tmp_path / "grown")
    both = simdex.Index(DIM)
    both.add(x, ids)
    both.add(new, new_ids)
    q = rng.standard_normal((20, DIM)).astype(np.float32)
    assert json.load(open(manifest))["count"] == 2005
    with simdex.ShardedIndex.open(tmp_path / "grown", backend="ray") as reopened:
        _same(reopened.search(q, 8), both.search(q, 8))


def test_killed_actor_recovers_and_query_is_retried(corpus, saved, caplog):
    x, _, one = corpus
    q = x[:20] + 0.01
    with simdex.ShardedIndex.open(saved, backend="ray") as sharded:
        before = sharded._worker_pids()
        os.kill(before[1], signal.SIGKILL)  # dead between two queries
        _same(sharded.search(q, 10), one.search(q, 10))
        after = sharded._worker_pids()
        assert after[1] != before[1] and after[0] == before[0]

        # Dead with a query in flight: the actor exits while the search is queued behind that call.
        actor = sharded._backend.actors[2]
        actor.__ray_call__.remote(lambda self: os._exit(1))
        with caplog.at_level("WARNING", logger="simdex.sharded"):
            _same(sharded.search(q, 10), one.search(q, 10))
        assert "shard 2" in caplog.text and "retrying once" in caplog.text
        assert sharded._worker_pids()[2] != after[2]


def test_restart_with_unsaved_changes_is_an_error(corpus, saved):
    x, _, _ = corpus
    with simdex.ShardedIndex.open(saved, backend="ray") as sharded:
        new_id = int(sharded.add(x[:1] * 2)[0])
        target = int(shard_of([new_id], 3)[0])
        os.kill(sharded._worker_pids()[target], signal.SIGKILL)
        with pytest.raises(simdex.ShardError, match=f"shard {target} .*lost the 1 change"):
            sharded.search(x[:2], 5)


def test_restart_after_save_elsewhere_reloads_the_new_file(corpus, saved, tmp_path):
    x, _, _ = corpus
    with simdex.ShardedIndex.open(saved, backend="ray") as sharded:
        new_id = int(sharded.add(np.full((1, DIM), 0.5, np.float32))[0])
        sharded.save(tmp_path / "moved")
        target = int(shard_of([new_id], 3)[0])
        os.kill(sharded._worker_pids()[target], signal.SIGKILL)
        # The restarted actor loads the file it was created with; it must be pointed at the newer one.
        assert new_id in sharded
        assert sharded.search(np.full(DIM, 0.5, np.float32), 1).ids[0, 0] == new_id


def test_restarted_actor_with_damaged_file_names_the_shard(saved):
    with simdex.ShardedIndex.open(saved, backend="ray") as sharded:
        (saved / "shard-00001.simdex").write_bytes(b"not an index")
        os.kill(sharded._worker_pids()[1], signal.SIGKILL)
        with pytest.raises(simdex.ShardError, match=r"shard 1 \(.*shard-00001.simdex\) could not be loaded"):
            sharded.search(np.ones(DIM, np.float32), 3)


def test_bad_shard_files_reported_at_open(saved):
    os.unlink(saved / "shard-00002.simdex")
    with pytest.raises(FileNotFoundError, match="shard 2 .*shard-00002.simdex"):
        simdex.ShardedIndex.open(saved, backend="ray")
    raw = bytearray((saved / "shard-00000.simdex").read_bytes())
    raw[-8] ^= 0x55
    (saved / "shard-00000.simdex").write_bytes(bytes(raw))
    with pytest.raises(simdex.FormatError, match="shard 0 .*shard-00000.simdex"):
        simdex.ShardedIndex([saved / "shard-00000.simdex", saved / "shard-00001.simdex"], backend="ray")
