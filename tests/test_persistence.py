"""Saving and loading under stress: atomic replacement, kill -9 mid-save, a full disk, memory-mapped indexes,
and a byte-flip / truncation fuzz loop. Anything that could crash runs in a subprocess, so a crash is a failed
test rather than a lost run."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import simdex


@pytest.fixture
def rng():
    return np.random.default_rng(7)


def run_python(code: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, check=False, **kw)


def small_index(rng, n=200, dim=16, version=0):
    index = simdex.Index(dim)
    index.add(rng.standard_normal((n, dim)).astype(np.float32))
    index.metadata = {"version": version}
    return index


def leftovers(folder, name):
    return sorted(p for p in os.listdir(folder) if p.startswith(name + ".tmp-"))


# -- atomic save -------------------------------------------------------------------------------------------------


def test_save_replaces_file_and_leaves_no_temp(tmp_path, rng):
    path = tmp_path / "a.sdx"
    small_index(rng, version=1).save(path)
    small_index(rng, version=2).save(str(path))
    assert simdex.load(path).metadata == {"version": 2}
    assert os.listdir(tmp_path) == ["a.sdx"]


def test_save_keeps_the_mode_of_the_replaced_file(tmp_path, rng):
    path = tmp_path / "a.sdx"
    small_index(rng).save(path)
    os.chmod(path, 0o640)
    small_index(rng).save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o640


def test_save_errors_are_oserrors_and_clean_up(tmp_path, rng):
    index = small_index(rng)
    with pytest.raises(FileNotFoundError):
        index.save(tmp_path / "missing" / "a.sdx")
    (tmp_path / "dir.sdx").mkdir()
    with pytest.raises(OSError):
        index.save(tmp_path / "dir.sdx")  # rename over a directory fails
    assert os.listdir(tmp_path) == ["dir.sdx"]


def test_disk_full_raises_oserror_and_keeps_the_old_file(tmp_path, rng):
    """RLIMIT_FSIZE makes write() fail with EFBIG part-way, as a full disk fails with ENOSPC."""
    path = tmp_path / "a.sdx"
    small_index(rng, n=10, version=1).save(path)
    before = path.read_bytes()
    out = run_python(f"""
        import errno, resource, numpy as np, simdex
        index = simdex.Index(64)
        index.add(np.random.default_rng(0).standard_normal((4000, 64)).astype(np.float32))  # ~1 MB file
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
        try:
            index.save({str(path)!r})
        except OSError as e:
            print(errno.errorcode[e.errno], e)
    """)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("EFBIG"), out.stdout
    assert path.read_bytes() == before
    assert simdex.load(path).metadata == {"version": 1}
    assert leftovers(tmp_path, "a.sdx") == []


KILL_WRITER = """
import sys, numpy as np, simdex
path, n, dim = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
versions = []
for v in range(3):
    index = simdex.Index(dim, metric="ip")
    index.add(np.random.default_rng(v).standard_normal((n, dim)).astype(np.float32))
    index.metadata = {"version": v}
    versions.append(index)
versions[0].save(path)
print("ready", flush=True)
v = 1
while True:
    versions[v % 3].save(path)
    v += 1
