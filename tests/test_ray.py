"""The Ray backend of ShardedIndex and simdex.distributed_ingest, on a small local Ray bound to 127.0.0.1.

Skipped when Ray is not installed (``pip install 'simdex[ray]'``). One Ray instance serves the whole module and is
shut down at its end.
"""

import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

# Read by Ray at import and inherited by its processes: no usage reporting, and a node address on loopback
# (without the second variable Ray swaps 127.0.0.1 for the machine's external address).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'simdex[ray]'): Ray backend not tested")
if not hasattr(ray, "init"):  # e.g. a folder named ray (Ray's own temp dir) in the working directory
    pytest.skip("the 'ray' found is not the Ray package", allow_module_level=True)

import simdex  # noqa: E402 - after the environment Ray reads at import
from simdex.shard import shard_of  # noqa: E402

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
    shutil.rmtree(tmp, ignore_errors=True)


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
    x, ids, _ = corpus
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
    assert json.loads(Path(manifest).read_text())["count"] == 2005
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
        with caplog.at_level("WARNING", logger="simdex.shard"):
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


def test_restart_after_save_elsewhere_reloads_the_new_file(saved, tmp_path):
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


def test_add_that_fails_on_one_actor_is_rolled_back():
    # Shard 1's actor holds an untrained PCA and gets too few vectors to fit it: its add raises after shard 0's
    # actor took its part, which must be removed again.
    rng = np.random.default_rng(5)
    trained = simdex.Index(DIM, transform=simdex.PCA(8))
    trained.add(rng.standard_normal((50, DIM)).astype(np.float32), np.arange(50))
    new_ids = np.arange(1000, 1006, dtype=np.int64)
    assert sorted(set(shard_of(new_ids, 2).tolist())) == [0, 1] and (shard_of(new_ids, 2) == 1).sum() < 8
    with simdex.ShardedIndex([trained, simdex.Index(DIM, transform=simdex.PCA(8))], backend="ray") as sharded:
        with pytest.raises(ValueError, match="PCA"):
            sharded.add(rng.standard_normal((6, DIM)).astype(np.float32), new_ids)
        assert sharded.shard_sizes() == [50, 0] and not sharded.contains(new_ids).any()


def test_bad_shard_files_reported_at_open(saved):
    os.unlink(saved / "shard-00002.simdex")
    with pytest.raises(FileNotFoundError, match="shard 2 .*shard-00002.simdex"):
        simdex.ShardedIndex.open(saved, backend="ray")
    raw = bytearray((saved / "shard-00000.simdex").read_bytes())
    raw[-8] ^= 0x55
    (saved / "shard-00000.simdex").write_bytes(bytes(raw))
    with pytest.raises(simdex.FormatError, match="shard 0 .*shard-00000.simdex"):
        simdex.ShardedIndex([saved / "shard-00000.simdex", saved / "shard-00001.simdex"], backend="ray")


# -- distributed ingest ----------------------------------------------------------------------------------------

class StandInHashEncoder:
    """A stand-in for simdex.Encoder, NOT a language model: each text's BLAKE2 hash as a 16-d vector.

    It has the surface distributed_ingest uses (embed_batch, dim, fingerprint), so the Ray Data pipeline is tested
    without torch; test_distributed_ingest_with_the_real_encoder covers the real one when it is installed.
    """

    dim = DIM
    fingerprint: ClassVar[dict] = {"model": "stand-in-hash (not a model)", "dim": DIM, "normalize": True}

    def embed_batch(self, texts):
        import hashlib

        raw = b"".join(hashlib.blake2b(t.encode(), digest_size=DIM).digest() for t in texts)
        return np.frombuffer(raw, np.uint8).reshape(-1, DIM).astype(np.float32) - 127.5

    def embed_query(self, text):  # what search_text uses
        return self.embed_batch([text])[0]


@pytest.fixture(scope="module", autouse=True)
def _ship_test_classes():
    # Ray workers cannot import this test module: send its classes by value.
    import sys

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module", autouse=True)
def _quiet_ray_data():
    ctx = ray.data.DataContext.get_current()
    before = ctx.enable_progress_bars
    ctx.enable_progress_bars = False
    yield
    ctx.enable_progress_bars = before


def _texts(n):
    return [f"document {i}: {'lorem ipsum ' * (i % 5)}about topic {i % 17}" for i in range(n)]


def test_distributed_ingest_jsonl_with_ids(tmp_path):
    texts = _texts(300)
    doc_ids = [7 * i + 3 for i in range(300)]
    src = tmp_path / "corpus.jsonl"
    src.write_text("".join(json.dumps({"doc": d, "text": t, "extra": 1}) + "\n" for d, t in zip(doc_ids, texts)))
    report = simdex.distributed_ingest(src, tmp_path / "out", encoder=StandInHashEncoder, num_shards=3,
                                       id_field="doc", num_workers=2, batch_size=64)
    assert report.documents == 300 and sum(report.shard_counts) == 300 and report.num_workers == 2
    assert report.num_gpus_per_worker == 0  # no GPU on this cluster
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["fingerprint"] == StandInHashEncoder.fingerprint and manifest["dim"] == DIM

    enc = StandInHashEncoder()
    one = simdex.Index(DIM)
    one.add(enc.embed_batch(texts), doc_ids)
    q = enc.embed_batch(texts[:5] + ["something else"])
    for s in range(3):
        shard = simdex.load(tmp_path / "out" / f"shard-{s:05d}.simdex")
        assert shard.fingerprint == StandInHashEncoder.fingerprint
        assert (shard_of(shard.ids(), 3) == s).all()  # the routing rule ShardedIndex.add uses
    with simdex.ShardedIndex.open(tmp_path / "out") as sharded:
        _same(sharded.search(q, 10), one.search(q, 10))
        assert sharded.fingerprint == StandInHashEncoder.fingerprint

    with pytest.raises(FileExistsError, match="overwrite=True"):
        simdex.distributed_ingest(src, tmp_path / "out", encoder=StandInHashEncoder)