"""


def kill_during_save_trials(tmp_path, trials, n=40_000, dim=64, seed=0):
    """Kills a process that saves in a loop at random moments; returns (corrupt, mismatched, mid_save): files
    that failed to load, files that loaded but hold neither version, and kills that left a temp file behind
    (the kill landed inside a save)."""
    path = str(tmp_path / "k.sdx")
    expected = [np.random.default_rng(v).standard_normal((n, dim)).astype(np.float32) for v in range(3)]
    rnd = np.random.default_rng(seed)
    corrupt = mismatched = mid_save = 0
    for _ in range(trials):
        p = subprocess.Popen([sys.executable, "-c", KILL_WRITER, path, str(n), str(dim)], stdout=subprocess.PIPE,
                             text=True)
        try:
            assert p.stdout.readline().strip() == "ready"
            time.sleep(float(rnd.uniform(0, 0.25)))
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
            p.stdout.close()
        names = leftovers(tmp_path, "k.sdx")
        mid_save += bool(names)
        for name in names:  # temp files of killed saves are never read; tidy up
            os.unlink(tmp_path / name)
        try:
            index = simdex.load(path)
        except simdex.FormatError:
            corrupt += 1
            continue
        v = index.metadata["version"]
        if len(index) != n or not np.array_equal(index.reconstruct(np.arange(n)), expected[v]):
            mismatched += 1
    return corrupt, mismatched, mid_save


def test_kill_9_during_save_leaves_old_or_new_file(tmp_path):
    trials = int(os.environ.get("SIMDEX_KILL_TRIALS", "12"))
    corrupt, mismatched, mid_save = kill_during_save_trials(tmp_path, trials)
    runs = trials
    for seed in range(1, 5):  # a loaded machine can let every kill fall between saves: more trials, not a failure
        if mid_save:
            break
        more = kill_during_save_trials(tmp_path, trials, seed=seed)
        corrupt, mismatched, mid_save = corrupt + more[0], mismatched + more[1], mid_save + more[2]
        runs += trials
    print({"kill_trials": runs, "killed_inside_a_save": mid_save, "corrupt": corrupt, "mismatched": mismatched})
    assert (corrupt, mismatched) == (0, 0)
    assert mid_save > 0  # the kills did land inside saves


# -- memory-mapped indexes ---------------------------------------------------------------------------------------


def test_mapped_index_is_read_only(tmp_path, rng):
    path = tmp_path / "a.sdx"
    small_index(rng).save(path)
    index = simdex.load(path, mmap=True)
    assert "mmap=True" in repr(index)
    for change in (lambda: index.add(np.ones(16)), lambda: index.remove([0]), index.reset):
        with pytest.raises(ValueError, match="memory-mapped read-only.*mmap=False"):
            change()
    assert len(index) == 200 and 0 in index
    index.metadata = {"edited": True}  # metadata lives in memory, not in the mapping
    assert index.metadata == {"edited": True}


def test_mapped_index_saves_over_its_own_file(tmp_path, rng):
    path = tmp_path / "a.sdx"
    original = small_index(rng)
    original.save(path)
    mapped = simdex.load(path, mmap=True)
    mapped.metadata = {"version": 5}
    q = rng.standard_normal((3, 16)).astype(np.float32)
    want = original.search(q, 5)
    mapped.save(path)  # a new inode replaces the file; the mapping keeps the old one
    np.testing.assert_array_equal(mapped.search(q, 5).ids, want.ids)
    again = simdex.load(path, mmap=True)
    np.testing.assert_array_equal(again.search(q, 5).ids, want.ids)
    assert again.metadata == {"version": 5}
    os.unlink(path)  # an unlinked file stays mapped
    np.testing.assert_array_equal(mapped.search(q, 5).scores, want.scores)


def test_loaded_index_can_be_changed(tmp_path, rng):
    path = tmp_path / "a.sdx"
    original = small_index(rng)
    original.save(path)
    index = simdex.load(path)
    new = rng.standard_normal((10, 16)).astype(np.float32)
    assert index.add(new).tolist() == list(range(200, 210))
    assert index.remove([0, 5, 205]) == 3
    original.add(new)
    original.remove([0, 5, 205])
    q = rng.standard_normal((4, 16)).astype(np.float32)
    np.testing.assert_array_equal(index.search(q, 7).ids, original.search(q, 7).ids)


def test_mapped_index_holds_little_memory(tmp_path, rng):
    path = tmp_path / "a.sdx"
    small_index(rng, n=5000, dim=128).save(path)
    full, mapped = simdex.load(path), simdex.load(path, mmap=True)
    vectors = 5000 * 128 * 4
    assert full.memory_usage() > vectors
    assert mapped.memory_usage() < vectors // 4


# -- fuzz loop ---------------------------------------------------------------------------------------------------

FUZZ = """
import json, os, sys, numpy as np, simdex

mutations, folder = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(int(sys.argv[3]))
index = simdex.Index(8)
index.add(rng.standard_normal((40, 8)).astype(np.float32))
index.remove([3, 17, 20])
index.metadata = {"fingerprint": {"model": "m", "dim": 8}}
good = index._core.to_bytes()
ids = index.ids()
want = index.reconstruct(ids)
q = rng.standard_normal((2, 8)).astype(np.float32)

def same(got, vectors=True):
    if (got.dim, got.metric, len(got), got.metadata) != (8, "cosine", len(ids), index.metadata):
        return False
    if not np.array_equal(got.ids(), ids):
        return False
    got.search(q, 5)
    return not vectors or np.array_equal(got.reconstruct(ids).view(np.uint32), want.view(np.uint32))

def mutate(b):
    b = bytearray(b)
    kind = rng.integers(0, 7)
    # Half of the point mutations hit the header and table, where the structure lives.
    pos = int(rng.integers(0, 64 + 64 * 4)) if rng.random() < 0.5 else int(rng.integers(0, len(b)))
    if kind == 0:
        b[pos] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:
        b[pos] = int(rng.integers(0, 256))
    elif kind == 2:
        del b[int(rng.integers(0, len(b))):]
    elif kind == 3:
        b += rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
    elif kind == 4:
        n = int(rng.integers(1, 9))
        b[pos:pos + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif kind == 5:
        b[pos:pos + 64] = bytes(64)
    else:
        for _ in range(int(rng.integers(2, 6))):
            p = int(rng.integers(0, len(b)))
            b[p] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)

stats = dict(tried=0, refused=0, unchanged=0, undetected=0, mapped_tried=0, mapped_refused=0, mapped_loaded=0)
for i in range(mutations):
    data = mutate(good)
    mapped = i % 10 == 0  # every tenth also goes through a file mapping
    print(i, file=sys.stderr, flush=True)  # the last number printed names the input if this process dies
    stats["tried"] += 1
    try:
        got = simdex.load_bytes(data)
        if same(got):
            stats["unchanged"] += 1
        else:
            stats["undetected"] += 1
    except simdex.FormatError:
        stats["refused"] += 1
    if mapped:
        stats["mapped_tried"] += 1
        path = os.path.join(folder, f"m{i}.sdx")
        with open(path, "wb") as f:
            f.write(data)
        try:
            got = simdex.load(path, mmap=True)
            stats["mapped_loaded"] += 1
            # Mapped vectors are not checksummed: ids and metadata must be intact, and search must run.
            assert same(got, vectors=False), i
            del got
        except simdex.FormatError:
            stats["mapped_refused"] += 1
        os.unlink(path)
print(json.dumps(stats))
"""


def run_fuzz(tmp_path, mutations, seed=1):
    """Runs the fuzz loop in a subprocess; returns its counts."""
    out = subprocess.run([sys.executable, "-c", FUZZ, str(mutations), str(tmp_path), str(seed)],
                         capture_output=True, text=True, timeout=600, check=False)
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 0, (f"fuzz process died ({out.returncode}) at mutation {lines[-1] if lines else '?'} "
                                 f"of seed {seed}:\n" + "\n".join(lines[-30:]))
    return json.loads(out.stdout)


def test_fuzz_mutated_files_never_crash_or_load_wrong(tmp_path):
    n = int(os.environ.get("SIMDEX_FUZZ_MUTATIONS", "20000"))
    stats = run_fuzz(tmp_path, n)
    print(stats)
    assert stats["tried"] == n >= 2000
    assert stats["undetected"] == 0  # a change that loads must be one that changes nothing (padding)
    assert stats["refused"] + stats["unchanged"] == n
    assert stats["refused"] > 0.9 * n
    assert stats["mapped_refused"] + stats["mapped_loaded"] == stats["mapped_tried"] > 0