def test_distributed_ingest_text_lines_numbered_in_order(tmp_path):
    texts = _texts(250)
    src = tmp_path / "corpus.txt"
    src.write_text("\n".join(texts) + "\n")
    report = simdex.distributed_ingest(src, tmp_path / "out", encoder=StandInHashEncoder(), num_shards=2,
                                       batch_size=50)
    assert report.documents == 250
    enc = StandInHashEncoder()
    with simdex.ShardedIndex.open(tmp_path / "out", backend="ray") as sharded:
        assert sorted(sharded.ids().tolist()) == list(range(250))
        # Line i got id i: its own text finds it first.
        got = sharded.search(enc.embed_batch(texts[::25]), 1).ids[:, 0]
        assert got.tolist() == list(range(0, 250, 25))


def test_distributed_ingest_writes_the_document_store(tmp_path):
    texts = _texts(90)
    doc_ids = [5 * i + 1 for i in range(90)]
    src = tmp_path / "corpus.jsonl"
    src.write_text("".join(json.dumps({"doc": d, "text": t}) + "\n" for d, t in zip(doc_ids, texts)))
    simdex.distributed_ingest(src, tmp_path / "out", encoder=StandInHashEncoder, num_shards=2, id_field="doc",
                              num_workers=1, batch_size=32)
    enc = StandInHashEncoder()
    by_id = dict(zip(doc_ids, texts))
    for s in range(2):  # each shard file, loaded alone, finds the texts in the store beside it (as after ingest)
        path = tmp_path / "out" / f"shard-{s:05d}.simdex"
        assert Path(simdex.text.docs_path(path)).is_file()
        shard = simdex.load(path)
        first = int(shard.ids()[0])
        hit = next(iter(shard.search_text(by_id[first], k=1, encoder=enc)))
        assert (hit.id, hit.text, hit.doc_id, hit.chunk) == (first, by_id[first], first, by_id[first])
    for backend in ("threads", "ray"):
        with simdex.ShardedIndex.open(tmp_path / "out", backend=backend) as sharded:
            got = sharded.search_text(texts[40], k=3, encoder=enc)
            assert len(got) == 3 and got.ids[0] == doc_ids[40] and got.documents[0].text == texts[40]
            assert all(h.text == by_id[h.id] for h in got)
    # Without texts: no store, and a store an earlier run left is removed.
    simdex.distributed_ingest(src, tmp_path / "out", encoder=StandInHashEncoder, num_shards=2, id_field="doc",
                              num_workers=1, overwrite=True, store_texts=False)
    assert not list((tmp_path / "out").glob("*.docs.sqlite"))


def test_distributed_ingest_parquet_folder_one_shard(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = _texts(120)
    folder = tmp_path / "pq"
    folder.mkdir()
    for part in range(2):  # two files in a folder: the format is found from the names inside
        rows = range(part * 60, part * 60 + 60)
        pq.write_table(pa.table({"key": [1000 + i for i in rows], "body": [texts[i] for i in rows]}),
                       folder / f"part-{part}.parquet")
    report = simdex.distributed_ingest(folder, tmp_path / "out", encoder=StandInHashEncoder, num_shards=1,
                                       text_field="body", id_field="key", num_workers=1)
    assert report.shard_counts == [120]
    shard = simdex.load(tmp_path / "out" / "shard-00000.simdex")
    assert sorted(shard.ids().tolist()) == list(range(1000, 1120))
    # The vector stored under key 1007 is the embedding of the text on that row (cosine: unit length).
    np.testing.assert_allclose(shard.reconstruct([1007]), _unit(StandInHashEncoder().embed_batch([texts[7]])),
                               atol=1e-6)


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_distributed_ingest_bad_input_is_explained(tmp_path):
    ds = ray.data.from_items([{"body": "a"}, {"body": "b"}])
    with pytest.raises(ValueError, match=r"no column 'text' in the input; it has \['body'\]"):
        simdex.distributed_ingest(ds, tmp_path / "o", encoder=StandInHashEncoder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        simdex.distributed_ingest(tmp_path / "missing.jsonl", tmp_path / "o", encoder=StandInHashEncoder)
    with pytest.raises(TypeError, match="encoder: expected"):
        simdex.distributed_ingest(ds, tmp_path / "o", encoder=42)
    with pytest.raises(ValueError, match="GPU"):
        simdex.distributed_ingest(ds, tmp_path / "o", encoder=StandInHashEncoder, num_gpus_per_worker=1)


@pytest.mark.encoder
def test_distributed_ingest_with_the_real_encoder(tmp_path, minilm):
    texts = _texts(64)
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    report = simdex.distributed_ingest(src, tmp_path / "out", encoder="all-MiniLM-L6-v2", num_shards=2,
                                       num_workers=1, batch_size=32)
    enc = minilm
    assert report.fingerprint["weights_sha256"] == enc.fingerprint["weights_sha256"]
    with simdex.ShardedIndex.open(tmp_path / "out") as sharded:
        got = sharded.search(enc.embed_batch(texts[:4]), 1)
        assert got.ids[:, 0].tolist() == [0, 1, 2, 3]
        assert np.allclose(got.scores[:, 0], 1.0, atol=1e-3)
